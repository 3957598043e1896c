"""Predictions beside the ground truth for chosen frames, with error maps: per frame two rows,
predicted over true: image with boxes, segmentation, depth, and the errors (pixels of the wrong
class; absolute relative depth error |pred - gt| / gt on pixels with valid depth)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from perception_mtl.data.labels import DET_CLASSES, IGNORE  # noqa: E402
from perception_mtl.visualize import colorize_semantic, draw_boxes, show_depth  # noqa: E402

ABS_REL_MAX = 0.5  # the top of the error colour bar


def wrong_class_map(pred: np.ndarray, gt: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, float]:
    """RGB (H, W, 3) uint8: wrong-class pixels red over the darkened image, ignored pixels black;
    and the fraction of labelled pixels that are wrong."""
    labelled = gt != IGNORE
    wrong = labelled & (pred != gt)
    rgb = (0.35 * image).astype(np.uint8)
    rgb[wrong] = (255, 40, 40)
    rgb[~labelled] = 0
    return rgb, float(wrong.sum() / max(labelled.sum(), 1))


def abs_rel_map(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> np.ma.MaskedArray:
    """|pred - gt| / gt (H, W) on pixels with min_depth < gt <= max_depth (others masked), the
    prediction clamped to that range as in the depth metric."""
    valid = (gt > min_depth) & (gt <= max_depth)
    err = np.abs(np.clip(pred, min_depth, max_depth) - gt) / np.where(valid, gt, 1.0)
    return np.ma.masked_where(~valid, err)


def comparison_figure(batch: dict, predictions: dict, num_classes: int = 19, min_depth: float = 0.5,
                      max_depth: float = 80.0, score_thresh: float = 0.4,
                      det_names: Sequence[str] = DET_CLASSES) -> plt.Figure:
    """batch: collated frames at label resolution (image (B, 3, H, W), boxes, labels, semantic,
    depth); predictions: `predict_batch`'s at that resolution; `det_names`: class names. Two rows per frame."""
    n = batch["image"].shape[0]
    h, w = batch["image"].shape[-2:]
    fig, axes = plt.subplots(2 * n, 4, figsize=(4 * 2.4 * w / h + 1.5, 2 * n * 2.7), squeeze=False)
    for i in range(n):
        image = (batch["image"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        top, bottom = axes[2 * i], axes[2 * i + 1]
        det = predictions["det"][i]
        keep = det["scores"].numpy() >= score_thresh
        for ax, boxes, labels, scores, who in (
                (top[0], det["boxes"].numpy()[keep], det["labels"].numpy()[keep], det["scores"].numpy()[keep],
                 f"predicted boxes (score >= {score_thresh:g})"),
                (bottom[0], batch["boxes"][i].numpy(), batch["labels"][i].numpy(), None, "true boxes")):
            ax.imshow(image)
            draw_boxes(ax, boxes, labels, scores, det_names)
            ax.set_title(f"{who}  {batch['frame'][i]}" if ax is top[0] else who, fontsize=7)
        pred_seg, gt_seg = predictions["seg"][i].numpy(), batch["semantic"][i].numpy()
        for ax, seg, who in ((top[1], pred_seg, "predicted seg"), (bottom[1], gt_seg, "true seg")):
            ax.imshow(colorize_semantic(seg, num_classes))
            ax.set_title(who, fontsize=7)
        pred_depth, gt_depth = predictions["depth"][i].numpy(), batch["depth"][i].numpy()
        for ax, depth, who in ((top[2], pred_depth, "predicted depth"), (bottom[2], gt_depth, "true depth")):
            show_depth(ax, depth, max_depth)
            ax.set_title(who, fontsize=7)
        wrong, fraction = wrong_class_map(pred_seg, gt_seg, image)
        top[3].imshow(wrong)
        top[3].set_title(f"wrong class (red): {100 * fraction:.1f}% of labelled pixels", fontsize=7)
        err = abs_rel_map(pred_depth, gt_depth, min_depth, max_depth)
        im = bottom[3].imshow(err, cmap=plt.get_cmap("inferno").with_extremes(bad="black"), vmin=0, vmax=ABS_REL_MAX)
        bar = fig.colorbar(im, ax=bottom[3], fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        bottom[3].set_title(f"depth abs rel error (mean {float(err.mean()):.3f})", fontsize=7)
        for ax in (*top, *bottom):
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            ax.set_axis_off()
    fig.tight_layout()
    return fig
