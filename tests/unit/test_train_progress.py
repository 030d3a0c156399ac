"""Training shows its progress: each epoch's loss and accuracy reach the log (a Prefect run's
inside a run, the module's outside one), and a Rich bar counts the epochs on an interactive
terminal, never in CI."""

from __future__ import annotations

import logging
import re

import pytest

from core.settings import TrainingParams
from tasks.data import LABEL, PIXELS, frame_to_arrays
from tasks.train import train_model
from tasks.training_data import ArrayData


@pytest.mark.parametrize("ci", [False, True])
def test_each_epoch_is_logged_and_a_terminal_outside_ci_gets_a_bar(digits_split, caplog, capsys, monkeypatch, ci):
    # Rich takes stdout for an interactive terminal (see rich.console.Console.is_terminal).
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    _, batches = digits_split
    features, labels = frame_to_arrays(batches[0].head(64), PIXELS, LABEL)

    with caplog.at_level(logging.INFO, logger="tasks.train"):
        train_model(ArrayData(features, labels), TrainingParams(hidden_units=[8], epochs=3), num_classes=10, input_name="pixels")

    lines = [record.getMessage() for record in caplog.records if record.name == "tasks.train"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(re.fullmatch(r"epoch \d/3: accuracy [01]\.\d{4}, loss \d+\.\d{4}", line) for line in lines), lines
    drawn = capsys.readouterr().out
    assert ("training" in drawn) is not ci, drawn
