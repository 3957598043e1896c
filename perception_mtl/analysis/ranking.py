"""Ranks that admit ties, and how stable a ranking is across seeds.

Tie rule (lower Δm is better): the leader is the remaining method with the best mean Δm; every
remaining method whose paired 95% interval of (its Δm - the leader's Δm), over the seeds both
ran, contains 0 shares the leader's rank (an undefined interval, fewer than two common seeds,
cannot separate them, so it ties too). Those methods leave, and the rule repeats on the rest.
Ranks count the methods placed before (competition ranking: 1, 1, 3).

Stability: each seed ranks the methods by its own Δm. Per method, the range of those per-seed
ranks; over all methods, Kendall's coefficient of concordance W between the seeds (1: every seed
orders the methods alike; 0: no agreement), from Friedman's chi-square, W = chi2 / (m (n - 1))
for m seeds and n methods, with Friedman's p-value for "the methods do not differ".
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

from perception_mtl.analysis.paired import mean_interval, paired_differences

Scores = dict[str, dict[int, float]]  # method -> {seed: Δm}


def tied_ranks(scores: Scores) -> dict[str, int]:
    """{method: rank} under the tie rule of the module docstring; methods without a finite
    score are left out."""
    means = {m: statistics.fmean(v for v in s.values() if math.isfinite(v)) for m, s in scores.items()
             if any(math.isfinite(v) for v in s.values())}
    remaining = sorted(means, key=means.get)
    ranks: dict[str, int] = {}
    while remaining:
        leader = remaining[0]
        group = [m for m in remaining
                 if m == leader or mean_interval(paired_differences(scores[m], scores[leader])).contains(0.0)]
        ranks.update({m: len(ranks) + 1 for m in group})
        remaining = [m for m in remaining if m not in group]
    return ranks


def seed_ranks(scores: Scores) -> dict[str, dict[int, int]]:
    """{method: {seed: rank among the methods with a finite score at that seed}} (1 = best;
    equal scores share the lower rank)."""
    seeds = sorted({s for per_seed in scores.values() for s in per_seed})
    out: dict[str, dict[int, int]] = {m: {} for m in scores}
    for seed in seeds:
        present = [m for m in scores if math.isfinite(scores[m].get(seed, math.nan))]
        ranked = stats.rankdata([scores[m][seed] for m in present], method="min")
        for m, r in zip(present, ranked):
            out[m][seed] = int(r)
    return out


@dataclass(frozen=True)
class Concordance:
    """Kendall's W over `seeds` seeds and `methods` methods, and Friedman's p-value."""

    w: float
    p: float
    seeds: int
    methods: int


def concordance(scores: Scores) -> Concordance | None:
    """Kendall's W of the seeds' rankings of the methods, over the seeds where every method has a
    finite score; None for fewer than 2 such seeds or 3 methods (Friedman's test needs 3)."""
    methods = [m for m in scores if any(math.isfinite(v) for v in scores[m].values())]
    seeds = [s for s in sorted({s for m in methods for s in scores[m]})
             if all(math.isfinite(scores[m].get(s, math.nan)) for m in methods)]
    if len(seeds) < 2 or len(methods) < 3:
        return None
    result = stats.friedmanchisquare(*([scores[m][s] for s in seeds] for m in methods))
    return Concordance(float(result.statistic) / (len(seeds) * (len(methods) - 1)), float(result.pvalue),
                       len(seeds), len(methods))
