"""Sequential seeds: add seeds only to the methods that are still undecided.

A suite with `seeds: {min: 3, max: 10, margin: 2}` runs every method at `min` seeds, then looks:
each method's paired differences Δm(method) − Δm(reference), in seed order, decide it when

- the paired t-test rejects "no difference" (two-sided p < α_look): **better** or **worse**;
- or the equivalence test (TOST, `paired.equivalence_p`) shows the mean difference inside
  ±margin (p < α_look): **equivalent**.

An undecided method gets one more seed, up to `max`, where it stays **undecided**. The
reference and the single-task baselines run at every seed any method reaches.

Looking again after every seed inflates false positives (naive looks at 3..10 seeds give about
17% instead of 5%). The per-look level α_look is therefore a Pocock-type constant: the level at
which a method with no true difference is declared different at ANY of the looks min..max with
probability α / m (Bonferroni over the m methods, so the family-wise error stays ≤ α). Under the
null the paired t statistic does not depend on the variance, so α_look is found once per
(min, max, α / m) by simulating standard normal differences (fixed seed, 40,000 paths).
Stopping for equivalence only removes chances to reject, so it keeps the error below α.
`tests/test_sequential.py` measures that error on null data.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from perception_mtl.analysis.paired import equivalence_p, p_two_sided

ALPHA = 0.05
PATHS = 40_000
DECISIONS = ("better", "worse", "equivalent", "undecided")


@functools.lru_cache(maxsize=64)
def look_alpha(first: int, last: int, alpha: float) -> float:
    """The constant per-look two-sided level that rejects a null method at any look
    first..last (seed counts) with probability `alpha` (Monte Carlo, fixed seed)."""
    if last <= first:
        return alpha
    draws = np.random.default_rng(0).standard_normal((PATHS, last))
    n = np.arange(1, last + 1)
    mean = np.cumsum(draws, axis=1) / n
    var = (np.cumsum(draws ** 2, axis=1) - n * mean ** 2) / np.maximum(n - 1, 1)
    looks = np.arange(first, last + 1)
    t = np.abs(mean[:, looks - 1]) / np.sqrt(var[:, looks - 1] / looks)
    smallest_p = (2 * stats.t.sf(t, looks - 1)).min(axis=1)
    return float(np.quantile(smallest_p, alpha))


@dataclass(frozen=True)
class Verdict:
    """A method's decision against the reference, at the look (seed count) that made it."""

    decision: str  # one of DECISIONS
    seeds: int
    p_difference: float
    p_equivalence: float


def verdict(differences: list[float], first: int, alpha_look: float, margin: float,
            last: int | None = None) -> Verdict:
    """Walk the looks first, first + 1, ... over `differences` (in seed order) and return the
    first decision, else "undecided" at the last look (None: fewer than `first` seeds)."""
    last = len(differences) if last is None else min(last, len(differences))
    p_diff = p_eq = math.nan
    for n in range(first, last + 1):
        seen = differences[:n]
        p_diff, p_eq = p_two_sided(seen), equivalence_p(seen, margin)
        if p_diff < alpha_look:
            return Verdict("better" if np.mean(seen) < 0 else "worse", n, p_diff, p_eq)
        if p_eq < alpha_look:
            return Verdict("equivalent", n, p_diff, p_eq)
    return Verdict("undecided", last, p_diff, p_eq)


@dataclass(frozen=True)
class SeedPlan:
    """A suite's `seeds: {min, max, margin}`."""

    first: int
    last: int
    margin: float

    @classmethod
    def parse(cls, seeds) -> "SeedPlan | None":
        """The plan of a `seeds` mapping; None for a plain list of seeds."""
        if not isinstance(seeds, dict):
            return None
        return cls(int(seeds["min"]), int(seeds["max"]), float(seeds["margin"]))

    def alpha_look(self, methods: int) -> float:
        return look_alpha(self.first, self.last, ALPHA / max(1, methods))

    def wanted(self, differences: dict[str, list[float]]) -> dict[str, int]:
        """{method: seeds it should have now}: its current count, plus one while it is undecided
        and below `last` (at least `first`)."""
        level = self.alpha_look(len(differences))
        out = {}
        for method, d in differences.items():
            if len(d) < self.first:
                out[method] = self.first
                continue
            v = verdict(d, self.first, level, self.margin)
            out[method] = v.seeds + (v.decision == "undecided" and v.seeds < self.last)
        return out
