"""Semantic segmentation: a loss over train ids (255 ignored; cross-entropy by default, or smp's
Dice, Lovász, focal: `task.seg.loss`), mIoU and pixel accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from omegaconf import DictConfig
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.files import write_png
from perception_mtl.data.labels import IGNORE, SEG_CLASSES, TRAIN_ID_TO_LABEL_ID
from perception_mtl.data.targets import Target
from perception_mtl.core.errors import ConfigError
from perception_mtl.models.heads.decoders import build_dense_head
from perception_mtl.tasks.base import Exporter, Task, labelled
from perception_mtl.tasks.decoder_key import check_decoder
from perception_mtl.tasks.registry import TASKS
from perception_mtl.tasks.seg_losses import build_seg_loss, seg_loss_terms
from perception_mtl.visualize import blend, colorize_semantic, image_panel


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
    primary = "mIoU"
    loss_form = "classification"
    targets = {"semantic": Target(torch.int64, IGNORE)}
    directions = {"mIoU": True, "pixel_acc": True}

    @dataclass
    class Config:
        decoder: str = "light"  # dense head: "light" (heads/dense.py) | smp's "fpn" | "deeplabv3plus" | "unet"
        loss: str = "ce"  # terms joined by "+": ce | dice | lovasz | focal (smp.losses), e.g. "ce+dice"

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        check_decoder(cfg, cls.name)
        try:
            seg_loss_terms(cfg.task.seg.loss)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def __init__(self, cfg):
        super().__init__(cfg)
        self.criteria = build_seg_loss(cfg.task.seg.loss)

    @property
    def num_classes(self) -> int:
        return int(self.cfg.data.seg_classes)

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return build_dense_head(self.cfg.task.seg.decoder, channels, strides, self.num_classes,
                                self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        logits, target = output[has].float(), batch["semantic"][has]
        return {term: criterion(logits, target) for term, criterion in self.criteria.items()}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Class indices (B, H, W)."""
        return F.interpolate(output.float(), size=out_size, mode="bilinear", align_corners=False).argmax(1)

    def metric(self) -> Metric:
        return ConfusionMetric(self.num_classes)

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["semantic"][has])

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """The classes in Cityscapes colours blended over the image."""
        image_panel(ax, blend(image, colorize_semantic(prediction.numpy(), self.num_classes)), "segmentation")

    def error(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, truth: torch.Tensor) -> bool:
        """Pixels of the wrong class in red over the darkened image, ignored pixels black."""
        wrong, fraction = wrong_class_map(prediction.numpy(), truth.numpy(), image)
        image_panel(ax, wrong, f"wrong class (red): {100 * fraction:.1f}% of labelled pixels")
        return True

    def overlay(self, prediction: torch.Tensor, batch: dict, i: int) -> dict:
        labels = dict(enumerate(SEG_CLASSES[self.num_classes]))
        masks = {"predictions": {"mask_data": prediction.numpy().astype(np.uint8), "class_labels": labels}}
        if "semantic" in batch:
            masks["ground_truth"] = {"mask_data": batch["semantic"][i].numpy().astype(np.uint8),
                                     "class_labels": {**labels, IGNORE: "ignore"}}
        return {"masks": masks}

    def exporter(self, out: Path) -> Exporter:
        if self.num_classes != 19:
            raise ValueError("semantic export writes Cityscapes label ids and needs the 19-class label space")
        return SemanticPngs(out)


class SemanticPngs(Exporter):
    """semantic/<frame>.png: predicted train ids mapped to Cityscapes label ids (its official evaluator's input)."""

    def __init__(self, out: Path):
        self.out = out

    def add(self, batch: dict, i: int, frame: str, prediction: torch.Tensor) -> None:
        write_png(self.out / "semantic" / f"{frame}.png", TRAIN_ID_TO_LABEL_ID[prediction.numpy()])


def wrong_class_map(pred: np.ndarray, gt: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, float]:
    """RGB (H, W, 3) uint8: wrong-class pixels red over the darkened image, ignored pixels black;
    and the fraction of labelled pixels that are wrong."""
    labelled_pixels = gt != IGNORE
    wrong = labelled_pixels & (pred != gt)
    rgb = (0.35 * image).astype(np.uint8)
    rgb[wrong] = (255, 40, 40)
    rgb[~labelled_pixels] = 0
    return rgb, float(wrong.sum() / max(labelled_pixels.sum(), 1))
