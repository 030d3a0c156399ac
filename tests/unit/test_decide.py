"""The release decision: gates, first model, ties, and the always-ask policy."""

from __future__ import annotations

import pytest

from core.settings import ReleasePolicy
from tasks.comparison import Metrics
from tasks.decide import Outcome, decide


def metrics(accuracy: float, recall: float = 0.95, worst: float | None = None) -> Metrics:
    recalls = [recall] * 10
    if worst is not None:
        recalls[3] = worst
    return Metrics(accuracy=accuracy, loss=0.1, macro_f1=accuracy, per_class_recall=recalls, examples=360)


def test_below_minimum_accuracy_is_rejected_even_without_production():
    decision = decide(metrics(0.85), None, ReleasePolicy(min_accuracy=0.9))
    assert decision.outcome is Outcome.REJECT
    assert "below the minimum" in decision.reasons[0]


def test_first_model_passing_gates_is_promoted():
    decision = decide(metrics(0.95), None, ReleasePolicy())
    assert decision.outcome is Outcome.PROMOTE
    assert any("first model" in r for r in decision.reasons)


@pytest.mark.parametrize("policy", [ReleasePolicy(promote_first=False), ReleasePolicy(approval="always")])
def test_first_model_asks_a_human_when_policy_says_so(policy):
    assert decide(metrics(0.95), None, policy).outcome is Outcome.REQUEST_APPROVAL


def test_clear_improvement_is_promoted_and_measured():
    decision = decide(metrics(0.97), metrics(0.95), ReleasePolicy(min_improvement=0.01))
    assert decision.outcome is Outcome.PROMOTE
    assert decision.accuracy_delta == pytest.approx(0.02)


def test_tie_is_never_promoted_automatically():
    decision = decide(metrics(0.95), metrics(0.95), ReleasePolicy(min_improvement=0.0))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert any("tie" in r for r in decision.reasons)


def test_gain_below_minimum_improvement_asks_a_human():
    decision = decide(metrics(0.955), metrics(0.95), ReleasePolicy(min_improvement=0.01))
    assert decision.outcome is Outcome.REQUEST_APPROVAL


def test_small_loss_within_gates_asks_a_human():
    assert decide(metrics(0.94), metrics(0.95), ReleasePolicy()).outcome is Outcome.REQUEST_APPROVAL


def test_per_class_recall_drop_beyond_limit_is_rejected_despite_better_accuracy():
    decision = decide(metrics(0.97, worst=0.80), metrics(0.95), ReleasePolicy(max_recall_drop=0.05))
    assert decision.outcome is Outcome.REJECT
    assert decision.worst_recall_class == 3
    assert decision.worst_recall_drop == pytest.approx(0.15)
    assert "class 3" in decision.reasons[-1]


def test_always_mode_asks_a_human_even_for_a_clear_improvement():
    decision = decide(metrics(0.99), metrics(0.95), ReleasePolicy(approval="always"))
    assert decision.outcome is Outcome.REQUEST_APPROVAL


def test_class_count_mismatch_is_an_error():
    other = Metrics(accuracy=0.95, loss=0.1, macro_f1=0.9, per_class_recall=[0.9] * 3, examples=10)
    with pytest.raises(ValueError, match="classes"):
        decide(metrics(0.96), other, ReleasePolicy())
