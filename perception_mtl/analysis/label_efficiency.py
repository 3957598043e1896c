"""The label-efficiency curve of a sweep suite (e.g. `sweep: {data.train_fraction: [...]}`):
per task, its first delta-m metric against the swept value, one line per run (single-task
baseline and each multi-task method), mean ± std over seeds."""
from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(records: list[dict], task: str, key: str) -> dict[str, dict[float, list[float]]]:
    """{run label without "@value": {swept value: [metric per seed]}} for the runs that train `task`."""
    out: dict[str, dict[float, list[float]]] = {}
    for r in records:
        sweep = r.get("sweep") or {}
        if "value" in sweep and task in r["tasks"] and key in r["metrics"]:
            label = r["run"].rsplit("@", 1)[0]
            out.setdefault(label, {}).setdefault(float(sweep["value"]), []).append(r["metrics"][key])
    return out


def plot_label_efficiency(records: list[dict], chosen: dict[str, list[str]], path: Path) -> bool:
    """One panel per task; False (nothing drawn) outside a sweep with at least two values."""
    values = {float(r["sweep"]["value"]) for r in records if (r.get("sweep") or {}).get("value") is not None}
    tasks = [t for t in chosen if chosen[t] and any(t in r["tasks"] for r in records)]
    if len(values) < 2 or not tasks:
        return False
    swept = next(r["sweep"]["key"] for r in records if r.get("sweep"))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        key = f"{task}/{chosen[task][0]}"
        for label, points in sorted(curves(records, task, key).items()):
            xs = sorted(points)
            means = [statistics.fmean(points[x]) for x in xs]
            stds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
            style = dict(color="k", lw=2.2) if label.startswith("stl-") else dict(lw=1.2)
            ax.errorbar(xs, means, yerr=stds, marker="o", ms=3, capsize=2, label=label, **style)
        ax.set_xscale("log")
        ax.set_xticks(sorted(values), [f"{v:g}" for v in sorted(values)])
        ax.set_xlabel(swept)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("label efficiency: single-task (black) vs multi-task, mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
