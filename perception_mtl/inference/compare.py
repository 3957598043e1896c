"""Pictures of chosen frames, one column per task, each drawn by its task (`Task.draw`): the
ground truth alone (`truth_figure`), or predicted over true with the errors of the tasks that
draw them (`comparison_figure`)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from perception_mtl.tasks.base import Task  # noqa: E402


def _image(batch: dict, i: int) -> np.ndarray:
    return (batch["image"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _titled(ax: plt.Axes, prefix: str) -> None:
    ax.set_title(f"{prefix}{ax.get_title()}", fontsize=7)


def _unlabelled(ax: plt.Axes, name: str) -> None:
    ax.set_axis_off()
    ax.set_title(f"{name}: no labels in this frame", fontsize=7)


def truth_figure(batch: dict, tasks: dict[str, Task], score_thresh: float = 0.0) -> plt.Figure:
    """batch: collated frames (image (B, 3, H, W) and the tasks' targets). One row per frame, one
    column per task with labels in the batch: its ground truth as the task draws it."""
    n, (h, w) = batch["image"].shape[0], batch["image"].shape[-2:]
    fig, axes = plt.subplots(n, len(tasks), figsize=(len(tasks) * 2.4 * w / h + 0.5, n * 2.3), squeeze=False)
    for i in range(n):
        image = _image(batch, i)
        for ax, (name, task) in zip(axes[i], tasks.items()):
            truth = task.truth(batch, i)
            if truth is None:
                _unlabelled(ax, name)
                continue
            task.draw(ax, image, truth, score_thresh)
            _titled(ax, f"{batch['frame'][i]}: true " if ax is axes[i][0] else "true ")
    fig.tight_layout()
    return fig


def comparison_figure(batch: dict, predictions: dict, tasks: dict[str, Task], score_thresh: float = 0.4) -> plt.Figure:
    """batch: collated frames at label resolution; predictions: `predict_batch`'s at that
    resolution. Per frame a row of predictions, a row of ground truth and a row with the errors of
    the tasks that draw them (`Task.error`); one column per task."""
    n, (h, w) = batch["image"].shape[0], batch["image"].shape[-2:]
    fig, axes = plt.subplots(3 * n, len(tasks), figsize=(len(tasks) * 2.4 * w / h + 1.5, 3 * n * 2.4), squeeze=False)
    for i in range(n):
        image = _image(batch, i)
        predicted, true, errors = axes[3 * i], axes[3 * i + 1], axes[3 * i + 2]
        for k, (name, task) in enumerate(tasks.items()):
            task.draw(predicted[k], image, predictions[name][i], score_thresh)
            _titled(predicted[k], f"predicted {batch['frame'][i]}: " if k == 0 else "predicted ")
            truth = task.truth(batch, i)
            if truth is None:
                _unlabelled(true[k], name)
                errors[k].set_axis_off()
                continue
            task.draw(true[k], image, truth, 0.0)
            _titled(true[k], "true ")
            if not task.error(errors[k], image, predictions[name][i], truth):
                errors[k].set_axis_off()
    fig.tight_layout()
    return fig
