"""`tfrelease show` prints a decided version's changes with the interval the decision tested."""

from __future__ import annotations

from typer.testing import CliRunner

from core.settings import ReleasePolicy
from registry.store import RegistryStore
from tasks.checksum import file_sha256
from tasks.decide import decide
from tests.unit.test_decide import PRODUCTION, candidate
from tfrelease.cli import app


def test_show_prints_the_accuracy_change_with_its_interval(settings):
    store = RegistryStore.open(settings.registry_url)
    new = candidate(gained=2)
    decision = decide(new, PRODUCTION, ReleasePolicy())
    record = store.allocate_version("digits", actor="test", reason="test candidate")
    folder = settings.model_store / "digits" / str(record.version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"model")
    store.complete_registration(
        "digits", record.version, path=str(folder), saved_model_sha256=file_sha256(folder / "saved_model.pb"),
        metrics=new.model_dump(mode="json"), hyperparameters={}, data_fingerprint="f" * 64, batches=[],
        baseline_version=None, baseline_metrics=PRODUCTION.model_dump(mode="json"), git_commit=None,
        python_version="3.11", tensorflow_version="2.21.0", keras_version="3.15", actor="test",
    )  # fmt: skip
    store.request_approval(
        "digits", record.version, actor="policy", reason="; ".join(decision.reasons), decision=decision.model_dump(mode="json")
    )

    result = CliRunner().invoke(app, ["show", str(record.version)])

    assert result.exit_code == 0, result.output
    interval = decision.paired.accuracy.describe()
    assert interval.startswith("+0.56 points, 95 % CI -")
    (accuracy_row,) = [line for line in result.output.splitlines() if line.startswith("│ accuracy ")]
    assert interval in accuracy_row
    (recall_0,) = [line for line in result.output.splitlines() if line.startswith("│ recall 0 ")]
    assert decision.paired.recall[0].describe() in recall_0  # production's miss of class 0 fixed: 1 of 36
    assert "McNemar exact p = 0.5" in result.output  # the reasons say why a human decides
