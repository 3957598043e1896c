"""One frame's predictions drawn over it: boxes with class and score, segmentation blended over
the image, colour-mapped depth with a colour bar in metres; returned as an RGB array."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402

from perception_mtl.data.labels import DET_CLASSES  # noqa: E402
from perception_mtl.visualize import colorize_semantic, draw_boxes  # noqa: E402

NEAR = 2.0  # metres: the bright end of the depth colours, as in visualize.colorize_depth


def depth_colormap() -> ListedColormap:
    """visualize.colorize_depth's colours as a matplotlib colormap over LogNorm(NEAR, max_depth),
    so that a colour bar can label them in metres."""
    return ListedColormap(plt.get_cmap("magma")(0.1 + 0.9 * np.linspace(1.0, 0.0, 256)))


def figure_to_rgb(fig: plt.Figure) -> np.ndarray:
    """Render a figure to RGB (H, W, 3) uint8 and close it."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def show_depth(ax: plt.Axes, depth: np.ndarray, max_depth: float, label: str = "depth (m)") -> None:
    """Depth (H, W) metres on `ax` with a colour bar in metres; 0 (invalid) is black."""
    shown = np.ma.masked_less_equal(np.asarray(depth, np.float32), 0)
    cmap = depth_colormap().with_extremes(bad="black")
    im = ax.imshow(shown, cmap=cmap, norm=LogNorm(NEAR, max_depth, clip=True))
    ticks = [t for t in (2, 5, 10, 20, 40, 80, 160) if NEAR <= t <= max_depth]
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=ticks)
    bar.ax.minorticks_off()
    bar.ax.set_yticklabels([str(t) for t in ticks], fontsize=6)
    bar.set_label(label, fontsize=6)


def overlay(image: np.ndarray, predictions: dict, num_classes: int = 19, max_depth: float = 80.0,
            score_thresh: float = 0.4, title: str = "", dpi: int = 100,
            det_names: Sequence[str] = DET_CLASSES) -> np.ndarray:
    """image (H, W, 3) uint8 and one frame's predictions (det {boxes, scores, labels}, seg (H, W),
    depth (H, W)) -> RGB panels side by side, one per task present, about `dpi` pixels per inch
    of a 3-inch-high panel row (the same size for every frame of one size); `det_names`: class names."""
    panels = [t for t in ("det", "seg", "depth") if t in predictions] or ["image"]
    h, w = image.shape[:2]
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * 2.6 * w / h + 0.8, 3.2), dpi=dpi, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel in ("det", "image"):
            ax.imshow(image)
        if panel == "det":
            det = predictions["det"]
            keep = np.asarray(det["scores"]) >= score_thresh
            boxes, labels, scores = (np.asarray(det[k])[keep] for k in ("boxes", "labels", "scores"))
            draw_boxes(ax, boxes, labels, scores, det_names)
            ax.set_title(f"detections (score >= {score_thresh:g})", fontsize=7)
        elif panel == "seg":
            blend = 0.45 * image + 0.55 * colorize_semantic(np.asarray(predictions["seg"]), num_classes)
            ax.imshow(blend.astype(np.uint8))
            ax.set_title("segmentation", fontsize=7)
        elif panel == "depth":
            show_depth(ax, np.asarray(predictions["depth"]), max_depth)
            ax.set_title("depth", fontsize=7)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    return figure_to_rgb(fig)
