"""Curves from the local record: per-task losses, task weights, gradient cosines, lr, val metrics.

Plots are derived from the JSONL records, so failing to write one (disk full) is a warning, never
fatal; each PNG is written to a temporary file and renamed, so an old plot is never left half
overwritten."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from perception_mtl.core.atomic import atomic_write  # noqa: E402


def _read(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.exists() else []


def save_figure(fig, path: Path, dpi: int = 100) -> bool:
    """Write `fig` to `path` atomically, with the umask's mode; on an OSError warn, keep the old
    file, return False."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".")))
        return True
    except OSError as err:
        warnings.warn(f"could not write {path} ({err}); the run's records are intact: free disk space and "
                      f"redraw with `python -c \"from perception_mtl.tracking.plots import plot_run; "
                      f"plot_run('{path.parent}')\"`")
        return False


MIN_EVALS_FOR_CURVES = 3  # with fewer evaluations a curve is one or two dots: a table reads better
TRAIN_GROUPS = ("train/loss/", "train/weight/", "train/grad/cos/", "train/lr")


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the rows that hold it."""
    pts = [(r["step"], r[key]) for r in rows if key in r]
    return [s for s, _ in pts], [v for _, v in pts]


def _constant(values: list[float]) -> bool:
    return len(values) > 1 and max(values) - min(values) <= 1e-9 * max(1.0, abs(values[0]))


def train_figure(rows: list[dict]) -> plt.Figure:
    """One panel per group of `TRAIN_GROUPS` present in the train.jsonl rows. A weight panel whose
    weights never change (a static balancer) says so in words instead of drawing flat lines that
    hide each other."""
    keys = sorted({k for r in rows for k in r if k != "step" and k.startswith(TRAIN_GROUPS)})
    panels = [g for g in TRAIN_GROUPS if any(k.startswith(g) for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        series = {k.rsplit("/", 1)[-1]: _series(rows, k) for k in keys if k.startswith(panel)}
        title = panel.rstrip("/")
        if panel == "train/weight/" and all(_constant(v) for _, v in series.values()):
            listing = "\n".join(f"{t} = {v[0]:.4g}" for t, (_, v) in series.items())
            ax.text(0.5, 0.5, f"constant over training\n{listing}", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            title += " (static: constant)"
        else:
            for name, (steps, values) in series.items():
                ax.plot(steps, values, label=name)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def val_figure(rows: list[dict]) -> plt.Figure:
    """Validation metrics of metrics.jsonl: one small panel per metric (each on its own scale),
    or, with fewer than `MIN_EVALS_FOR_CURVES` evaluations, a table of metric x step."""
    keys = sorted({k for r in rows for k in r if k.startswith("val/")})
    evals = [r for r in rows if any(k in r for k in keys)]
    if len(evals) < MIN_EVALS_FOR_CURVES:
        fig, ax = plt.subplots(figsize=(3.4 + 1.2 * len(evals), 0.9 + 0.25 * len(keys)))
        ax.set_axis_off()
        table = ax.table(cellText=[[format(r[k], ".4g") if k in r else "" for r in evals] for k in keys],
                         rowLabels=[k.removeprefix("val/") for k in keys],
                         colLabels=[f"step {r['step']}" for r in evals], loc="center", cellLoc="right")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        ax.set_title(f"validation metrics, {len(evals)} evaluation{'s' * (len(evals) != 1)}\n"
                     f"(a table below {MIN_EVALS_FOR_CURVES}, curves from {MIN_EVALS_FOR_CURVES})", fontsize=9)
        fig.tight_layout()
        return fig
    cols = min(4, len(keys))
    fig, axes = plt.subplots(-(-len(keys) // cols), cols, figsize=(3.2 * cols, 2.3 * -(-len(keys) // cols)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ax.plot(*_series(rows, key), marker="o", ms=3)
        ax.set_title(key.removeprefix("val/"), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write `curves_train.png` and `curves_val.png` into `run_dir`; returns the paths written."""
    run_dir = Path(run_dir)
    written = []
    for name, rows, draw in (("curves_train.png", _read(run_dir / "train.jsonl"), train_figure),
                             ("curves_val.png", _read(run_dir / "metrics.jsonl"), val_figure)):
        if not rows:
            continue
        fig = draw(rows)
        if save_figure(fig, run_dir / name):
            written.append(run_dir / name)
        plt.close(fig)
    return written
