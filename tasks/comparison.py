"""Candidate against baseline: the one comparison that the nightly artifact, Slack, the CLI and the model card render.

The decision (``tasks.decide``) reads the same figures. Renderers only format: which metrics are
compared, how a change is signed and which class's recall fell furthest is decided here once.
:func:`paired_comparison` tests the changes example by example (``tasks.significance``); the
decision records those tests, and renderers show each change with its interval from that record
(:meth:`PairedComparison.test_of`), never recomputing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, model_validator

from tasks.significance import PairedTest, paired_test

# (metrics key, label people read, lower is better): the headline figures, in this order.
SUMMARY_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", False),
    ("loss", "loss", True),
    ("macro_f1", "macro F1", False),
)


class Metrics(BaseModel):
    """Held-out metrics of one model. Fractions are in [0, 1]; loss is mean cross-entropy in nats."""

    accuracy: float = Field(ge=0, le=1)
    loss: float = Field(ge=0)
    macro_f1: float = Field(ge=0, le=1)
    per_class_recall: list[float] = Field(description="Recall of class k at index k.")
    examples: int = Field(gt=0, description="Number of held-out examples scored.")
    confusion_matrix: list[list[int]] | None = Field(
        default=None,
        description="Counts [true class][predicted class] over the held-out set; None for versions scored before it was kept.",
    )
    predictions: list[int] | None = Field(
        default=None,
        description="Predicted class of each held-out example, int [examples] in the held-out set's row order; "
        "None for versions scored before it was kept.",
    )
    labels: list[int] | None = Field(
        default=None,
        description="True class of each held-out example, int [examples], same order; set exactly when predictions is.",
    )

    @model_validator(mode="after")
    def _one_entry_per_example(self) -> Metrics:
        if (self.predictions is None) != (self.labels is None):
            raise ValueError("predictions and labels are recorded together or not at all")
        if self.predictions is not None and not len(self.predictions) == len(self.labels) == self.examples:
            raise ValueError(
                f"predictions and labels need one entry per example ({self.examples}); "
                f"got {len(self.predictions)} and {len(self.labels)}"
            )
        return self


class MetricChange(BaseModel):
    """One figure of the candidate beside the baseline's; either may be unknown (None)."""

    key: str  # "accuracy", "loss", "macro_f1", or "recall <k>"
    label: str  # as people read it: "macro F1", "recall 3"
    candidate: float | None
    baseline: float | None
    lower_is_better: bool = False
    class_index: int | None = None  # the class, for a per-class recall

    @property
    def change(self) -> float | None:
        """Candidate minus baseline, when both are known (a loss that falls is negative)."""
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline


class Comparison(BaseModel):
    """A candidate's held-out figures beside its baseline's (the production version it was
    compared with; None for a model's first version)."""

    summary: list[MetricChange]
    per_class_recall: list[MetricChange]
    has_baseline: bool
    same_classes: bool = Field(description="The baseline has a recall for exactly the candidate's classes.")

    @property
    def worst_recall(self) -> MetricChange | None:
        """The class whose recall changed least favourably (the first such class on a tie), when
        the baseline scored the same classes as the candidate; else None."""
        if not self.same_classes or not self.per_class_recall:
            return None
        return min(self.per_class_recall, key=lambda row: row.change)  # type: ignore[arg-type, return-value]


def compare(candidate: Metrics | Mapping[str, Any] | None, baseline: Metrics | Mapping[str, Any] | None) -> Comparison:
    """Compare ``candidate``'s figures with ``baseline``'s.

    Either may be :class:`Metrics` or the dict the registry records (``ModelVersionRecord.metrics``,
    possibly incomplete: a missing figure is None). ``per_class_recall`` has one row per class
    of the candidate; a baseline with fewer classes leaves the rest None.
    """
    new, old = _as_dict(candidate), _as_dict(baseline)
    summary = [
        MetricChange(key=key, label=label, candidate=new.get(key), baseline=old.get(key), lower_is_better=lower)
        for key, label, lower in SUMMARY_METRICS
    ]
    new_recall, old_recall = new.get("per_class_recall") or [], old.get("per_class_recall") or []
    per_class = [
        MetricChange(
            key=f"recall {k}",
            label=f"recall {k}",
            candidate=value,
            baseline=old_recall[k] if k < len(old_recall) else None,
            class_index=k,
        )
        for k, value in enumerate(new_recall)
    ]
    return Comparison(
        summary=summary,
        per_class_recall=per_class,
        has_baseline=baseline is not None,
        same_classes=baseline is not None and len(new_recall) == len(old_recall),
    )


class PairedComparison(BaseModel):
    """Candidate against baseline example by example, on the same held-out examples
    (:func:`paired_comparison`)."""

    accuracy: PairedTest = Field(description="Over every held-out example.")
    recall: list[PairedTest | None] = Field(
        description="Class k's recall at index k, over the examples of class k; None for a class with no example."
    )

    def test_of(self, figure: MetricChange) -> PairedTest | None:
        """The test behind ``figure`` (accuracy, or a class's recall), or None when it has none."""
        if figure.key == "accuracy":
            return self.accuracy
        if figure.class_index is not None and figure.class_index < len(self.recall):
            return self.recall[figure.class_index]
        return None


def unpaired_reason(candidate: Metrics, baseline: Metrics) -> str | None:
    """Why ``candidate`` and ``baseline`` cannot be compared example by example, or None when
    they can (both recorded their per-example predictions, on the same examples)."""
    missing = [who for who, metrics in (("the candidate", candidate), ("the baseline", baseline)) if metrics.predictions is None]
    if missing:
        return f"no per-example predictions are recorded for {' and '.join(missing)} (scored before they were kept)"
    if candidate.labels != baseline.labels:
        return "the candidate and the baseline were not scored on the same held-out examples"
    return None


def paired_comparison(candidate: Metrics, baseline: Metrics, confidence_level: float) -> PairedComparison:
    """Test the candidate's change of accuracy, and of each class's recall, against the
    baseline's on the same examples (``tasks.significance.paired_test``: McNemar's exact test,
    Newcombe's interval at ``confidence_level``). Classes are ``0..len(candidate.per_class_recall)-1``.

    Raises:
        ValueError: :func:`unpaired_reason` gives a reason (its text is the message), or
            ``confidence_level`` is not in (0, 1).
    """
    import numpy as np

    reason = unpaired_reason(candidate, baseline)
    if reason is not None:
        raise ValueError(reason)
    labels = np.asarray(candidate.labels, dtype=np.int64)
    new = np.asarray(candidate.predictions, dtype=np.int64) == labels  # bool [examples]
    old = np.asarray(baseline.predictions, dtype=np.int64) == labels
    recall = []
    for k in range(len(candidate.per_class_recall)):
        of_class = labels == k
        recall.append(paired_test(new[of_class], old[of_class], confidence_level) if of_class.any() else None)
    return PairedComparison(accuracy=paired_test(new, old, confidence_level), recall=recall)


def _as_dict(metrics: Metrics | Mapping[str, Any] | None) -> dict[str, Any]:
    if metrics is None:
        return {}
    return metrics.model_dump() if isinstance(metrics, Metrics) else dict(metrics)
