"""The task interface: a head builder, a loss, post-processing and a metric, bundled by name."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from omegaconf import DictConfig
from torch import nn
from torchmetrics import Metric


class Task(ABC):
    """One prediction task. Subclasses set `name`, `directions` (metric -> higher is better)
    and implement the methods below. `batch["has"][name]` (B,) bool marks samples with labels:
    the others contribute nothing to the loss or the metric."""

    name: str = ""
    directions: dict[str, bool] = {}

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @abstractmethod
    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        ...

    @abstractmethod
    def loss(self, head: nn.Module, output, batch: dict) -> dict[str, torch.Tensor]:
        """Loss components (scalars) over labelled samples; {} when the batch has none."""
        ...

    @abstractmethod
    def predict(self, head: nn.Module, output, images: torch.Tensor, out_size: tuple[int, int]):
        """Post-processed predictions for input `images`, at resolution `out_size` (H, W)."""
        ...

    @abstractmethod
    def metric(self) -> Metric:
        ...

    @abstractmethod
    def update(self, metric: Metric, predictions, batch: dict) -> None:
        """Add labelled samples' predictions to `metric`."""
        ...


def labelled(batch: dict, task: str) -> torch.Tensor:
    """Bool mask (B,) of samples that carry labels for `task`; all False when no sample of the
    batch does (partial labels: collate lists only the tasks some sample carries)."""
    if task in batch["has"]:
        return batch["has"][task]
    return torch.zeros(batch["image"].shape[0], dtype=torch.bool)
