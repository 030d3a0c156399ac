"""Is a candidate's change real or noise? Two classifiers compared on the same examples.

Scored on the same held-out examples, each example falls in one cell of a paired 2x2 table:
both right, only the candidate right (gained), only the baseline right (lost), both wrong.
Only the discordant examples (gained, lost) say anything about which model is better.

- The test is McNemar's, exact: with no real difference, ``gained`` follows
  Binomial(gained + lost, 1/2); the two-sided p-value is ``scipy.stats.binomtest``'s
  (McNemar 1947, Psychometrika 12:153-157; the exact conditional form as in Fagerland,
  Lydersen & Laake 2013, BMC Medical Research Methodology 13:91). Dietterich (1998, Neural
  Computation 10:1895-1923) recommends McNemar's test for comparing two classifiers on one
  test set.
- The interval of the difference (candidate minus baseline) is Newcombe's hybrid score
  ("square-and-add") interval for paired proportions, method 10 of Newcombe (1998,
  Statistics in Medicine 17:2635-2650), built from the Wilson score intervals of the two
  proportions (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``) and their
  correlation, with the correlation's continuity adjustment as given in Fagerland, Lydersen &
  Laake (2017, Statistical Analysis of Contingency Tables, section 8.5).

The exact test is the more cautious of the two: when only a few examples are discordant, an
interval that just excludes zero can come with a p-value just above the level (Fagerland et
al.'s example, 6 gained and 16 lost of 161: interval -11.9 to -0.5 points, p = 0.052). The
decision follows the test; the interval says how large the change may be.

SciPy (seconds) and NumPy are imported only when a test is computed: rendering a recorded
:class:`PairedTest` needs neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import numpy as np


class PairedTest(BaseModel):
    """Candidate against baseline on the same ``examples``: the paired 2x2 table, McNemar's
    exact p-value and Newcombe's interval of the difference. Rates and differences are
    fractions (accuracy, or a class's recall when the examples are that class's)."""

    both_right: int = Field(ge=0)
    gained: int = Field(ge=0, description="Examples only the candidate gets right.")
    lost: int = Field(ge=0, description="Examples only the baseline gets right.")
    both_wrong: int = Field(ge=0)
    difference: float = Field(ge=-1, le=1, description="Candidate's rate minus the baseline's: (gained - lost) / examples.")
    ci_low: float = Field(ge=-1, le=1)
    ci_high: float = Field(ge=-1, le=1)
    confidence_level: float = Field(gt=0, lt=1, description="Of the interval, e.g. 0.95.")
    p_value: float = Field(ge=0, le=1, description="McNemar's exact test, two-sided.")

    @property
    def examples(self) -> int:
        """Examples compared."""
        return self.both_right + self.gained + self.lost + self.both_wrong

    def significant(self, alpha: float) -> bool:
        """Whether the change is significant at level ``alpha`` (p-value below it); a change of
        zero never is."""
        return self.gained != self.lost and self.p_value < alpha

    def describe(self) -> str:
        """The change for people, in percentage points with its interval:
        ``+0.56 points, 95 % CI -0.8 to +1.9``."""
        level = f"{self.confidence_level * 100:g}"
        return f"{self.difference * 100:+.2f} points, {level} % CI {self.ci_low * 100:+.1f} to {self.ci_high * 100:+.1f}"

    def counts(self) -> str:
        """``8 gained, 2 lost of 360 examples, McNemar exact p = 0.11``."""
        return f"{self.gained} gained, {self.lost} lost of {self.examples} examples, McNemar exact p = {self.p_value:.2g}"


def paired_test(candidate_correct: np.ndarray, baseline_correct: np.ndarray, confidence_level: float) -> PairedTest:
    """McNemar's exact test and Newcombe's interval (see the module) for two models scored on
    the same examples.

    Args:
        candidate_correct: bool [examples], whether the candidate got example i right.
        baseline_correct: bool [examples], the same for the baseline, same example order.
        confidence_level: of the interval, in (0, 1), e.g. 0.95.

    Returns:
        The test; ``p_value`` is 1 when no example is discordant.

    Raises:
        ValueError: the arrays are not 1-D of one equal, non-zero length, or
            ``confidence_level`` is not in (0, 1).
    """
    import numpy as np
    from scipy.stats import binomtest

    new = np.asarray(candidate_correct, dtype=bool)
    old = np.asarray(baseline_correct, dtype=bool)
    if new.ndim != 1 or new.shape != old.shape or new.size == 0:
        raise ValueError(f"expected two bool arrays [examples] of one length; got {new.shape} and {old.shape}")
    if not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must lie in (0, 1); got {confidence_level}")
    a = int(np.sum(new & old))
    b = int(np.sum(new & ~old))
    c = int(np.sum(~new & old))
    d = int(np.sum(~new & ~old))
    n = a + b + c + d
    p_value = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0

    # Newcombe (1998) method 10: the Wilson intervals of the two rates, combined with their
    # correlation phi (continuity-adjusted as in Fagerland et al. 2017, section 8.5).
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = binomtest(a + b, n).proportion_ci(confidence_level, method="wilson")
    l2, u2 = binomtest(a + c, n).proportion_ci(confidence_level, method="wilson")
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if margins == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    elif cross > n / 2:
        phi = (cross - n / 2) / math.sqrt(margins)
    else:
        phi = cross / math.sqrt(margins)
    difference = p1 - p2
    below = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    above = math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return PairedTest(
        both_right=a,
        gained=b,
        lost=c,
        both_wrong=d,
        difference=difference,
        ci_low=max(difference - below, -1.0),
        ci_high=min(difference + above, 1.0),
        confidence_level=confidence_level,
        p_value=min(float(p_value), 1.0),
    )
