"""The release decision: gates, first model, and changes that count only when they are not noise.

Candidate and production are scored on the same held-out set (36 examples of each of 10
classes); their predictions are built example by example, so each test knows exactly how many
examples the candidate gained and lost.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.settings import ReleasePolicy
from tasks.comparison import Metrics
from tasks.decide import Decision, Outcome, decide
from tasks.evaluate import compute_metrics

LABELS = np.repeat(np.arange(10), 36)  # int [360], class k at rows 36k..36k+35


def scored(predictions: np.ndarray) -> Metrics:
    """Metrics of a model that predicts ``predictions`` (int [360]) for the held-out ``LABELS``."""
    return compute_metrics(np.eye(10, dtype=np.float32)[predictions], LABELS)


def wrong(predictions: np.ndarray, rows: list[int]) -> np.ndarray:
    """``predictions`` with ``rows`` answered wrongly (the next class)."""
    changed = predictions.copy()
    changed[rows] = (LABELS[rows] + 1) % 10
    return changed


def spread(count: int, offset: int = 0) -> list[int]:
    """``count`` rows, one per class in turn (class k's rows 36k + offset, 36k + offset + 1, ...)."""
    return [36 * (i % 10) + offset + i // 10 for i in range(count)]


# Production misses 12 examples spread over the classes.
PRODUCTION_PREDICTIONS = wrong(LABELS, spread(12))
PRODUCTION = scored(PRODUCTION_PREDICTIONS)


def candidate(gained: int = 0, lost: int = 0, lost_rows: list[int] | None = None) -> Metrics:
    """Production's predictions with the first ``gained`` of its misses fixed and ``lost``
    (or exactly ``lost_rows``) of its right answers broken."""
    predictions = PRODUCTION_PREDICTIONS.copy()
    fixed = spread(12)[:gained]
    predictions[fixed] = LABELS[fixed]
    return scored(wrong(predictions, lost_rows if lost_rows is not None else spread(lost, offset=20)))


def test_below_minimum_accuracy_is_rejected_even_without_production():
    decision = decide(scored(wrong(LABELS, spread(40))), None, ReleasePolicy(min_accuracy=0.9))
    assert decision.outcome is Outcome.REJECT
    assert "below the minimum" in decision.reasons[0]


def test_first_model_passing_gates_is_promoted():
    decision = decide(PRODUCTION, None, ReleasePolicy())
    assert decision.outcome is Outcome.PROMOTE
    assert any("first model" in r for r in decision.reasons)
    assert decision.paired is None


@pytest.mark.parametrize("policy", [ReleasePolicy(promote_first=False), ReleasePolicy(approval="always")])
def test_first_model_asks_a_human_when_policy_says_so(policy):
    assert decide(PRODUCTION, None, policy).outcome is Outcome.REQUEST_APPROVAL


def test_a_significant_gain_is_promoted_with_its_interval():
    decision = decide(candidate(gained=10), PRODUCTION, ReleasePolicy())
    assert decision.outcome is Outcome.PROMOTE
    assert decision.accuracy_delta == pytest.approx(10 / 360)
    test = decision.paired.accuracy
    assert (test.gained, test.lost, test.examples) == (10, 0, 360)
    assert test.p_value == pytest.approx(2 * 0.5**10)  # McNemar exact: both tails of Binomial(10, 1/2)
    assert 0 < test.ci_low < 10 / 360 < test.ci_high
    assert f"accuracy {test.describe()}" in decision.reasons[-1] and "significant at 95 %" in decision.reasons[-1]


def test_two_examples_gained_are_noise_and_go_to_a_human():
    # The case: +0.56 points on 360 examples promoted itself with min_improvement = 0.
    decision = decide(candidate(gained=2), PRODUCTION, ReleasePolicy(min_improvement=0.0))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    test = decision.paired.accuracy
    assert test.describe().startswith("+0.56 points, 95 % CI -")
    assert test.p_value == pytest.approx(0.5)
    assert "not significant at 95 %" in decision.reasons[-1] and "a human decides" in decision.reasons[-1]


def test_a_lower_confidence_level_lets_a_smaller_gain_through():
    # 5 gained, 0 lost: p = 0.0625, significant at 90 % but not at 95 %.
    assert decide(candidate(gained=5), PRODUCTION, ReleasePolicy()).outcome is Outcome.REQUEST_APPROVAL
    decision = decide(candidate(gained=5), PRODUCTION, ReleasePolicy(confidence_level=0.9))
    assert decision.outcome is Outcome.PROMOTE
    assert "90 % CI" in decision.paired.accuracy.describe()


def test_a_significant_loss_is_rejected():
    decision = decide(candidate(lost=10), PRODUCTION, ReleasePolicy())
    assert decision.outcome is Outcome.REJECT
    assert (decision.paired.accuracy.gained, decision.paired.accuracy.lost) == (0, 10)
    assert "significantly worse than production at 95 %" in decision.reasons[-1]


def test_a_loss_that_is_not_significant_asks_a_human():
    decision = decide(candidate(gained=1, lost=3), PRODUCTION, ReleasePolicy())
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert "a loss, but not significant" in decision.reasons[-1]


def test_tie_is_never_promoted_automatically():
    decision = decide(candidate(gained=3, lost=3), PRODUCTION, ReleasePolicy(min_improvement=0.0))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert any("tie" in r for r in decision.reasons)
    assert decision.paired.accuracy.p_value == 1.0


def test_a_significant_gain_below_minimum_improvement_asks_a_human():
    decision = decide(candidate(gained=10), PRODUCTION, ReleasePolicy(min_improvement=0.05))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert "short of the 0.0500 needed" in decision.reasons[-1]


def test_always_mode_asks_a_human_even_for_a_significant_gain():
    decision = decide(candidate(gained=12), PRODUCTION, ReleasePolicy(approval="always"))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert decision.reasons[-1] == "policy asks a human for every release"


def test_a_significant_recall_drop_is_rejected_despite_better_accuracy():
    class_3 = list(range(3 * 36 + 20, 3 * 36 + 32))  # 12 of class 3's examples production got right
    decision = decide(candidate(gained=12, lost_rows=class_3), PRODUCTION, ReleasePolicy(max_recall_drop=0.05))
    assert decision.outcome is Outcome.REJECT
    assert decision.worst_recall_class == 3
    assert decision.worst_recall_drop == pytest.approx(11 / 36)
    recall = decision.paired.recall[3]
    assert (recall.gained, recall.lost, recall.examples) == (1, 12, 36)  # production's one class-3 miss was fixed
    assert recall.p_value < 0.05 / 10  # significant with alpha shared among the 10 classes
    assert "recall of class 3 drops by" in decision.reasons[-1] and "significantly" in decision.reasons[-1]


def test_a_recall_drop_that_is_not_significant_asks_a_human_despite_a_significant_gain():
    class_3 = list(range(3 * 36 + 20, 3 * 36 + 23))  # with production's miss fixed: 1 gained, 3 lost, p = 0.63
    decision = decide(candidate(gained=12, lost_rows=class_3), PRODUCTION, ReleasePolicy(max_recall_drop=0.05))
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert decision.paired.accuracy.significant(0.05)
    assert "recall of class 3 drops by 0.0556" in decision.reasons[-1]  # 1 fixed, 3 broken: -2/36
    assert "not significantly" in decision.reasons[-1]


def test_a_per_class_drop_significant_alone_but_not_among_ten_classes_asks_a_human():
    # Class 3: 1 gained, 8 lost, p = 0.039 < 0.05 but not below 0.05 / 10; accuracy ties.
    class_3 = list(range(3 * 36 + 20, 3 * 36 + 28))
    decision = decide(candidate(gained=8, lost_rows=class_3), PRODUCTION, ReleasePolicy())
    recall = decision.paired.recall[3]
    assert (recall.gained, recall.lost) == (1, 8) and 0.005 < recall.p_value < 0.05
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert "not significantly" in decision.reasons[-1]


def test_metrics_recorded_without_predictions_ask_a_human():
    # A version registered before per-example predictions were kept (the resume path reads its record).
    old = Metrics.model_validate(
        {"accuracy": 0.95, "loss": 0.1, "macro_f1": 0.95, "per_class_recall": [0.95] * 10, "examples": 360}
    )
    decision = decide(candidate(gained=12), old, ReleasePolicy())
    assert decision.outcome is Outcome.REQUEST_APPROVAL and decision.paired is None
    assert "no per-example predictions are recorded for the baseline" in decision.reasons[-1]
    assert decision.accuracy_delta == pytest.approx(candidate(gained=12).accuracy - 0.95)


def test_metrics_of_other_examples_ask_a_human():
    shuffled = np.random.default_rng(0).permutation(360)
    other = compute_metrics(np.eye(10, dtype=np.float32)[PRODUCTION_PREDICTIONS[shuffled]], LABELS[shuffled])
    decision = decide(candidate(gained=12), other, ReleasePolicy())
    assert decision.outcome is Outcome.REQUEST_APPROVAL
    assert "not scored on the same held-out examples" in decision.reasons[-1]


def test_a_decision_recorded_before_the_tests_still_loads():
    recorded = {"outcome": "promote", "reasons": ["accuracy improves by +0.0112"], "accuracy_delta": 0.0112}
    assert Decision.model_validate(recorded).paired is None


def test_a_recorded_decision_round_trips_through_json():
    decision = decide(candidate(gained=10), PRODUCTION, ReleasePolicy())
    assert Decision.model_validate(decision.model_dump(mode="json")) == decision


def test_class_count_mismatch_is_an_error():
    other = Metrics(accuracy=0.95, loss=0.1, macro_f1=0.9, per_class_recall=[0.9] * 3, examples=10)
    with pytest.raises(ValueError, match="classes"):
        decide(candidate(gained=1), other, ReleasePolicy())


@pytest.mark.parametrize("level", [0.4, 1.0, 1.5])
def test_a_confidence_level_outside_half_to_one_is_refused(level):
    with pytest.raises(ValidationError, match="confidence_level"):
        ReleasePolicy(confidence_level=level)
