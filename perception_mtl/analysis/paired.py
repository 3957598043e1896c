"""Paired comparisons over seeds.

A seed fixes what every method of a suite starts from and sees: the trainer seeds torch with
`train.seed` before it builds the model (same initial weights for the same task set), and the
sampler draws the batch order and each sample's augmentation from `train.seed` alone. So two
methods' results at the same seed form a pair, and their per-seed difference cancels what the
seed does to both. A method's difference to another is summarised by the paired-t 95% interval
of the mean difference (Student's t, n - 1 degrees of freedom); with fewer than two common
seeds the interval is undefined (NaN bounds).
"""
from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass

from scipy import stats

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
