"""Training quality and determinism, and the atomic SavedModel export TF Serving loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.settings import TrainingParams
from tasks.data import LABEL, PIXELS, frame_to_arrays
from tasks.evaluate import compute_metrics, evaluate_version, saved_model_probabilities
from tasks.export import ExportError, export_saved_model
from tasks.train import predict_probabilities, train_model
from tasks.training_data import ArrayData


def test_model_trained_on_first_batch_beats_the_floor_on_held_out_digits(trained_digits, digits_split):
    holdout, _ = digits_split
    features, labels = frame_to_arrays(holdout, PIXELS, LABEL)
    metrics = compute_metrics(predict_probabilities(trained_digits, features), labels)
    assert metrics.accuracy >= 0.9
    assert min(metrics.per_class_recall) >= 0.7


def test_training_is_deterministic_for_a_seed(digits_split):
    _, batches = digits_split
    data = ArrayData(*frame_to_arrays(batches[1], PIXELS, LABEL))
    params = TrainingParams(epochs=2, hidden_units=[16])
    first = train_model(data, params, 10, "pixels")
    second = train_model(data, params, 10, "pixels")
    other = train_model(data, params.model_copy(update={"seed": 7}), 10, "pixels")
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        train_model(ArrayData(np.zeros((4, 64), np.float32), np.array([0, 1, 2, 12])), TrainingParams(epochs=1), 10, "pixels")


def test_saved_model_has_the_serving_contract_and_matches_the_keras_model(exported_digits, trained_digits, digits_split):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported_digits))
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["pixels"]
    assert inputs["pixels"].dtype == tf.float32 and inputs["pixels"].shape.as_list() == [None, 64]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert signature.structured_outputs["probabilities"].shape.as_list() == [None, 10]

    holdout, _ = digits_split
    features, labels = frame_to_arrays(holdout, PIXELS, LABEL)
    served = saved_model_probabilities(exported_digits, features, "pixels")
    np.testing.assert_allclose(served, predict_probabilities(trained_digits, features), atol=1e-5)
    assert evaluate_version(exported_digits, (features, labels), "pixels").accuracy >= 0.9


def test_export_never_overwrites_an_existing_version(trained_digits, tmp_path: Path):
    target = tmp_path / "digits" / "1"
    target.mkdir(parents=True)
    with pytest.raises(ExportError, match="never overwritten"):
        export_saved_model(trained_digits, target, "pixels")
    assert list(target.iterdir()) == []


def test_failed_export_leaves_no_numbered_or_staging_folder(trained_digits, tmp_path: Path, monkeypatch):
    import tasks.export

    def fail_after_writing(path: Path) -> str:
        assert path.name == "saved_model.pb" and path.is_file()  # the staging folder is full
        raise OSError("disk full")

    monkeypatch.setattr(tasks.export, "file_sha256", fail_after_writing)
    with pytest.raises(ExportError, match="disk full"):
        export_saved_model(trained_digits, tmp_path / "digits" / "2", "pixels")
    assert list((tmp_path / "digits").iterdir()) == []
