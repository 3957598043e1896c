"""Scene attributes (weather, time of day): an auxiliary classification task, off by default.
A target of -1 (UNKNOWN: BDD100K's "undefined") counts in neither the loss nor the metric."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from perception_mtl.data.cityscapes import TIMES, WEATHERS
from perception_mtl.data.targets import Target
from perception_mtl.models.heads.scene import SceneHead
from perception_mtl.tasks.base import Task, labelled
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import image_panel

NAMES = {"weather": WEATHERS, "time": TIMES}  # attribute -> its class names
ATTRIBUTES = {k: len(names) for k, names in NAMES.items()}
UNKNOWN = -1


class SceneMetric(Metric):
    """Accuracy of each attribute over the samples where it is known."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.acc = nn.ModuleDict({k: MulticlassAccuracy(n, average="micro") for k, n in ATTRIBUTES.items()})

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        for i, key in enumerate(ATTRIBUTES):
            known = target[:, i] != UNKNOWN
            if known.any():
                self.acc[key].update(pred[known, i], target[known, i])

    def compute(self) -> dict[str, torch.Tensor]:
        return {f"{k}_acc": self.acc[k].compute() for k in ATTRIBUTES}

    def reset(self) -> None:
        super().reset()
        for m in self.acc.values():
            m.reset()


@TASKS.register("scene")
class SceneTask(Task):
    name = "scene"
    primary = "weather_acc"
    loss_form = "classification"
    targets = {"scene": Target(torch.int64, -1)}
    directions = {"weather_acc": True, "time_acc": True}

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return SceneHead(channels, strides, tuple(ATTRIBUTES.values()), self.cfg.model.head_channels)

    def _split(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output.float().split(list(ATTRIBUTES.values()), dim=1))

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        logits, target = self._split(output[has]), batch["scene"][has]
        # an attribute unknown on every sample has no loss (cross-entropy over none is nan)
        return {k: F.cross_entropy(lg, target[:, i], ignore_index=UNKNOWN)
                for i, (k, lg) in enumerate(zip(ATTRIBUTES, logits)) if (target[:, i] != UNKNOWN).any()}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Attribute class indices (B, 2)."""
        return torch.stack([lg.argmax(1) for lg in self._split(output)], 1)

    def metric(self) -> Metric:
        return SceneMetric()

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["scene"][has])

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """The image with each predicted attribute written on it."""
        image_panel(ax, image, "scene attributes")
        text = "\n".join(f"{k}: {NAMES[k][int(c)] if int(c) != UNKNOWN else 'unknown'}"
                         for k, c in zip(ATTRIBUTES, prediction))
        ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=8, color="white",
                bbox=dict(fc="black", alpha=0.6, ec="none"))
