"""Holm's step-down correction for many tests at once (Holm 1979, "A simple sequentially
rejective multiple test procedure").

Sort the m p-values, p_(1) <= ... <= p_(m); the k-th adjusted value is
max_{j <= k} min(1, (m - j + 1) p_(j)). Rejecting where the adjusted value is below alpha keeps
the chance of any false flag among the m tests at most alpha, whatever their dependence.
"""
from __future__ import annotations

import math


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; NaN entries (tests not run) stay NaN and do not
    count in m."""
    tested = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for k, i in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * pvalues[i]))
        adjusted[i] = running
    return adjusted
