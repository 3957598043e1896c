"""How large a Δm difference a suite can detect: the power of its paired comparisons.

Every method is compared with the reference run seed by seed (`paired.py`), so what limits the
comparison is the std of the paired differences Δm(method) − Δm(reference). It is pooled over the
methods (each contributes its sum of squared deviations and n − 1 degrees of freedom), which is
the variance estimate a pilot gives for sizing the seeds (Colas, Sigaud & Oudeyer 2018).

The power of a two-sided paired t-test at n seeds, std s and true difference d is
P(|T| > t_{1-α/2, n-1}) with T noncentral t (n − 1 df, noncentrality d √n / s); the smallest
detectable difference is the d at which that power reaches 80%. Holm's procedure tests its most
significant method at α / m, so "with Holm" uses α / m for a family of m methods: the difference
every method of the family can be sure to show.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000


def power(difference: float, std: float, seeds: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at `seeds` pairs (needs 2+)."""
    df, noncentral = seeds - 1, abs(difference) * math.sqrt(seeds) / std
    critical = stats.t.ppf(1 - alpha / 2, df)
    lower = stats.nct.cdf(-critical, df, noncentral)  # scipy returns NaN far in the tail, where it is 0
    return float(stats.nct.sf(critical, df, noncentral) + (0.0 if math.isnan(lower) else lower))


def detectable(std: float, seeds: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest difference detected with probability `target` at `seeds` pairs; NaN below 2 seeds."""
    if seeds < 2 or not std > 0:
        return math.nan
    return float(optimize.brentq(lambda d: power(d, std, seeds, alpha) - target, 1e-12 * std, 1e3 * std))


def seeds_needed(margin: float, std: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """The fewest seeds that detect `margin` with probability `target`; None beyond MAX_SEEDS."""
    if not std > 0:
        return 2
    return next((n for n in range(2, MAX_SEEDS + 1) if power(margin, std, n, alpha) >= target), None)


@dataclass(frozen=True)
class Pooled:
    """The pooled std of paired differences, its degrees of freedom, and the methods it pools."""

    std: float
    df: int
    methods: tuple[str, ...]


def pooled_std(differences: dict[str, list[float]]) -> Pooled:
    """Pool the per-method paired differences {method: [d_seed, ...]}: sqrt(Σ SS / Σ (n − 1)).
    Methods with fewer than 2 seeds add nothing."""
    used = {m: d for m, d in differences.items() if len(d) >= 2}
    df = sum(len(d) - 1 for d in used.values())
    if not df:
        return Pooled(math.nan, 0, ())
    squares = sum(sum((x - statistics.fmean(d)) ** 2 for x in d) for d in used.values())
    return Pooled(math.sqrt(squares / df), df, tuple(used))


@dataclass(frozen=True)
class PowerStatement:
    """What the leaderboard says about its own power."""

    pooled: Pooled
    seeds: int  # the seeds most of the pooled methods ran
    family: int  # methods in the Holm family
    detectable: float  # at α
    detectable_holm: float  # at α / family
    margin: float | None  # the suite's `power: {margin: m}`
    seeds_for_margin: int | None  # with Holm

    def lines(self) -> list[str]:
        p = self.pooled
        if not p.df:
            return ["power: undefined (no method has 2+ seeds paired with the reference)"]
        out = [f"power: pooled paired std of Δm − reference = {p.std:.2f} ({p.df} df, over {len(p.methods)} "
               f"methods); at {self.seeds} seeds a two-sided paired t-test detects a Δm difference of "
               f"{self.detectable:.2f} with 80% power at α = {ALPHA}, and {self.detectable_holm:.2f} with Holm over "
               f"{self.family} methods"]
        if self.margin is not None:
            needed = "more than 1000" if self.seeds_for_margin is None else str(self.seeds_for_margin)
            out.append(f"power: a Δm difference of {self.margin:g} needs {needed} seeds (80% power, Holm over "
                       f"{self.family}) at this variance")
        return out

    @property
    def underpowered(self) -> bool:
        """Whether the suite states a margin that its seeds cannot detect with Holm."""
        return self.margin is not None and not self.detectable_holm <= self.margin


def power_statement(differences: dict[str, list[float]], margin: float | None = None) -> PowerStatement:
    """The statement for paired differences {method: [Δm − reference per seed]}."""
    pooled = pooled_std(differences)
    # the seeds of the methods the std pools (a method still at 1 seed in a running suite adds none)
    seeds = statistics.median_low([len(differences[m]) for m in pooled.methods]) if pooled.methods else 0
    family = max(1, len(differences))
    return PowerStatement(pooled, seeds, family, detectable(pooled.std, seeds),
                          detectable(pooled.std, seeds, ALPHA / family), margin,
                          None if margin is None or math.isnan(pooled.std) else
                          seeds_needed(margin, pooled.std, ALPHA / family))
