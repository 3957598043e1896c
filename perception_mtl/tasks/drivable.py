"""Drivable area (BDD100K): 3-class segmentation into direct, alternative and background, as in
YOLOP's drivable-area head; cross-entropy (255 ignored), mIoU over the 3 classes and the IoU of
the two drivable classes."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.labels import IGNORE
from perception_mtl.data.targets import Target
from perception_mtl.models.heads.dense import DenseHead
from perception_mtl.tasks.base import Task, labelled
from perception_mtl.tasks.registry import TASKS
from perception_mtl.tasks.seg import ConfusionMetric
from perception_mtl.visualize import blend, image_panel

CLASSES = ("direct", "alternative", "background")
COLOURS = np.array([(220, 40, 40), (40, 90, 230), (0, 0, 0)], np.uint8)  # BDD100K's: direct red, alternative blue


class DrivableMetric(ConfusionMetric):
    """mIoU over CLASSES, plus the IoU of each drivable class (nan when absent from truth and prediction)."""

    def __init__(self):
        super().__init__(len(CLASSES))

    def compute(self) -> dict[str, torch.Tensor]:
        iou = self.iou()
        return {"mIoU": iou.nanmean(), "direct_IoU": iou[0], "alternative_IoU": iou[1]}


@TASKS.register("drivable")
class DrivableTask(Task):
    name = "drivable"
    primary = "mIoU"
    loss_form = "classification"
    targets = {"drivable": Target(torch.int64, IGNORE)}
    directions = {"mIoU": True, "direct_IoU": True, "alternative_IoU": True}

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return DenseHead(channels, strides, len(CLASSES), self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        target = batch["drivable"][has]
        # cross-entropy over no pixel is nan (0/0): a mask that is all ignore gives no loss
        if not (target != IGNORE).any():
            return {}
        return {"ce": F.cross_entropy(output[has].float(), target, ignore_index=IGNORE)}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Class indices (B, H, W) into CLASSES."""
        return F.interpolate(output.float(), size=out_size, mode="bilinear", align_corners=False).argmax(1)

    def metric(self) -> Metric:
        return DrivableMetric()

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["drivable"][has])

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """The drivable classes blended over the image (red direct, blue alternative), background left clear."""
        classes = prediction.numpy()
        image_panel(ax, blend(image, COLOURS[classes], np.where(classes == CLASSES.index("background"), 0.0, 0.55)),
                    "drivable area (red direct, blue alternative)")
