"""Static weighting: L = sum_i alpha_i L_i with fixed alpha_i (`equal`: all ones)."""
from __future__ import annotations

import torch
from torch import nn

from perception_mtl.balancing.base import Balancer
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.models.features import Features


@BALANCERS.register("static")
@variants()
class StaticBalancer(Balancer):
    """Fixed per-task weights `weights` ({task: alpha}); tasks not named get 1."""

    def __init__(self, tasks: list[str], weights: dict[str, float] | None = None):
        super().__init__(tasks)
        unknown = sorted(set(weights or {}) - set(tasks))
        if unknown:
            raise ValueError(f"weights for {unknown}, which are not among the tasks {list(tasks)}")
        self.weights = {t: float((weights or {}).get(t, 1.0)) for t in tasks}

    def backward(self, losses: dict[str, torch.Tensor], features: Features, model: nn.Module) -> dict:
        total = sum(self.weights[t] * loss for t, loss in losses.items())
        total.backward()
        return {"weights": {t: self.weights[t] for t in losses}}


@BALANCERS.register("equal")
@variants()
class EqualBalancer(StaticBalancer):
    """All task weights 1."""

    def __init__(self, tasks: list[str]):
        super().__init__(tasks, None)
