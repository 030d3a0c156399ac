"""Candidate against baseline: the one comparison that the nightly artifact, Slack, the CLI and the model card render.

The decision (``tasks.decide``) reads the same figures. Renderers only format: which metrics are
compared, how a change is signed and which class's recall fell furthest is decided here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

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


def _as_dict(metrics: Metrics | Mapping[str, Any] | None) -> dict[str, Any]:
    if metrics is None:
        return {}
    return metrics.model_dump() if isinstance(metrics, Metrics) else dict(metrics)
