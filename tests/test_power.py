"""The power statement (analysis/power.py) against the figures of a hand calculation: paired std 2.34
(the quick suite's pooled std of Δm − equal), 80% power, two-sided paired t."""
import math

import numpy as np
import pytest

from perception_mtl.analysis.power import detectable, pooled_std, power, power_statement, seeds_needed


@pytest.mark.parametrize("seeds, alpha_plain, alpha_holm", [(3, 7.6, 20.3), (10, 2.3, 3.3), (20, 1.55, 2.05)])
def test_smallest_detectable_difference(seeds, alpha_plain, alpha_holm):
    assert detectable(2.34, seeds) == pytest.approx(alpha_plain, abs=0.05)
    assert detectable(2.34, seeds, 0.05 / 7) == pytest.approx(alpha_holm, abs=0.05)


def test_seeds_needed_for_a_margin():
    assert seeds_needed(2.0, 2.34, 0.05 / 7) == 21
    assert seeds_needed(2.0, 1.0, 0.05 / 7) == 7


def test_power_agrees_with_simulation():
    """The noncentral-t power against paired t-tests run on simulated data."""
    from scipy import stats
    rng = np.random.default_rng(0)
    d = rng.normal(1.5, 2.0, size=(4000, 8))
    simulated = np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05)
    assert power(1.5, 2.0, 8) == pytest.approx(simulated, abs=0.025)


def test_pooled_std_and_statement():
    pooled = pooled_std({"a": [1.0, 3.0], "b": [0.0, 2.0, 4.0], "c": [5.0]})
    assert pooled.df == 3 and pooled.methods == ("a", "b")
    assert pooled.std == pytest.approx(math.sqrt((2 + 8) / 3))
    statement = power_statement({"a": [1.0, 3.0, 2.0], "b": [0.0, 2.0, 4.0]}, margin=2.0)
    assert statement.seeds == 3 and statement.family == 2
    assert statement.detectable_holm > statement.detectable > 0
    assert statement.underpowered and "needs" in statement.lines()[1]
    assert "undefined" in power_statement({"a": [1.0]}).lines()[0]


def test_a_running_suite_states_the_seeds_of_the_methods_it_pools():
    """Mid-suite, methods still at one seed add nothing to the std, nor to its seed count."""
    statement = power_statement({"a": [1.0, 3.0, 2.0], "b": [0.5], "c": [0.2], "d": [0.1]}, margin=2.0)
    assert statement.seeds == 3 and statement.family == 4
    assert math.isfinite(statement.detectable) and statement.detectable_holm > statement.detectable
