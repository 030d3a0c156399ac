"""Held-out metrics computed from probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.comparison import Metrics
from tasks.evaluate import compute_metrics


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]], dtype=np.float32)
    m = compute_metrics(probabilities, labels)
    assert m.accuracy == pytest.approx(0.75)
    assert m.per_class_recall == pytest.approx([0.5, 1.0])
    # class 0: precision 1, recall .5 -> f1 2/3; class 1: precision 2/3, recall 1 -> f1 .8
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert m.loss == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.8, 0.7])), rel=1e-6)
    assert m.examples == 4


def test_zero_probability_for_the_true_class_gives_a_finite_loss():
    m = compute_metrics(np.array([[1.0, 0.0]]), np.array([1]))
    assert np.isfinite(m.loss) and m.loss > 10


@pytest.mark.parametrize(
    "probabilities, labels",
    [(np.ones((3, 2)) / 2, np.array([0, 1])), (np.ones((2, 2)) / 2, np.array([0, 2])), (np.ones((0, 2)), np.array([]))],
)
def test_bad_shapes_and_labels_are_refused(probabilities, labels):
    with pytest.raises(ValueError):
        compute_metrics(probabilities, labels)


def test_each_examples_prediction_and_label_are_kept_in_row_order():
    labels = np.array([2, 0, 1])
    probabilities = np.array([[0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3]], dtype=np.float32)
    m = compute_metrics(probabilities, labels)
    assert m.predictions == [2, 1, 1] and m.labels == [2, 0, 1]
    assert Metrics.model_validate(m.model_dump(mode="json")) == m  # what the registry records loads back


def test_metrics_recorded_before_predictions_were_kept_still_load():
    old = Metrics.model_validate({"accuracy": 0.9, "loss": 0.3, "macro_f1": 0.9, "per_class_recall": [0.9, 0.9], "examples": 20})
    assert old.predictions is None and old.labels is None


@pytest.mark.parametrize(
    "extra",
    [{"predictions": [0, 1]}, {"predictions": [0, 1], "labels": [0, 1, 1]}, {"predictions": [0], "labels": [0]}],
    ids=["labels-missing", "lengths-differ", "not-one-per-example"],
)
def test_per_example_lists_must_match_the_examples(extra):
    with pytest.raises(ValueError, match="predictions"):
        Metrics(accuracy=0.5, loss=0.7, macro_f1=0.5, per_class_recall=[0.5, 0.5], examples=2, **extra)
