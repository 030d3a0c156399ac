"""McNemar's exact test and Newcombe's paired interval against published figures."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.significance import paired_test


def table(both_right: int, gained: int, lost: int, both_wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness (bool [n]) of a candidate and a baseline with that paired 2x2 table."""
    candidate = np.array([True] * both_right + [True] * gained + [False] * lost + [False] * both_wrong)
    baseline = np.array([True] * both_right + [False] * gained + [True] * lost + [False] * both_wrong)
    return candidate, baseline


def test_the_published_example_of_complete_response_before_and_after_consolidation():
    # Cavo et al. (2012) as analysed in Fagerland, Lydersen & Laake (2017, chapter 8): table
    # 59, 6 / 16, 80. Newcombe square-and-add 95 % CI -0.1186 to -0.0046 (the book's software,
    # the R package contingencytables, gives the same); McNemar exact conditional p = 0.0525.
    test = paired_test(*table(59, 6, 16, 80), confidence_level=0.95)
    assert test.examples == 161
    assert test.difference == pytest.approx(-10 / 161)
    assert (test.ci_low, test.ci_high) == (pytest.approx(-0.1186, abs=5e-5), pytest.approx(-0.0046, abs=5e-5))
    assert test.p_value == pytest.approx(0.0525, abs=5e-5)
    # The interval excludes zero, the exact test does not reject: the decision follows the test.
    assert not test.significant(0.05)


def test_the_change_reads_in_points_with_its_interval():
    test = paired_test(*table(340, 2, 0, 18), confidence_level=0.95)
    assert test.describe() == f"+0.56 points, 95 % CI {test.ci_low * 100:+.1f} to {test.ci_high * 100:+.1f}"
    assert test.ci_low < 0 < test.difference < test.ci_high
    assert test.counts() == "2 gained, 0 lost of 360 examples, McNemar exact p = 0.5"


def test_a_wider_level_gives_a_wider_interval():
    narrow = paired_test(*table(330, 8, 0, 22), confidence_level=0.9)
    wide = paired_test(*table(330, 8, 0, 22), confidence_level=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.difference < narrow.ci_high < wide.ci_high
    assert narrow.p_value == wide.p_value == pytest.approx(2 * 0.5**8)


def test_no_discordant_example_is_no_change():
    test = paired_test(*table(340, 0, 0, 20), confidence_level=0.95)
    assert (test.difference, test.p_value) == (0.0, 1.0)
    assert test.ci_low < 0 < test.ci_high
    assert not test.significant(0.5)


@pytest.mark.parametrize(
    "candidate, baseline, level",
    [
        (np.ones(3, bool), np.ones(4, bool), 0.95),
        (np.ones(0, bool), np.ones(0, bool), 0.95),
        (np.ones((2, 2), bool), np.ones((2, 2), bool), 0.95),
        (np.ones(3, bool), np.ones(3, bool), 1.0),
    ],
)
def test_bad_input_is_refused(candidate, baseline, level):
    with pytest.raises(ValueError):
        paired_test(candidate, baseline, level)
