"""Rows that had a hyperparameter search (a suite method with `tune`, see benchmark/suite.py).

Each grid point trains one run per seed (kind "tune"; with `tune_seeds`, at the first seeds only,
and the kept point then at the others: `benchmark/plan.py`). The point kept is the one with the
best (lowest) mean, over the seeds every point ran, of its validation score: the per-task Δm (`delta_m.py`) of its val
metrics against the single-task runs' val metrics, over the suite's delta metrics. Only val
enters the choice; the kept point's runs then become the row `<label>` like any other run, so
with a held-out split the row reports test metrics of a choice made without them.
"""
from __future__ import annotations

import math
import statistics

from perception_mtl.analysis.delta_m import baselines, delta_m_per_task, metric_changes

UNTUNED = "none"


def val_score(record: dict, base: dict[str, float], chosen: dict[str, list[str]]) -> float:
    """Per-task Δm of the record's val metrics against `base`; NaN when a metric or baseline lacks."""
    keys = [f"{t}/{m}" for t in record["tasks"] for m in chosen.get(t, [])]
    changes = metric_changes(record.get("val_metrics", record["metrics"]), base, record["directions"], keys)
    if not keys or len(changes) < len(keys) or any(math.isnan(v) for v in changes.values()):
        return math.nan
    return delta_m_per_task(changes)


def point_scores(runs: list[dict], base: dict[str, float], chosen: dict[str, list[str]]) -> dict[str, float]:
    """{grid point ("optim.lr=0.001"): mean val score over the seeds every point ran} (NaN where a
    seed's is NaN): the kept point runs at further seeds, which must not enter the choice."""
    points = {run["tune"]["point"] for run in runs}
    shared = set.intersection(*({r["seed"] for r in runs if r["tune"]["point"] == p} for p in points))
    by_point: dict[str, list[float]] = {}
    for run in runs:
        if run["seed"] in shared:
            by_point.setdefault(run["tune"]["point"], []).append(val_score(run, base, chosen))
    return {point: statistics.fmean(v) for point, v in by_point.items()}


def resolve_tuning(records: list[dict], chosen: dict[str, list[str]]) -> tuple[list[dict], list[str]]:
    """The records with each tuned group's grid runs replaced by its kept point's runs, relabelled
    as the group's row (kind "mtl", `tuned` = the search budget, `chosen` = the point, `folder` = the
    grid run's own label, its folder under runs/), and notes giving every point's score. Untuned records get `tuned` = "none"."""
    out = [{**r, "tuned": UNTUNED} for r in records if r["kind"] != "tune"]
    notes = []
    for row in dict.fromkeys(r["tune"]["row"] for r in records if r["kind"] == "tune"):
        runs = [r for r in records if r["kind"] == "tune" and r["tune"]["row"] == row]
        value = (runs[0].get("sweep") or {}).get("value")
        stl = [r for r in records if r["kind"] == "stl" and (r.get("sweep") or {}).get("value") == value]
        scores = point_scores(runs, {k: v for k, v in baselines(stl).items() if v}, chosen)
        finite = {point: score for point, score in scores.items() if not math.isnan(score)}
        if not finite:
            notes.append(f"{row}: no grid point has a val Δm (single-task baselines missing?), so none is chosen "
                         "and the row is left out")
            continue
        best = min(finite, key=finite.get)
        out += [{**r, "run": row, "kind": "mtl", "tuned": r["tune"]["budget"], "chosen": best, "folder": r["run"]}
                for r in runs if r["tune"]["point"] == best]
        shown = ", ".join(f"{point}: {score:+.2f}" for point, score in scores.items())
        notes.append(f"{row}: kept {best}, the best mean val Δm over seeds of its grid ({shown}){edge(best, scores)}")
    return out, notes


def edge(best: str, points) -> str:
    """A warning when the kept point of a one-key numeric grid is its smallest or largest value (the
    best may lie outside the grid); "" otherwise."""
    try:
        values = {point: float(point.partition("=")[2]) for point in points}
    except ValueError:
        return ""
    if len(values) < 3 or len({point.partition("=")[0] for point in values}) != 1:
        return ""
    if values[best] == max(values.values()):
        return "; at the grid's largest value, so a better one may lie above it"
    if values[best] == min(values.values()):
        return "; at the grid's smallest value, so a better one may lie below it"
    return ""
