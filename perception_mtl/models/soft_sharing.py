"""Soft parameter sharing: one network per task, coupled by an L2 penalty.

`model.soft.penalty=params`: beta * sum over task pairs of ||theta_i - theta_j||^2 over the
corresponding backbone parameters (Duong et al. 2015; the two-task formula
L = sum_i alpha_i L_i + beta ||theta_1 - theta_2||^2 generalised to T tasks).
`model.soft.penalty=features`: beta * sum over task pairs of the mean squared difference of
the tasks' backbone features at `model.soft.strides`.
The penalty is not a task loss: the trainer adds its gradient beside the balancer's and logs
it as `train/coupling/<name>`.
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from perception_mtl.models.features import Features
from perception_mtl.models.heads import HeadBuilder
from perception_mtl.models.per_task import PerTaskModel


class SoftSharingModel(PerTaskModel):
    def __init__(self, cfg: DictConfig, heads: dict[str, HeadBuilder]):
        super().__init__(cfg, heads)
        soft = cfg.model.soft
        self.beta, self.penalty, self.strides = float(soft.beta), soft.penalty, list(soft.strides)

    def shared_features(self, images: torch.Tensor) -> Features:
        """images (B, 3, H, W) -> each task's backbone levels, {(task, stride): (B, C, H/s, W/s)}."""
        return self.cut({t: backbone(images) for t, backbone in self.backbones.items()})

    def distance(self) -> torch.Tensor:
        """sum over task pairs of ||theta_i - theta_j||^2 over the backbones' parameters."""
        total = torch.zeros((), device=next(self.parameters()).device)
        for a, b in self.pairs(self.backbones):
            for p, q in zip(self.backbones[a].parameters(), self.backbones[b].parameters()):
                total = total + (p - q).pow(2).sum()
        return total

    def coupling_losses(self, features: Features) -> dict[str, torch.Tensor]:
        """{"params" | "features": beta * penalty}, the latter on `features` (`shared_features`'
        result); {} when beta is 0."""
        if self.beta == 0 or len(self.backbones) < 2:
            return {}
        if self.penalty == "params":
            return {"params": self.beta * self.distance()}
        total = torch.zeros((), device=next(self.parameters()).device)
        levels = features.levels
        for a, b in self.pairs(self.backbones):
            for s in self.strides:
                total = total + (levels[a, s] - levels[b, s]).float().pow(2).mean()
        return {"features": self.beta * total}
