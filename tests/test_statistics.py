"""The comparison statistics against hand-computed values: paired intervals, ranks with ties,
Kendall's W, Holm's correction."""
from __future__ import annotations

import math

import pytest

from perception_mtl.analysis.multiplicity import holm
from perception_mtl.analysis.paired import mean_interval, p_below_zero, paired_differences
from perception_mtl.analysis.ranking import concordance, seed_ranks, tied_ranks

T_975_DF2 = 4.302653  # Student's t, 97.5% quantile, 2 degrees of freedom (printed tables)


def test_paired_differences_match_seeds_and_skip_missing_ones():
    assert paired_differences({0: 1.0, 1: 5.0, 2: math.nan, 3: 2.0}, {1: 2.0, 0: 0.5, 2: 1.0}) == [0.5, 3.0]


def test_paired_interval_by_hand():
    # differences -1, 2, 2: mean 1, sd sqrt(3), se 1 -> 1 +- 4.3027
    interval = mean_interval([-1.0, 2.0, 2.0])
    assert (interval.mean, interval.n) == (1.0, 3)
    assert interval.lo == pytest.approx(1 - T_975_DF2, abs=1e-5)
    assert interval.hi == pytest.approx(1 + T_975_DF2, abs=1e-5)
    assert interval.contains(0.0) and not interval.contains(6.0)


def test_one_pair_has_no_interval_and_excludes_nothing():
    interval = mean_interval([2.5])
    assert interval.mean == 2.5 and not interval.defined and interval.contains(100.0)
    assert math.isnan(p_below_zero([2.5]))


def test_one_sided_paired_p_by_hand():
    # differences -1, -2, -3: mean -2, se 1/sqrt(3)... t = -2 / (1 / sqrt(3)) = -3.4641 on 2 df:
    # P(T < -3.4641) = 0.5 * (1 - 3.4641 / sqrt(2 + 3.4641^2)) = 0.0371 (t with 2 df has this closed form)
    t = -2 * math.sqrt(3)
    assert p_below_zero([-1.0, -2.0, -3.0]) == pytest.approx(0.5 * (1 + t / math.sqrt(2 + t * t)), rel=1e-9)


def test_ties_with_the_leader_then_the_next_group():
    scores = {"a": {0: 1.0, 1: 2.0, 2: 3.0},
              "b": {0: 2.0, 1: 3.0, 2: 4.0},  # a + 1 at every seed: interval [1, 1], apart from a
              "c": {0: 0.0, 1: 4.0, 2: 5.0},  # a - 1, + 2, + 2: interval 1 +- 4.30 holds 0, ties with a
              "d": {0: 9.0, 1: 9.5, 2: 10.0},  # far behind b: a group of its own
              "e": {0: math.nan}}  # no score: unranked
    assert tied_ranks(scores) == {"a": 1, "c": 1, "b": 3, "d": 4}


def test_seed_ranks_and_kendalls_w_by_hand():
    # seed 0 ranks x, y, z as 1, 2, 3; seed 1 as 1, 3, 2. Rank sums 2, 5, 5 (mean 4): S = 6,
    # W = 12 S / (m^2 (n^3 - n)) = 72 / (4 * 24) = 0.75; Friedman chi2 = m (n - 1) W = 3 on 2 df.
    scores = {"x": {0: -5.0, 1: -4.0}, "y": {0: 1.0, 1: 7.0}, "z": {0: 2.0, 1: 3.0}}
    assert seed_ranks(scores) == {"x": {0: 1, 1: 1}, "y": {0: 2, 1: 3}, "z": {0: 3, 1: 2}}
    result = concordance(scores)
    assert (result.seeds, result.methods) == (2, 3)
    assert result.w == pytest.approx(0.75)
    assert result.p == pytest.approx(math.exp(-1.5))  # chi2 survival with 2 df is exp(-x / 2)


def test_concordance_needs_two_complete_seeds_and_three_methods():
    assert concordance({"x": {0: 1.0, 1: 2.0}, "y": {0: 2.0, 1: 1.0}}) is None
    assert concordance({"x": {0: 1.0, 1: 2.0}, "y": {0: 2.0}, "z": {0: 3.0, 1: 1.0}}) is None


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_flags_fewer_than_raw_p_values():
    from perception_mtl.analysis.transfer import flag

    # sorted 0.001, 0.01, 0.03, 0.3 times 4, 3, 2, 1: 0.004, 0.03, 0.06, 0.3. Raw 0.03 would pass,
    # adjusted 0.06 does not; the 0.001 is an improvement (change < 0: positive = worse), never a flag
    tests = [{"change": +5.0, "p": 0.01}, {"change": +5.0, "p": 0.03}, {"change": -5.0, "p": 0.001},
             {"change": +1.0, "p": 0.3}]
    flagged = flag(tests)
    assert [t["p_holm"] for t in flagged] == pytest.approx([0.03, 0.06, 0.004, 0.3])
    assert [t["negative"] for t in flagged] == [True, False, False, False]
