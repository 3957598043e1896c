"""Semantic segmentation: cross-entropy over train ids (255 ignored), mIoU and pixel accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.labels import IGNORE
from perception_mtl.models.heads.dense import DenseHead
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.base import Task, labelled


class ConfusionMetric(Metric):
    """Confusion matrix (K, K) over non-ignored pixels; rows are ground truth. IoU of a class
    is nan when it is absent from both truth and prediction (as the official Cityscapes
    evaluator does) and mIoU is the mean over the other classes."""

    full_state_update = False

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        keep = target != IGNORE
        k = self.num_classes
        idx = target[keep] * k + pred[keep].clamp(0, k - 1)
        self.confusion += torch.bincount(idx, minlength=k * k).view(k, k)

    def iou(self) -> torch.Tensor:
        c = self.confusion.double()
        tp = c.diag()
        union = c.sum(0) + c.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))

    def compute(self) -> dict[str, torch.Tensor]:
        c = self.confusion.double()
        return {"mIoU": self.iou().nanmean(), "pixel_acc": c.diag().sum() / c.sum().clamp(min=1)}


@TASKS.register("seg")
class SegmentationTask(Task):
    name = "seg"
    directions = {"mIoU": True, "pixel_acc": True}

    @property
    def num_classes(self) -> int:
        return int(self.cfg.data.seg_classes)

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return DenseHead(channels, strides, self.num_classes, self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        return {"ce": F.cross_entropy(output[has].float(), batch["semantic"][has], ignore_index=IGNORE)}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Class indices (B, H, W)."""
        return F.interpolate(output.float(), size=out_size, mode="bilinear", align_corners=False).argmax(1)

    def metric(self) -> Metric:
        return ConfusionMetric(self.num_classes)

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["semantic"][has])
