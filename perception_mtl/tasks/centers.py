"""Instance centres (CenterNet, Zhou et al. 2019, "Objects as Points"): a heatmap at one FPN
stride whose peaks are the centres of the det boxes. No new annotation: the task reads det's
labels (`reads`), and a loader asked for it loads the boxes.

Target: per box an elliptical Gaussian at the heatmap cell of its centre, exactly 1 there, with
sigma = sigma_scale * (box width, height) / 6 in cells (TTFNet's rule, Liu et al. 2020: the spread
follows the box's size and aspect ratio, where CenterNet's single radius ignores the aspect);
overlapping Gaussians take their maximum, and crowd boxes are left out. Loss: CenterNet's
penalty-reduced focal loss. Metric: peak AP and recall, a peak matching a true centre within
`tolerance` heatmap cells.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.targets import Target
from perception_mtl.tasks.base import Task, bounded, labelled
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import blend, image_panel

PRIOR = 0.1  # the head's initial centre probability (CenterNet's bias of -2.19)
ALPHA, BETA = 2.0, 4.0  # CenterNet's focusing and penalty-reduction exponents
BINS = 1000  # score bins of the metric's precision-recall curve
SIGMA_MIN = 0.1  # cells: a box narrower than a cell still gets its one-cell peak


def centre_heatmap(boxes: torch.Tensor, size: tuple[int, int], stride: int, sigma_scale: float) -> torch.Tensor:
    """boxes (N, 4) xyxy input pixels -> heatmap (h, w) = `size` at `stride`, 1 at each box's centre cell."""
    h, w = size
    if len(boxes) == 0:
        return torch.zeros(size, device=boxes.device)
    cells = ((boxes[:, :2] + boxes[:, 2:]) / (2 * stride)).floor()
    cells = torch.minimum(cells.clamp(min=0), torch.tensor([w - 1.0, h - 1.0], device=boxes.device))  # (N, 2) x, y
    sigma = ((boxes[:, 2:] - boxes[:, :2]) / stride * sigma_scale / 6).clamp(min=SIGMA_MIN)  # (N, 2)
    gx = torch.exp(-(torch.arange(w, device=boxes.device)[None] - cells[:, :1]) ** 2 / (2 * sigma[:, :1] ** 2))
    gy = torch.exp(-(torch.arange(h, device=boxes.device)[None] - cells[:, 1:]) ** 2 / (2 * sigma[:, 1:] ** 2))
    return (gy[:, :, None] * gx[:, None, :]).amax(0)  # (N, h, w) -> (h, w)


def centre_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (its eq. 1, from CornerNet, Law & Deng
    2018) over logits and target heatmaps of one shape: -1/N sum of (1 - p)^a log p where the
    target is 1 and (1 - y)^b p^a log(1 - p) elsewhere, N the number of centres (at least 1).

    Written here: torchvision's `sigmoid_focal_loss` is RetinaNet's focal loss on hard 0/1 targets,
    without the (1 - y)^b factor that spares the pixels near a centre, so it is another loss;
    mmdet's GaussianFocalLoss is this one, but mmdet brings mmcv and its compiled operators."""
    positive = target == 1
    p = torch.sigmoid(logits)
    hit = (1 - p) ** ALPHA * F.logsigmoid(logits)
    miss = (1 - target) ** BETA * p ** ALPHA * F.logsigmoid(-logits)
    return -(hit[positive].sum() + miss[~positive].sum()) / positive.sum().clamp(min=1)


def box_centres(boxes: torch.Tensor, crowd: torch.Tensor) -> torch.Tensor:
    """The centres (M, 2) xy of the boxes (N, 4) that are not crowd (N,)."""
    kept = boxes[~crowd]
    return (kept[:, :2] + kept[:, 2:]) / 2


class CentreHead(nn.Module):
    """{stride: (B, C, H/s, W/s)} -> centre logits (B, 1, H/s, W/s) at `stride`: CenterNet's head
    (a 3x3 conv, ReLU, a 1x1 conv), with GroupNorm as the other heads here."""

    def __init__(self, channels: int, strides: list[int], stride: int, width: int):
        super().__init__()
        if stride not in strides:
            raise ValueError(f"task.centers.stride={stride} is not a feature stride of the model ({strides})")
        self.stride = stride
        self.conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.GroupNorm(8, width),
                                  nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.constant_(self.out.bias, -math.log((1 - PRIOR) / PRIOR))

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        return self.out(self.conv(feats[self.stride]))


class CentreMetric(Metric):
    """Peak AP and recall. An image's peaks, highest score first, each take the nearest true centre
    not yet taken within `tolerance` cells (the larger of the x and y distances, in heatmap cells);
    the others are false positives. Counts are kept per score bin (1/BINS wide), so ranks sum them:
    AP is the sum over bins, highest first, of the precision down to that bin times the recall it
    adds (average precision as sklearn's, at BINS thresholds); recall is that of every peak."""

    full_state_update = False

    def __init__(self, tolerance: float):
        super().__init__()
        self.tolerance = tolerance
        self.add_state("hits", torch.zeros(BINS, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("misses", torch.zeros(BINS, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("centres", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, peaks: list[dict], centres: list[torch.Tensor]) -> None:
        """peaks: per image `CentersTask.predict`'s dict; centres: per image the true centres (M, 2)."""
        for found, truth in zip(peaks, centres):
            order = found["scores"].argsort(descending=True)
            scores, points = found["scores"][order], found["points"][order]
            distance = ((points[:, None] - truth[None]).abs() / found["cell"]).amax(-1)  # (P, M) in cells
            free = torch.ones(len(truth), dtype=torch.bool, device=truth.device)
            bins = (scores * BINS).long().clamp(0, BINS - 1)
            for k in range(len(points)):
                near = free & (distance[k] <= self.tolerance)
                if near.any():
                    free[torch.where(near, distance[k], math.inf).argmin()] = False
                    self.hits[bins[k]] += 1
                else:
                    self.misses[bins[k]] += 1
            self.centres += len(truth)

    def compute(self) -> dict[str, torch.Tensor]:
        hits, misses = self.hits.flip(0).double(), self.misses.flip(0).double()  # highest score first
        found = hits.cumsum(0)
        precision = found / (found + misses.cumsum(0)).clamp(min=1)
        total = self.centres.double().clamp(min=1)
        return {"AP": (precision * hits).sum() / total, "recall": found[-1] / total}


@TASKS.register("centers")
class CentersTask(Task):
    name = "centers"
    primary = "AP"
    loss_form = "classification"
    reads = "det"
    targets = {"boxes": Target(torch.float32, None, (4,)), "iscrowd": Target(torch.bool)}
    directions = {"AP": True, "recall": True}

    @dataclass
    class Config:
        stride: int = bounded(4, lambda v: v in (4, 8, 16, 32), "an FPN stride: 4, 8, 16 or 32")
        sigma_scale: float = bounded(0.54, lambda v: v > 0, "> 0")  # TTFNet's alpha: sigma = alpha * size / 6
        max_peaks: int = bounded(100, lambda v: v >= 1, ">= 1")  # peaks kept per image, highest first
        tolerance: float = bounded(1.0, lambda v: v > 0, "> 0 (heatmap cells)")  # how far a matched peak may be

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return CentreHead(channels, strides, self.cfg.task.centers.stride, self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        c = self.cfg.task.centers
        idx = has.nonzero()[:, 0].tolist()
        size = tuple(output.shape[-2:])
        target = torch.stack([centre_heatmap(batch["boxes"][i][~batch["iscrowd"][i]], size, c.stride, c.sigma_scale)
                              for i in idx])
        return {"focal": centre_focal_loss(output[idx, 0].float(), target)}

    def predict(self, head, output: torch.Tensor, images, out_size) -> list[dict]:
        """Per image: heatmap (h, w) centre probability at the head's stride; its peaks (a cell
        that is the maximum of its 3x3 neighbourhood, CenterNet's NMS), the `max_peaks` highest:
        points (P, 2) xy cell centres in `out_size` pixels, scores (P,); cell (2,) a cell's width
        and height in those pixels."""
        heat = torch.sigmoid(output.float())[:, 0]
        peak = heat == F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0]
        cell = torch.tensor([out_size[1] / heat.shape[-1], out_size[0] / heat.shape[-2]], device=heat.device)
        found = []
        for heatmap, is_peak in zip(heat, peak):
            scores = heatmap[is_peak]
            top = scores.topk(min(len(scores), self.cfg.task.centers.max_peaks)).indices
            points = (is_peak.nonzero()[top].flip(-1) + 0.5) * cell
            found.append({"heatmap": heatmap, "points": points, "scores": scores[top], "cell": cell})
        return found

    def metric(self) -> Metric:
        return CentreMetric(self.cfg.task.centers.tolerance)

    def update(self, metric: Metric, predictions: list[dict], batch: dict) -> None:
        idx = labelled(batch, self.name).nonzero()[:, 0].tolist()
        metric.update([predictions[i] for i in idx], [box_centres(batch["boxes"][i], batch["iscrowd"][i]) for i in idx])

    def truth(self, batch: dict, i: int) -> dict | None:
        """The frame's exact centres as `predict` gives peaks (score 1), over their target heatmap."""
        if not labelled(batch, self.name)[i]:
            return None
        c = self.cfg.task.centers
        (h, w), boxes, crowd = batch["image"].shape[-2:], batch["boxes"][i], batch["iscrowd"][i]
        size = (-(-h // c.stride), -(-w // c.stride))
        points = box_centres(boxes, crowd)
        return {"heatmap": centre_heatmap(boxes[~crowd], size, c.stride, c.sigma_scale), "points": points,
                "scores": torch.ones(len(points)), "cell": torch.tensor([w / size[1], h / size[0]])}

    def draw(self, ax: Axes, image: np.ndarray, prediction: dict, min_score: float) -> None:
        """The heatmap over the darkened image, its peaks scoring at least `min_score` as crosses."""
        heat = F.interpolate(prediction["heatmap"][None, None], size=image.shape[:2], mode="bilinear",
                             align_corners=False)[0, 0].clamp(0, 1).numpy()
        colours = plt.get_cmap("inferno")(heat)[..., :3] * 255
        image_panel(ax, blend(blend(image, np.zeros_like(image), 0.4), colours, 0.8 * heat),
                    f"instance centres (score >= {min_score:g})")
        keep = (prediction["scores"] >= min_score).numpy()
        points = prediction["points"].numpy()[keep]
        ax.scatter(points[:, 0], points[:, 1], marker="+", s=30, linewidths=1.0, c="cyan")
