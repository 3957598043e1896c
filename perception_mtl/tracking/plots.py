"""Curves from the local record: per-task losses, task weights, gradient cosines, lr, val metrics.

Plots are derived from the JSONL records, so failing to write one (disk full) is a warning, never
fatal; each PNG is written to a temporary file and renamed, so an old plot is never left half
overwritten."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.exists() else []


def save_figure(fig, path: Path, dpi: int = 100) -> bool:
    """Write `fig` to `path` atomically; on an OSError warn, keep the old file, return False."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, dpi=dpi, format=path.suffix.lstrip("."))
        os.replace(tmp, path)
        return True
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write {path} ({err}); the run's records are intact: free disk space and "
                      f"redraw with `python -c \"from perception_mtl.tracking.plots import plot_run; "
                      f"plot_run('{path.parent}')\"`")
        return False


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write `curves_train.png` and `curves_val.png` into `run_dir`; returns the paths written."""
    run_dir = Path(run_dir)
    written = []
    for name, rows, groups in (
        ("curves_train.png", _read(run_dir / "train.jsonl"),
         ("train/loss/", "train/weight/", "train/grad/cos/", "train/lr")),
        ("curves_val.png", _read(run_dir / "metrics.jsonl"), ("val/",)),
    ):
        if not rows:
            continue
        keys = sorted({k for r in rows for k in r if k != "step" and k.startswith(groups)})
        panels = [g for g in groups if any(k.startswith(g) for k in keys)] if groups[0] != "val/" else \
            sorted({"/".join(k.split("/")[:2]) + "/" for k in keys})
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for key in (k for k in keys if k.startswith(panel)):
                pts = [(r["step"], r[key]) for r in rows if key in r]
                ax.plot(*zip(*pts), label=key.rsplit("/", 1)[-1], marker="o" if name.endswith("val.png") else None)
            ax.set_title(panel.rstrip("/"), fontsize=9)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        fig.tight_layout()
        if save_figure(fig, run_dir / name):
            written.append(run_dir / name)
        plt.close(fig)
    return written
