"""Warm-up: the sample requests TF Serving replays when it loads a version.

TensorFlow initialises parts of its runtime lazily, so the first requests after a version
loads can be orders of magnitude slower than the rest. TF Serving avoids that when a version
folder carries warm-up requests, under these documented conditions (TF Serving, "SavedModel
Warmup", https://www.tensorflow.org/tfx/serving/saved_model_warmup):

- file ``assets.extra/tf_serving_warmup_requests`` inside the SavedModel folder;
- a TFRecord file, each record a serialized ``tensorflow_serving.apis.PredictionLog``;
- at most 1,000 records;
- requests representative of real serving traffic.

TF Serving replays the requests at load time when ``--enable_model_warmup`` is on (its
default). The load returns the warm-up's status: a request that fails, a record that does
not parse, or more than 1,000 records makes that version fail to load (TF Serving's
``servables/tensorflow/saved_model_warmup_util.cc``), so the requests must match the
exported signature exactly (input name, dtype float32, width) and stay within the limit.
``assets.extra`` is not part of ``saved_model.pb``: ``tf.saved_model.load`` ignores it and
the export checksum does not cover it.

TensorFlow and the TF Serving protos are imported inside the functions: importing this
module stays cheap.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tensorflow_serving.apis.prediction_log_pb2 import PredictionLog

WARMUP_FOLDER = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's documented limit
DEFAULT_COUNT = 8  # 7 single-row requests and 1 batch request
DEFAULT_BATCH_ROWS = 16


def warmup_path(saved_model_dir: Path) -> Path:
    """``<saved_model_dir>/assets.extra/tf_serving_warmup_requests``: where TF Serving looks."""
    return saved_model_dir / WARMUP_FOLDER / WARMUP_FILE


def check_warmup_features(features: np.ndarray, width: int | None = None) -> np.ndarray:
    """``features`` as float32 [rows, width] after checking it can make valid requests.

    Args:
        features: real rows, [rows, features], any real dtype (cast to float32).
        width: the SavedModel's input width; None to skip that check.

    Raises:
        ValueError: not 2-D, no rows, a non-finite value, or a width other than ``width``
            (TF Serving would fail to load a version whose warm-up request fails).
    """
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"warm-up features must be a non-empty [rows, features] array, got shape {array.shape}")
    if width is not None and array.shape[1] != width:
        raise ValueError(f"warm-up features have {array.shape[1]} columns; the model takes {width}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("warm-up features must be finite")
    return array


def warmup_batches(features: np.ndarray, count: int = DEFAULT_COUNT, batch_rows: int = DEFAULT_BATCH_ROWS) -> list[np.ndarray]:
    """The inputs of the ``count`` warm-up requests, in order, each float32 [k, features].

    ``count - 1`` single-row requests (rows 0, 1, 2, ..., wrapping round when ``features``
    has fewer rows), then one batch request of the first ``min(batch_rows, rows)`` rows, so
    both the single-row and the batched shape are warm.

    Raises:
        ValueError: ``count`` outside 1..1000 (TF Serving's limit), ``batch_rows`` < 1, or
            ``features`` refused by :func:`check_warmup_features`.
    """
    if not 1 <= count <= MAX_WARMUP_RECORDS:
        raise ValueError(f"count must lie in 1..{MAX_WARMUP_RECORDS} (TF Serving's warm-up limit), got {count}")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    rows = check_warmup_features(features)
    singles = [rows[i % len(rows)][np.newaxis, :] for i in range(count - 1)]
    return [*singles, rows[:batch_rows]]


def write_warmup_requests(
    saved_model_dir: Path,
    features: np.ndarray,
    *,
    model_name: str,
    input_name: str,
    signature_name: str = "serving_default",
    count: int = DEFAULT_COUNT,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Path:
    """Write ``count`` Predict warm-up requests built from ``features`` into ``saved_model_dir``.

    Each record is a ``PredictionLog`` whose ``predict_log.request`` names ``model_name`` and
    ``signature_name`` and holds ``inputs[input_name]`` = float32 [k, features] (DT_FLOAT);
    which rows go into which request is :func:`warmup_batches`. Format and limit per TF
    Serving's "SavedModel Warmup" (https://www.tensorflow.org/tfx/serving/saved_model_warmup):
    TFRecord of PredictionLog at ``assets.extra/tf_serving_warmup_requests``, <= 1,000 records.

    Args:
        saved_model_dir: an existing SavedModel folder (typically the export's staging folder).
        features: real rows (e.g. held-out features), [rows, features].
        model_name: the name TF Serving serves the model under (its model config ``name``).
        input_name: the signature's input key.

    Returns:
        The warm-up file's path.

    Side effects: creates ``assets.extra`` if needed; the records go to a temporary file in
    it that is renamed over the warm-up file, so an existing file is replaced whole or kept.

    Raises:
        ValueError: bad ``count``/``batch_rows``/``features``, or an empty name.
        FileNotFoundError: ``saved_model_dir`` is not a folder (never creates a version folder).
        OSError, tf.errors.OpError: the file could not be written; no temporary file is left.
    """
    if not model_name or not input_name or not signature_name:
        raise ValueError("model_name, input_name and signature_name must be non-empty")
    batches = warmup_batches(features, count, batch_rows)
    if not saved_model_dir.is_dir():
        raise FileNotFoundError(f"{saved_model_dir} is not a SavedModel folder")

    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = warmup_path(saved_model_dir)
    target.parent.mkdir(exist_ok=True)
    temporary = target.with_name(f".{WARMUP_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with tf.io.TFRecordWriter(str(temporary)) as writer:
            for batch in batches:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = model_name
                request.model_spec.signature_name = signature_name
                request.inputs[input_name].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def read_warmup_requests(path: Path) -> list[PredictionLog]:
    """The ``PredictionLog`` records of a warm-up file, in file order.

    Args:
        path: the warm-up file, or a SavedModel folder (then its ``assets.extra`` file).

    Raises:
        FileNotFoundError: no warm-up file there.
        tf.errors.DataLossError: the file is not a valid TFRecord file.
        google.protobuf.message.DecodeError: a record is not a PredictionLog.
    """
    file = warmup_path(path) if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no warm-up requests at {file}")

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in tf.data.TFRecordDataset(str(file))]
