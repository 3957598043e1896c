"""The toy problem's figure and table (analysis/toy.py): one panel per method, the trajectories from
every start over the contours of the mean loss, as in CAGrad's Fig. 1."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from perception_mtl.analysis.toy import OPTIMUM, PARETO_X1, PARETO_X2, Run, objectives, outcome  # noqa: E402
from perception_mtl.tracking.plots import save_figure  # noqa: E402

EXTENT = 11.0  # the papers' window: x1, x2 in [-11, 11]


def _contours(ax, scale: float, n: int = 300) -> None:
    grid = torch.linspace(-EXTENT, EXTENT, n)
    x2, x1 = torch.meshgrid(grid, grid, indexing="ij")
    mean = objectives(torch.stack([x1, x2], dim=-1), scale).mean(dim=-1)
    ax.contour(x1.numpy(), x2.numpy(), mean.numpy(), levels=12, cmap="viridis", linewidths=1.0)
    ax.plot(PARETO_X1, [PARETO_X2] * 2, color="gray", linewidth=5, zorder=0, solid_capstyle="butt")
    ax.plot(*OPTIMUM, marker="*", markersize=11, color="k", zorder=5)


def plot_runs(runs: list[Run], path: Path, title: str, scale: float = 1.0) -> bool:
    """One panel per method in `runs` (their order), each start's path in red, ending in a dot that
    is yellow on the Pareto set and blue elsewhere. Written atomically; False if it could not be."""
    methods = list(dict.fromkeys(r.method for r in runs))
    cols = min(5, len(methods))
    rows = math.ceil(len(methods) / cols)
    title = textwrap.fill(title, width=40 * cols)  # a one-panel figure is narrower than the title
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows + 0.4 + 0.2 * title.count("\n")),
                             squeeze=False)
    for ax in axes.flat[len(methods):]:
        ax.axis("off")
    for ax, method in zip(axes.flat, methods):
        _contours(ax, scale)
        for r in (r for r in runs if r.method == method):
            ax.plot(r.path[:, 0], r.path[:, 1], color="tab:red", linewidth=1.6, zorder=3)
            ax.plot(*r.start, marker="o", markersize=6, color="k", zorder=4)
            ax.plot(*r.end, marker="o", markersize=5, zorder=6,
                    color="gold" if outcome(r.end)["pareto"] else "tab:blue")
        ax.set(xlim=(-EXTENT, EXTENT), ylim=(-EXTENT, EXTENT), aspect="equal", title=method)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    ok = save_figure(fig, path, dpi=90)
    plt.close(fig)
    return ok


def table(runs: list[Run]) -> str:
    """Markdown: per method and start, the end point, whether it is on the Pareto set, and its
    distance to the mean-loss optimum."""
    lines = ["| method | start | end (x1, x2) | Pareto set | distance to (0, -8.3551) |", "|---|---|---|---|---|"]
    for r in runs:
        o = outcome(r.end)
        lines.append(f"| {r.method} | ({r.start[0]:g}, {r.start[1]:g}) | ({o['end'][0]:.3f}, {o['end'][1]:.3f}) "
                     f"| {'yes' if o['pareto'] else 'no'} | {o['dist_to_optimum']:.3f} |")
    return "\n".join(lines) + "\n"
