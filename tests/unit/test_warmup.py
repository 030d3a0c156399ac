"""Every exported version carries TF Serving warm-up requests built from real held-out rows,
in the documented format (TFRecord of PredictionLog, <= 1,000 records, assets.extra/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.data import LABEL, PIXELS, frame_to_arrays
from tasks.export import ExportError, export_saved_model
from tasks.warmup import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_COUNT,
    MAX_WARMUP_RECORDS,
    read_warmup_requests,
    warmup_path,
    write_warmup_requests,
)


@pytest.fixture(scope="module")
def holdout_rows(digits_split) -> np.ndarray:
    """The first held-out rows, float32 [DEFAULT_BATCH_ROWS, 64], as register_candidate passes them."""
    holdout, _ = digits_split
    features, _ = frame_to_arrays(holdout, PIXELS, LABEL)
    return features[:DEFAULT_BATCH_ROWS]


@pytest.fixture(scope="module")
def exported_with_warmup(trained_digits, holdout_rows, tmp_path_factory) -> Path:
    """The session's trained model exported once as version 1 of ``digits``, with warm-up (read-only)."""
    target = tmp_path_factory.mktemp("warm-store") / "digits" / "1"
    export_saved_model(trained_digits, target, "pixels", warmup_features=holdout_rows)
    return target


def request_inputs(log) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(log.predict_log.request.inputs["pixels"])


def test_exported_version_carries_the_warmup_file_in_assets_extra(exported_with_warmup):
    path = exported_with_warmup / "assets.extra" / "tf_serving_warmup_requests"
    assert path.is_file() and path == warmup_path(exported_with_warmup)
    # the rename left only the numbered folder: no staging folder, no temporary file
    assert [p.name for p in exported_with_warmup.parent.iterdir()] == ["1"]
    assert [p.name for p in path.parent.iterdir()] == ["tf_serving_warmup_requests"]


def test_warmup_requests_follow_the_serving_contract_with_the_rows_given(exported_with_warmup, holdout_rows):
    from tensorflow.core.framework import types_pb2

    logs = read_warmup_requests(exported_with_warmup)
    assert len(logs) == DEFAULT_COUNT <= MAX_WARMUP_RECORDS
    for log in logs:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "digits"  # default: the model folder's name
        assert request.model_spec.signature_name == "serving_default"
        assert list(request.inputs) == ["pixels"]
        assert request.inputs["pixels"].dtype == types_pb2.DT_FLOAT

    shapes = [request_inputs(log).shape for log in logs]
    assert shapes == [(1, 64)] * (DEFAULT_COUNT - 1) + [(DEFAULT_BATCH_ROWS, 64)]
    for i, log in enumerate(logs[:-1]):
        np.testing.assert_array_equal(request_inputs(log), holdout_rows[i : i + 1])
    np.testing.assert_array_equal(request_inputs(logs[-1]), holdout_rows)
    assert request_inputs(logs[0]).dtype == np.float32


def test_saved_model_with_warmup_loads_and_serves_the_warmup_requests(exported_with_warmup, trained_digits):
    import tensorflow as tf

    from tasks.train import predict_probabilities

    signature = tf.saved_model.load(str(exported_with_warmup)).signatures["serving_default"]
    for log in read_warmup_requests(exported_with_warmup):
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
        probabilities = outputs["probabilities"].numpy()
        assert probabilities.shape == (inputs["pixels"].shape[0], 10)
        np.testing.assert_allclose(probabilities, predict_probabilities(trained_digits, inputs["pixels"]), atol=1e-5)


def test_export_names_the_served_model_when_told(trained_digits, holdout_rows, tmp_path: Path):
    target = tmp_path / "store" / "7"
    export_saved_model(trained_digits, target, "pixels", warmup_features=holdout_rows[:3], model_name="digits")
    logs = read_warmup_requests(warmup_path(target))
    assert {log.predict_log.request.model_spec.name for log in logs} == {"digits"}
    # fewer rows than single-row requests: the rows are reused in turn; the batch holds all 3
    singles = [request_inputs(log) for log in logs[:-1]]
    for i, single in enumerate(singles):
        np.testing.assert_array_equal(single, holdout_rows[i % 3 : i % 3 + 1])
    np.testing.assert_array_equal(request_inputs(logs[-1]), holdout_rows[:3])


def test_export_without_warmup_features_writes_no_warmup_file(exported_digits):
    assert not warmup_path(exported_digits).exists()


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (np.zeros((0, 64), np.float32), "non-empty"),
        (np.zeros(64, np.float32), "non-empty"),
        (np.zeros((2, 63), np.float32), "the model takes 64"),
        (np.full((2, 64), np.nan, np.float32), "finite"),
    ],
)
def test_export_refuses_warmup_rows_tf_serving_would_fail_on_before_writing(trained_digits, tmp_path: Path, features, match):
    with pytest.raises(ValueError, match=match):
        export_saved_model(trained_digits, tmp_path / "digits" / "1", "pixels", warmup_features=features)
    assert not (tmp_path / "digits").exists()


def test_failed_export_with_warmup_leaves_no_numbered_or_staging_folder(trained_digits, holdout_rows, tmp_path: Path, monkeypatch):
    import tasks.export

    def fail_after_writing(path: Path) -> str:
        assert warmup_path(path.parent).is_file()  # the warm-up file is written before the rename
        raise OSError("disk full")

    monkeypatch.setattr(tasks.export, "file_sha256", fail_after_writing)
    with pytest.raises(ExportError, match="disk full"):
        export_saved_model(trained_digits, tmp_path / "digits" / "2", "pixels", warmup_features=holdout_rows)
    assert list((tmp_path / "digits").iterdir()) == []


def test_failed_warmup_write_fails_the_export_and_leaves_no_folder(trained_digits, holdout_rows, tmp_path: Path, monkeypatch):
    import tasks.warmup

    def fail(*args, **kwargs) -> Path:
        raise OSError("no space for warm-up")

    monkeypatch.setattr(tasks.warmup, "write_warmup_requests", fail)
    with pytest.raises(ExportError, match="no space for warm-up"):
        export_saved_model(trained_digits, tmp_path / "digits" / "3", "pixels", warmup_features=holdout_rows)
    assert list((tmp_path / "digits").iterdir()) == []


def test_the_documented_limit_of_1000_records_is_enforced(holdout_rows, tmp_path: Path):
    folder = tmp_path / "saved_model"
    folder.mkdir()
    path = write_warmup_requests(folder, holdout_rows, model_name="digits", input_name="pixels", count=MAX_WARMUP_RECORDS)
    assert len(read_warmup_requests(path)) == MAX_WARMUP_RECORDS
    with pytest.raises(ValueError, match="1..1000"):
        write_warmup_requests(folder, holdout_rows, model_name="digits", input_name="pixels", count=MAX_WARMUP_RECORDS + 1)
    with pytest.raises(ValueError, match="1..1000"):
        write_warmup_requests(folder, holdout_rows, model_name="digits", input_name="pixels", count=0)
    assert len(read_warmup_requests(path)) == MAX_WARMUP_RECORDS  # a refused call leaves the file alone


def test_rewriting_replaces_the_file_whole(holdout_rows, tmp_path: Path):
    folder = tmp_path / "saved_model"
    folder.mkdir()
    write_warmup_requests(folder, holdout_rows, model_name="digits", input_name="pixels", count=5)
    path = write_warmup_requests(folder, holdout_rows[:2], model_name="digits", input_name="pixels", count=1, signature_name="serve")
    logs = read_warmup_requests(path)
    assert len(logs) == 1 and logs[0].predict_log.request.model_spec.signature_name == "serve"
    np.testing.assert_array_equal(request_inputs(logs[0]), holdout_rows[:2])
    assert [p.name for p in path.parent.iterdir()] == ["tf_serving_warmup_requests"]


def test_warmup_is_never_written_where_no_saved_model_folder_exists(holdout_rows, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        write_warmup_requests(tmp_path / "digits" / "9", holdout_rows, model_name="digits", input_name="pixels")
    assert not (tmp_path / "digits").exists()  # no numbered folder for TF Serving to try to load
    with pytest.raises(FileNotFoundError):
        read_warmup_requests(tmp_path / "nothing")


def test_register_candidate_exports_warmup_from_the_holdout(settings, trained_digits, digits_split):
    from core.settings import ModelSettings
    from registry.store import RegistryStore
    from tasks.register import Lineage, register_candidate

    holdout, _ = digits_split
    features, labels = frame_to_arrays(holdout, PIXELS, LABEL)
    store = RegistryStore.open(settings.registry_url)
    record = register_candidate(
        store, settings.model_store, "digits", trained_digits, ModelSettings(), (features, labels),
        Lineage("0" * 64, [], None, "3.11", "tf", "keras"), None, None, None, staging=settings.staging_dir("digits"),
    )
    logs = read_warmup_requests(Path(record.path))
    assert len(logs) == DEFAULT_COUNT
    assert {log.predict_log.request.model_spec.name for log in logs} == {"digits"}
    np.testing.assert_array_equal(request_inputs(logs[-1]), features[:DEFAULT_BATCH_ROWS])


def test_importing_the_export_and_warmup_modules_does_not_import_tensorflow():
    code = "import sys, tasks.warmup, tasks.export; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"
