"""Semantic edges: an auxiliary dense task derived from the segmentation labels, no new
annotation. A pixel is an edge when a 4-neighbour carries another valid class; pixels next to
ignore (255) are ignored. Loss: class-balanced binary cross-entropy (Xie & Tu, "Holistically-Nested
Edge Detection", ICCV 2015). Metric: precision, recall and F1 at probability 0.5 (torchmetrics'
binary stat scores)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryStatScores

from perception_mtl.data.labels import IGNORE
from perception_mtl.data.targets import Target
from perception_mtl.models.heads.dense import DenseHead
from perception_mtl.tasks.base import Task, labelled
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import blend, image_panel

EDGE_COLOUR = np.array([255, 230, 0], np.float32)


def semantic_edges(semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """semantic (B, H, W) int64 -> (edges (B, H, W) bool, valid (B, H, W) bool)."""
    padded = F.pad(semantic[:, None].float(), (1, 1, 1, 1), mode="replicate")[:, 0]
    neighbours = torch.stack([padded[:, 1:-1, 2:], padded[:, 1:-1, :-2], padded[:, 2:, 1:-1], padded[:, :-2, 1:-1]])
    centre = semantic.float()
    valid = (centre != IGNORE) & (neighbours != IGNORE).all(0)
    return (neighbours != centre).any(0) & valid, valid


class EdgeMetric(Metric):
    """Pixel precision, recall and F1 of edges over valid pixels."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.scores = BinaryStatScores(threshold=0.5)

    def update(self, prob: torch.Tensor, semantic: torch.Tensor) -> None:
        edges, valid = semantic_edges(semantic)
        self.scores.update(prob[valid], edges[valid].long())

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, _, fn, _ = self.scores.compute().double()
        precision, recall = tp / (tp + fp).clamp(min=1), tp / (tp + fn).clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {"f1": f1, "precision": precision, "recall": recall}

    def reset(self) -> None:
        super().reset()
        self.scores.reset()


@TASKS.register("edges")
class EdgesTask(Task):
    name = "edges"
    primary = "f1"
    loss_form = "classification"
    targets = {"semantic": Target(torch.int64, IGNORE)}
    directions = {"f1": True, "precision": True, "recall": True}

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return DenseHead(channels, strides, 1, self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        edges, valid = semantic_edges(batch["semantic"][has])
        logits, target = output[has][:, 0].float()[valid], edges[valid].float()
        if target.numel() == 0:
            return {}
        positive = target.mean()  # HED: positives weighted by the share of negatives and vice versa
        weight = torch.where(target > 0, 1 - positive, positive)
        return {"bce": F.binary_cross_entropy_with_logits(logits, target, weight=weight) * 2}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Edge probability (B, H, W)."""
        return torch.sigmoid(F.interpolate(output.float(), size=out_size, mode="bilinear", align_corners=False))[:, 0]

    def metric(self) -> Metric:
        return EdgeMetric()

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["semantic"][has])

    def truth(self, batch: dict, i: int) -> torch.Tensor | None:
        """The boundaries of the frame's semantic labels (H, W), 1 on an edge."""
        if not labelled(batch, self.name)[i]:
            return None
        edges, _ = semantic_edges(batch["semantic"][i:i + 1])
        return edges[0].float()

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """Edge probability as the opacity of yellow over the darkened image."""
        darkened = blend(image, np.zeros_like(image), 0.5)
        image_panel(ax, blend(darkened, np.broadcast_to(EDGE_COLOUR, image.shape), prediction.numpy()),
                    "edges (probability)")
