"""The release decision: a pure function of candidate metrics, production metrics and policy.

Modelled on TFX's Evaluator blessing: an absolute threshold, a change threshold against the
baseline, and the change threshold ignored when there is no baseline.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

from core.settings import ReleasePolicy
from tasks.comparison import Metrics, compare


class Outcome(str, Enum):
    PROMOTE = "promote"
    REQUEST_APPROVAL = "request_approval"
    REJECT = "reject"


class Decision(BaseModel):
    """What to do with a candidate, and every reason that led there (human-readable)."""

    outcome: Outcome
    reasons: list[str]
    accuracy_delta: float | None = None
    worst_recall_drop: float | None = None
    worst_recall_class: int | None = None


def decide(candidate: Metrics, production: Metrics | None, policy: ReleasePolicy) -> Decision:
    """Decide whether ``candidate`` replaces ``production``.

    Rules, in order:
    1. accuracy below ``policy.min_accuracy``: reject.
    2. no production (first model): promote when ``policy.promote_first`` and approval is
       ``auto``, otherwise ask a human.
    3. any class's recall drops by more than ``policy.max_recall_drop``: reject.
    4. a clear improvement (accuracy gain > 0 and >= ``policy.min_improvement``): promote in
       ``auto`` mode, ask a human in ``always`` mode.
    5. otherwise (a tie or a small loss within the gates): ask a human; a tie never promotes.

    Raises:
        ValueError: the two metric sets cover a different number of classes.
    """
    reasons: list[str] = []
    if candidate.accuracy < policy.min_accuracy:
        return Decision(
            outcome=Outcome.REJECT,
            reasons=[f"accuracy {candidate.accuracy:.4f} is below the minimum {policy.min_accuracy:.4f}"],
        )
    reasons.append(f"accuracy {candidate.accuracy:.4f} meets the minimum {policy.min_accuracy:.4f}")

    if production is None:
        if policy.promote_first and policy.approval == "auto":
            return Decision(outcome=Outcome.PROMOTE, reasons=reasons + ["no production version: first model promoted"])
        return Decision(
            outcome=Outcome.REQUEST_APPROVAL,
            reasons=reasons + ["no production version: first model needs a human approval by policy"],
        )

    if len(candidate.per_class_recall) != len(production.per_class_recall):
        raise ValueError(
            f"candidate has {len(candidate.per_class_recall)} classes, production {len(production.per_class_recall)}"
        )
    comparison = compare(candidate, production)
    worst = comparison.worst_recall
    worst_class, worst_drop = (worst.class_index, -worst.change) if worst is not None else (0, 0.0)
    delta = candidate.accuracy - production.accuracy
    measured = {"accuracy_delta": delta, "worst_recall_drop": worst_drop, "worst_recall_class": worst_class}

    if worst_drop > policy.max_recall_drop:
        return Decision(
            outcome=Outcome.REJECT,
            reasons=reasons
            + [f"recall of class {worst_class} drops by {worst_drop:.4f}, more than the allowed {policy.max_recall_drop:.4f}"],
            **measured,
        )
    reasons.append(f"no class's recall drops by more than {policy.max_recall_drop:.4f} (worst: class {worst_class}, recall change {0.0 - worst_drop:+.4f})")

    if delta > 0 and delta >= policy.min_improvement:
        reasons.append(f"accuracy improves by {delta:+.4f} (minimum {policy.min_improvement:.4f})")
        if policy.approval == "auto":
            return Decision(outcome=Outcome.PROMOTE, reasons=reasons, **measured)
        return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons + ["policy asks a human for every release"], **measured)

    if delta == 0:
        reasons.append("accuracy ties production: a tie is not promoted automatically")
    else:
        reasons.append(f"accuracy changes by {delta:+.4f}, short of the {policy.min_improvement:.4f} needed to promote automatically")
    return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons, **measured)
