"""The release decision: a pure function of candidate metrics, production metrics and policy.

Modelled on TFX's Evaluator blessing: an absolute threshold, a change threshold against the
baseline, and the change threshold ignored when there is no baseline. A change against the
baseline counts only when it is not noise: candidate and production are compared on the same
held-out examples (``tasks.comparison.paired_comparison``: McNemar's exact test, Newcombe's
interval, see ``tasks.significance``), and what the test cannot tell goes to a human.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from core.settings import ReleasePolicy
from tasks.comparison import Metrics, PairedComparison, compare, paired_comparison, unpaired_reason


class Outcome(str, Enum):
    PROMOTE = "promote"
    REQUEST_APPROVAL = "request_approval"
    REJECT = "reject"


class Decision(BaseModel):
    """What to do with a candidate, and every reason that led there (human-readable).

    ``accuracy_delta`` is candidate minus production accuracy, ``worst_recall_drop`` the
    largest fall of a class's recall (class ``worst_recall_class``; negative when every class
    improved), all fractions. Decisions recorded before ``paired`` existed load with None.
    """

    outcome: Outcome
    reasons: list[str]
    accuracy_delta: float | None = None
    worst_recall_drop: float | None = None
    worst_recall_class: int | None = None
    paired: PairedComparison | None = Field(
        default=None,
        description="The tests the decision read: candidate against production on the same held-out examples. "
        "None for a first model, or when either's per-example predictions are not recorded.",
    )


def decide(candidate: Metrics, production: Metrics | None, policy: ReleasePolicy) -> Decision:
    """Decide whether ``candidate`` replaces ``production``.

    A change is significant when McNemar's exact test on the same held-out examples gives
    p < alpha, alpha = ``1 - policy.confidence_level`` (0.05 by default). For a class's
    recall, alpha is shared among the classes (Bonferroni: alpha / classes, Dunn 1961, J. Am.
    Stat. Assoc. 56:52-64), so that testing every class does not multiply the chance of a
    rejection on noise.

    Rules, in order:
    1. accuracy below ``policy.min_accuracy``: reject.
    2. no production (first model): promote when ``policy.promote_first`` and approval is
       ``auto``, otherwise ask a human.
    3. the two cannot be compared example by example (either was scored before per-example
       predictions were kept, or on other examples): ask a human, as no change can be told
       from noise.
    4. a class's recall drops by more than ``policy.max_recall_drop``, significantly: reject.
    5. accuracy is significantly lower: reject.
    6. a class's recall drops by more than ``policy.max_recall_drop``, not significantly: ask
       a human.
    7. accuracy gains (> 0 and >= ``policy.min_improvement``) significantly: promote in
       ``auto`` mode, ask a human in ``always`` mode.
    8. otherwise (a tie, a gain that is not significant or too small, a loss that is not
       significant): ask a human; a tie never promotes.

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

    classes = len(candidate.per_class_recall)
    if classes != len(production.per_class_recall):
        raise ValueError(f"candidate has {classes} classes, production {len(production.per_class_recall)}")
    worst = compare(candidate, production).worst_recall
    worst_class, worst_drop = (worst.class_index, -worst.change) if worst is not None else (0, 0.0)
    delta = candidate.accuracy - production.accuracy
    measured = {"accuracy_delta": delta, "worst_recall_drop": worst_drop, "worst_recall_class": worst_class}

    unpaired = unpaired_reason(candidate, production)
    if unpaired is not None:
        reasons += [
            f"accuracy changes by {delta:+.4f}; the largest recall drop is {worst_drop:.4f} (class {worst_class})",
            f"{unpaired}: whether the change is more than noise cannot be tested, so a human decides",
        ]
        return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons, **measured)

    paired = paired_comparison(candidate, production, policy.confidence_level)
    measured["paired"] = paired
    alpha = 1 - policy.confidence_level
    class_alpha = alpha / classes
    accuracy = paired.accuracy
    level = f"{policy.confidence_level * 100:g} %"
    change = f"accuracy {accuracy.describe()} ({accuracy.counts()})"

    # Classes whose recall fell further than allowed, worst first.
    dropped = sorted(
        ((k, test) for k, test in enumerate(paired.recall) if test is not None and -test.difference > policy.max_recall_drop),
        key=lambda pair: pair[1].difference,
    )
    for k, test in dropped:
        if test.significant(class_alpha):
            return Decision(
                outcome=Outcome.REJECT,
                reasons=reasons
                + [
                    f"recall of class {k} drops by {-test.difference:.4f}, more than the allowed "
                    f"{policy.max_recall_drop:.4f}, and significantly ({test.describe()}; {test.counts()}, "
                    f"below {class_alpha:.2g}, the {alpha:.2g} of a {level} level shared among {classes} classes)"
                ],
                **measured,
            )
    if accuracy.significant(alpha) and accuracy.difference < 0:
        return Decision(
            outcome=Outcome.REJECT,
            reasons=reasons + [f"{change}: significantly worse than production at {level}"],
            **measured,
        )
    if dropped:
        k, test = dropped[0]
        reasons += [
            change,
            f"recall of class {k} drops by {-test.difference:.4f}, more than the allowed {policy.max_recall_drop:.4f}, "
            f"but not significantly ({test.describe()}; {test.counts()}, not below {class_alpha:.2g}): a human decides",
        ]
        return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons, **measured)
    reasons.append(
        f"no class's recall drops by more than {policy.max_recall_drop:.4f} "
        f"(worst: class {worst_class}, recall change {0.0 - worst_drop:+.4f})"
    )

    if accuracy.gained == accuracy.lost:
        reasons.append(f"{change}: accuracy ties production, and a tie is not promoted automatically")
    elif accuracy.difference < 0:
        reasons.append(f"{change}: a loss, but not significant at {level}: a human decides")
    elif not accuracy.significant(alpha):
        reasons.append(f"{change}: a gain, but not significant at {level}: a human decides")
    elif delta < policy.min_improvement:
        short = f"short of the {policy.min_improvement:.4f} needed to promote automatically"
        reasons.append(f"{change}: significant at {level}, but {short}")
    else:
        reasons.append(f"{change}: significant at {level} (minimum gain {policy.min_improvement:.4f})")
        if policy.approval == "auto":
            return Decision(outcome=Outcome.PROMOTE, reasons=reasons, **measured)
        return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons + ["policy asks a human for every release"], **measured)
    return Decision(outcome=Outcome.REQUEST_APPROVAL, reasons=reasons, **measured)
