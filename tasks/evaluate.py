"""Evaluation: candidate and production scored on the same fixed held-out set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.store_location import local_copy
from tasks.comparison import Metrics
from tasks.retry_policy import retry_if_transient
from tasks.steps import step

# Probabilities are clipped before the log so a confident wrong answer costs a finite loss;
# the same epsilon Keras uses (keras.config.epsilon()).
_EPSILON = 1e-7


def compute_metrics(probabilities: np.ndarray, labels: np.ndarray) -> Metrics:
    """Score predicted class probabilities against true labels.

    The predicted class of a row is its argmax (the first one on a tie). Accuracy, macro F1
    and per-class recall come from scikit-learn's ``sklearn.metrics`` (``accuracy_score``;
    ``f1_score`` with ``average="macro"``; ``recall_score`` with ``average=None``), always
    over every class ``0..classes-1`` whether or not it occurs in ``labels``, and with
    ``zero_division=0``: a class with no true examples has recall 0, and a class that is
    neither true nor predicted anywhere has F1 0 and still counts in the macro average.
    The loss is the mean cross-entropy in nats, ``-mean(log p[i, labels[i]])``, with the
    true class's probability clipped to at least ``1e-7`` (Keras' epsilon) so a confident
    wrong answer costs a finite loss (about 16.1). It is computed here, not with
    ``sklearn.metrics.log_loss``: that clips at the dtype's machine epsilon (a loss of about
    36 for the same answer), also clips at ``1 - eps``, and refuses a single class.

    Args:
        probabilities: float [examples, classes] (float32 from the model; any real dtype
            is read as float64), each row summing to 1; rows are not checked or renormalised.
        labels: int [examples], values in [0, classes).

    Returns:
        ``Metrics`` with ``per_class_recall`` of length ``classes`` (recall of class k at
        index k), ``examples`` = number of rows, ``confusion_matrix`` int [classes, classes]
        (scikit-learn's ``confusion_matrix``: row = true class, column = predicted class), and
        ``predictions`` and ``labels``, int [examples] each in row order (the predicted and
        the true class of each example: what a paired test against another model on the
        same rows needs, ``tasks.comparison.paired_comparison``).

    Raises:
        ValueError: the shapes disagree (probabilities not 2-D, or labels not 1-D with one
            entry per row), there are no examples, or a label is outside [0, classes).
    """
    # scikit-learn's metrics take seconds to import; only scoring pays for them.
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or labels.shape != (probabilities.shape[0],) or labels.size == 0:
        raise ValueError(f"expected probabilities [n, classes] and labels [n]; got {probabilities.shape} and {labels.shape}")
    classes = probabilities.shape[1]
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}); got {labels.min()}..{labels.max()}")
    predicted = probabilities.argmax(axis=1)
    every_class = list(range(classes))
    picked = np.clip(probabilities[np.arange(labels.size), labels], _EPSILON, 1.0)
    return Metrics(
        accuracy=float(accuracy_score(labels, predicted)),
        loss=float(-np.mean(np.log(picked))),
        macro_f1=float(f1_score(labels, predicted, labels=every_class, average="macro", zero_division=0)),
        per_class_recall=[
            float(r) for r in recall_score(labels, predicted, labels=every_class, average=None, zero_division=0)
        ],
        examples=int(labels.size),
        confusion_matrix=confusion_matrix(labels, predicted, labels=every_class).tolist(),
        predictions=predicted.tolist(),
        labels=labels.tolist(),
    )


def saved_model_probabilities(path: Path, features: np.ndarray, input_name: str) -> np.ndarray:
    """Run a SavedModel's ``serving_default`` signature, as TF Serving would.

    Args:
        path: a version folder holding saved_model.pb, local or on an object store (then
            downloaded to a temporary folder first: TensorFlow reads local files).
        features: float32 [rows, features].

    Returns:
        float32 [rows, classes] from the ``probabilities`` output.

    Raises:
        FileNotFoundError: no SavedModel at ``path``.
        KeyError: the signature or its input/output names differ from the export contract.
    """
    import tensorflow as tf

    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no SavedModel at {path}")
    with local_copy(path) as folder:
        signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    outputs = signature(**{input_name: tf.constant(features, dtype=tf.float32)})
    return outputs["probabilities"].numpy()


def evaluate_version(path: Path, holdout: tuple[np.ndarray, np.ndarray], input_name: str) -> Metrics:
    """Score the SavedModel at ``path`` on ``holdout`` (features float32 [n, f], labels int64 [n]).

    Raises:
        FileNotFoundError, KeyError: as ``saved_model_probabilities``.
    """
    features, labels = holdout
    return compute_metrics(saved_model_probabilities(path, features, input_name), labels)


evaluate_version_task = step(
    evaluate_version, name="evaluate-version", timeout_seconds=600, retries=1, retry_delay_seconds=10, retry_condition_fn=retry_if_transient
)


class SmokeTestError(Exception):
    """A SavedModel does not load, breaks the serving contract, or scores differently than recorded."""


def smoke_test(
    path: Path,
    holdout: tuple[np.ndarray, np.ndarray],
    *,
    input_name: str,
    num_classes: int,
    recorded_accuracy: float,
    tolerance: float = 1e-6,
) -> Metrics:
    """Load the SavedModel as TF Serving would and check it before it is served.

    ``path`` is local or on an object store (downloaded to a temporary folder first).

    Checks: the ``serving_default`` signature exists with exactly one input ``input_name``,
    float32 [None, features], and an output ``probabilities``, float32 [None, num_classes];
    its accuracy on the whole held-out set (features float32 [n, features], labels int64 [n])
    equals ``recorded_accuracy`` (measured at registration on the same set) within
    ``tolerance``.

    Returns:
        The metrics measured now.

    Raises:
        SmokeTestError: any check fails; the message says which and what was found.
    """
    import tensorflow as tf

    features, labels = holdout
    try:
        with local_copy(path) as folder:
            signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    except KeyError:
        raise SmokeTestError(f"{path}: no serving_default signature") from None
    except Exception as error:  # TensorFlow raises many types for a broken SavedModel
        raise SmokeTestError(f"{path}: SavedModel does not load: {type(error).__name__}: {error}") from error
    _, inputs = signature.structured_input_signature
    spec = inputs.get(input_name)
    if list(inputs) != [input_name] or spec.dtype != tf.float32 or spec.shape.as_list() != [None, features.shape[1]]:
        found = {k: (v.dtype.name, v.shape.as_list()) for k, v in inputs.items()}
        raise SmokeTestError(f"{path}: expected one input {input_name!r} float32 [None, {features.shape[1]}], found {found}")
    output = signature.structured_outputs.get("probabilities")
    if output is None or output.dtype != tf.float32 or output.shape.as_list() != [None, num_classes]:
        found = {k: (v.dtype.name, v.shape.as_list()) for k, v in signature.structured_outputs.items()}
        raise SmokeTestError(f"{path}: expected output 'probabilities' float32 [None, {num_classes}], found {found}")
    probabilities = signature(**{input_name: tf.constant(features, dtype=tf.float32)})["probabilities"].numpy()
    metrics = compute_metrics(probabilities, labels)
    if abs(metrics.accuracy - recorded_accuracy) > tolerance:
        raise SmokeTestError(
            f"{path}: held-out accuracy is {metrics.accuracy:.6f} now but {recorded_accuracy:.6f} was recorded"
        )
    return metrics
