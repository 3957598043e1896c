"""The sequential-seeds rule (analysis/sequential.py) on data with a known answer: its family-wise
false-positive rate on null data, the inflation it prevents, and its power on a real difference."""
import math

import numpy as np

from perception_mtl.analysis.paired import equivalence_p, p_two_sided
from perception_mtl.analysis.sequential import SeedPlan, look_alpha, verdict

REPLICATES = 600  # suites simulated per case: Monte Carlo SE of a 5% rate is 0.9 points


def run_suites(plan: SeedPlan, true_differences: list[float], std: float, rng, replicates: int = REPLICATES):
    """Simulate whole suites: each method's per-seed paired differences arrive one seed at a time
    and the plan asks for more; returns each suite's {method index: Verdict}."""
    level = plan.alpha_look(len(true_differences))
    out = []
    for _ in range(replicates):
        draws = [list(mu + std * rng.standard_normal(plan.last)) for mu in true_differences]
        seen = {m: d[:plan.first] for m, d in enumerate(draws)}
        while True:
            wanted = plan.wanted(seen)
            grown = {m: draws[m][:wanted[m]] for m in seen}
            if all(len(grown[m]) == len(seen[m]) for m in seen):
                break
            seen = grown
        out.append({m: verdict(d, plan.first, level, plan.margin) for m, d in seen.items()})
    return out


def test_null_family_wise_error_stays_within_five_percent():
    plan, rng = SeedPlan(first=3, last=8, margin=2.0), np.random.default_rng(7)
    suites = run_suites(plan, [0.0, 0.0, 0.0], std=1.5, rng=rng)
    fwer = np.mean([any(v.decision in ("better", "worse") for v in s.values()) for s in suites])
    mc_error = 3 * math.sqrt(0.05 * 0.95 / REPLICATES)
    assert fwer <= 0.05 + mc_error, fwer


def test_naive_looks_would_inflate_the_error():
    """The same data looked at naively (α = 0.05 at every look, no correction over methods) flags far
    more: the correction is what keeps the rule at 5%."""
    rng = np.random.default_rng(8)
    naive = 0
    for _ in range(REPLICATES):
        d = list(1.5 * rng.standard_normal(8))
        naive += any(p_two_sided(d[:n]) < 0.05 for n in range(3, 9))
    assert naive / REPLICATES > 0.1  # about 17% for one method, before any multiplicity


def test_per_look_level_matches_the_pocock_constant():
    # constant per-look α for looks 3..10 at 5% (one method): about 0.012 by simulation
    assert 0.010 < look_alpha(3, 10, 0.05) < 0.014
    assert look_alpha(3, 3, 0.05) == 0.05  # one look: no correction


def test_a_real_difference_and_a_real_equivalence_are_decided():
    plan, rng = SeedPlan(first=3, last=10, margin=2.0), np.random.default_rng(9)
    suites = run_suites(plan, [-4.0, 0.0], std=1.0, rng=rng, replicates=200)
    better = np.mean([s[0].decision == "better" for s in suites])
    equivalent = np.mean([s[1].decision == "equivalent" for s in suites])
    assert better > 0.9 and equivalent > 0.8, (better, equivalent)
    # decided methods stop early: the sequential rule spends fewer seeds than max on them
    assert np.mean([s[0].seeds for s in suites]) < plan.last


def test_equivalence_is_not_claimed_outside_the_margin():
    """A true difference exactly at the margin: TOST claims equivalence in at most α_look of the
    looks' worth of suites (its own error rate), far from the 'tie' a plain interval would give."""
    plan, rng = SeedPlan(first=3, last=8, margin=1.0), np.random.default_rng(10)
    suites = run_suites(plan, [1.0], std=1.0, rng=rng)
    wrong = np.mean([s[0].decision == "equivalent" for s in suites])
    assert wrong <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / REPLICATES), wrong


def test_tost_p_value():
    assert equivalence_p([0.1, -0.1, 0.05, 0.0], 1.0) < 0.001  # tight around 0: equivalent
    assert equivalence_p([0.1, -0.1, 0.05, 0.0], 0.05) > 0.1  # margin inside the noise: not shown
    assert math.isnan(equivalence_p([0.3], 1.0))
