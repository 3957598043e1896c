"""Curves from the local record: per-task losses, task weights, gradient cosines, lr, val metrics."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.exists() else []


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write `curves_train.png` and `curves_val.png` into `run_dir`; returns their paths."""
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
        fig.savefig(run_dir / name, dpi=100)
        plt.close(fig)
        written.append(run_dir / name)
    return written
