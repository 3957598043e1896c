"""Paired comparisons over seeds.

A seed fixes what every method of a suite starts from and sees: the trainer seeds torch with
`train.seed` before it builds the model (same initial weights for the same task set), and the
sampler draws the batch order and each sample's augmentation from `train.seed` alone. So two
methods' results at the same seed form a pair, and their per-seed difference cancels what the
seed does to both. A method's difference to another is summarised by the paired-t 95% interval
of the mean difference (Student's t, n - 1 degrees of freedom); with fewer than two common
seeds the interval is undefined (NaN bounds).

"Not significantly different" is not evidence of "equal": equivalence within a stated margin m is
its own test, TOST (Schuirmann 1987: two one-sided tests, H1: mean > -m and H1: mean < m; its
p-value is the larger of the two), which needs the interval to lie inside ±m.
"""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass

from scipy import special, stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences and its confidence interval; lo/hi NaN when undefined."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the interval; an undefined interval excludes nothing (True)."""
        return not self.defined or self.lo <= value <= self.hi


def paired_differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a[s] - b[s] over the seeds s where both are finite, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b)) if math.isfinite(a[s]) and math.isfinite(b[s])]


def _ttest(diffs: list[float], alternative: str):
    with warnings.catch_warnings():  # identical differences: scipy warns, the result is still exact
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ttest_1samp(diffs, 0.0, alternative=alternative)


def mean_interval(diffs: list[float], level: float = LEVEL) -> Interval:
    """The paired-t interval of the mean of `diffs` (two-sided, `level`)."""
    if not diffs:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    ci = _ttest(diffs, "two-sided").confidence_interval(level)
    return Interval(mean, float(ci.low), float(ci.high), len(diffs))


def p_below_zero(diffs: list[float]) -> float:
    """One-sided paired t-test p-value of H1: mean difference < 0; NaN for fewer than two pairs."""
    if len(diffs) < 2:
        return math.nan
    return float(_ttest(diffs, "less").pvalue)


def _t(diffs: list[float], shift: float = 0.0) -> tuple[float, int]:
    """The one-sample t statistic of mean(diffs) - shift and its degrees of freedom (scipy's
    ttest_1samp, without its per-call overhead: the sequential rule's simulation calls this often)."""
    n = len(diffs)
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    gap = mean - shift
    if sd == 0.0:
        return (math.copysign(math.inf, gap) if gap else 0.0), n - 1
    return gap / (sd / math.sqrt(n)), n - 1


def p_two_sided(diffs: list[float]) -> float:
    """Two-sided paired t-test p-value of H1: mean difference != 0; NaN for fewer than two pairs."""
    if len(diffs) < 2:
        return math.nan
    t, df = _t(diffs)
    return float(2 * special.stdtr(df, -abs(t)))


def equivalence_p(diffs: list[float], margin: float) -> float:
    """TOST p-value of H1: -margin < mean difference < margin; NaN for fewer than two pairs."""
    if len(diffs) < 2:
        return math.nan
    above, df = _t(diffs, -margin)  # H1: mean > -margin
    below, _ = _t(diffs, margin)  # H1: mean < margin
    return float(max(special.stdtr(df, -above), special.stdtr(df, below)))
