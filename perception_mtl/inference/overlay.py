"""One frame's predictions drawn beside each other: one panel per task, each drawn by its task
(`Task.draw`: boxes with class and score, segmentation blended over the image, depth with a colour
bar in metres, normals, edges, ...); returned as an RGB array."""
from __future__ import annotations

from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from perception_mtl.tasks.base import Task  # noqa: E402
from perception_mtl.visualize import image_panel  # noqa: E402


def figure_to_rgb(fig: plt.Figure) -> np.ndarray:
    """Render a figure to RGB (H, W, 3) uint8 and close it."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def overlay(image: np.ndarray, predictions: dict, tasks: Mapping[str, Task], min_score: float = 0.4,
            title: str = "", dpi: int = 100) -> np.ndarray:
    """image (H, W, 3) uint8 and one frame's predictions ({task: its prediction for the frame})
    -> RGB panels side by side, one per task of `tasks` present (in `tasks`' order; the image
    alone when none is), about `dpi` pixels per inch of a 3-inch-high panel row (the same size for
    every frame of one size); `min_score`: the least confidence drawn (boxes, centre peaks)."""
    panels = [t for t in tasks if t in predictions]
    h, w = image.shape[:2]
    count = max(len(panels), 1)
    fig, axes = plt.subplots(1, count, figsize=(count * 2.6 * w / h + 0.8, 3.2), dpi=dpi, squeeze=False)
    if not panels:
        image_panel(axes[0, 0], image, "image")
    for ax, task in zip(axes[0], panels):
        tasks[task].draw(ax, image, predictions[task], min_score)
    if title:
        fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    return figure_to_rgb(fig)
