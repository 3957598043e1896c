"""Delta-m (%): the mean relative change of a multi-task model against single-task baselines.

Per metric k with baseline B_k and multi-task value N_k:

    change_k = (-1)^{w_k} (N_k - B_k) / B_k * 100,   w_k = 1 when higher is better,

so a POSITIVE change (and delta-m) is WORSE, lower is better: the sign of the Nash-MTL and FAMO
tables (their `delta_fn`: `(-1) ** SIGN * (a - BASE) / BASE`). Two ways to average it:

- flat: the mean over all K metrics of all tasks (Navon et al. 2022, "Multi-Task Learning as a
  Bargaining Game", Nash-MTL; Liu et al. 2023, "FAMO: Fast Adaptive Multitask Optimization");
- per-task: the mean over tasks of each task's mean over its metrics (Vandenhende et al. 2021,
  "Multi-Task Learning for Dense Prediction Tasks: A Survey"; LibMTL's `count_improvement`),
  which weighs tasks equally whatever their number of metrics. LibMTL returns the opposite
  sign (positive = improvement); here both conventions share the papers' sign.

The two agree when every task has the same number of metrics.
"""
from __future__ import annotations

import math
import statistics



def relative_change(value: float, baseline: float, higher_is_better: bool) -> float:
    """Signed relative change in % (positive = worse); NaN when the baseline is 0."""
    if not baseline:
        return math.nan
    return (-1.0 if higher_is_better else 1.0) * (value - baseline) / baseline * 100.0


def baselines(records: list[dict]) -> dict[str, float]:
    """{"<task>/<metric>": mean over seeds of that task's single-task ("stl") runs}."""
    values: dict[str, list[float]] = {}
    for record in records:
        if record["kind"] != "stl":
            continue
        task = record["tasks"][0]
        for key, value in record["metrics"].items():
            if key.startswith(f"{task}/"):
                values.setdefault(key, []).append(value)
    return {key: statistics.fmean(v) for key, v in values.items()}


def metric_changes(metrics: dict[str, float], base: dict[str, float], directions: dict[str, bool],
                   keys: list[str]) -> dict[str, float]:
    """{"<task>/<metric>": relative change %} for the `keys` present in `metrics` and `base`."""
    return {k: relative_change(metrics[k], base[k], directions[k]) for k in keys if k in metrics and k in base}


def task_changes(changes: dict[str, float]) -> dict[str, float]:
    """{task: mean relative change % over that task's metrics} (one Pareto coordinate per task)."""
    per_task: dict[str, list[float]] = {}
    for key, value in changes.items():
        per_task.setdefault(key.split("/", 1)[0], []).append(value)
    return {task: statistics.fmean(v) for task, v in per_task.items()}


def delta_m_flat(changes: dict[str, float]) -> float:
    """Mean over all metrics of all tasks (Nash-MTL, FAMO); NaN when empty."""
    return statistics.fmean(changes.values()) if changes else math.nan


def delta_m_per_task(changes: dict[str, float]) -> float:
    """Mean over tasks of the mean over each task's metrics (LibMTL, Vandenhende et al.); NaN when empty."""
    return statistics.fmean(task_changes(changes).values()) if changes else math.nan
