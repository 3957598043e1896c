"""Pictures of samples and predictions: semantic colours, depth colormaps with a colour bar in
metres, box overlays, image panels (the pieces tasks draw their predictions with)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from typing import Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cityscapesscripts.helpers.labels import trainId2label  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from perception_mtl.data.labels import DET_CLASSES, IGNORE  # noqa: E402

_PALETTE19 = np.array([trainId2label[i].color for i in range(19)] + [(0, 0, 0)], np.uint8)
_PALETTE7 = np.array([(128, 64, 128), (70, 70, 70), (220, 220, 0), (107, 142, 35), (70, 130, 180),
                      (220, 20, 60), (0, 0, 142), (0, 0, 0)], np.uint8)
# box colour per detection class index: Cityscapes' colours of the 8 instance classes, then of traffic
# light and traffic sign (BDD100K's classes 9 and 10, data/det_classes.py)
_BOX_COLORS = np.concatenate([_PALETTE19[11:19], _PALETTE19[6:8]])
NEAR = 2.0  # metres: the bright end of the depth colours


def colorize_semantic(semantic: torch.Tensor | np.ndarray, num_classes: int = 19) -> np.ndarray:
    """Class indices (H, W), 255 = ignore -> RGB (H, W, 3) uint8 in Cityscapes colours."""
    palette = _PALETTE19 if num_classes == 19 else _PALETTE7
    sem = np.asarray(semantic)
    return palette[np.where(sem == IGNORE, len(palette) - 1, np.clip(sem, 0, len(palette) - 2))]


def colorize_depth(depth: torch.Tensor | np.ndarray, max_depth: float = 80.0) -> np.ndarray:
    """Metric depth (H, W), 0 = invalid -> RGB (H, W, 3) uint8: log-scaled 'magma' from 2 m
    (bright) to `max_depth` (dark); invalid pixels black."""
    d = np.asarray(depth, np.float32)
    valid = d > 0
    norm = 1.0 - np.log(np.clip(d, NEAR, max_depth) / NEAR) / np.log(max_depth / NEAR)
    rgb = (plt.get_cmap("magma")(0.1 + 0.9 * norm)[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def depth_colormap() -> ListedColormap:
    """colorize_depth's colours as a matplotlib colormap over LogNorm(NEAR, max_depth), so that a
    colour bar can label them in metres."""
    return ListedColormap(plt.get_cmap("magma")(0.1 + 0.9 * np.linspace(1.0, 0.0, 256)))


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


def image_panel(ax: plt.Axes, rgb: np.ndarray, title: str) -> None:
    """`rgb` (H, W, 3) on `ax` with `title`, without axes, the view kept to the image (boxes drawn
    later may reach past it)."""
    h, w = rgb.shape[:2]
    ax.imshow(rgb)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)


def blend(image: np.ndarray, colours: np.ndarray, alpha: np.ndarray | float = 0.55) -> np.ndarray:
    """`colours` (H, W, 3) over `image` (H, W, 3) uint8 with opacity `alpha` (a number or (H, W)) -> uint8."""
    a = np.asarray(alpha, np.float32)[..., None] if np.ndim(alpha) else float(alpha)
    return ((1 - a) * image + a * colours).clip(0, 255).astype(np.uint8)


def draw_boxes(ax: plt.Axes, boxes: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
               scores: torch.Tensor | np.ndarray | None = None, names: Sequence[str] = DET_CLASSES) -> None:
    """Draw xyxy boxes (N, 4) with class names (`names[label]`, and scores) on a matplotlib axis."""
    for i, (box, label) in enumerate(zip(np.asarray(boxes), np.asarray(labels))):
        x0, y0, x1, y1 = box.tolist()
        color = _BOX_COLORS[int(label)] / 255.0
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=color))
        text = names[int(label)] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        ax.text(x0, y0 - 1, text, color="white", fontsize=5, bbox=dict(fc=color, ec="none", pad=0.5))
