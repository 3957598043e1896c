"""Dynamic Weight Average: Liu, Johns & Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019, eq. 7:

  lambda_k(t) = K exp(w_k(t-1) / T) / sum_i exp(w_i(t-1) / T),   w_k(t-1) = L_k(t-1) / L_k(t-2)

with L_k(t) the average loss of task k over epoch t and uniform weights for the first two epochs.
Our trainer counts steps, so an "epoch" here is `period` steps (a config value).

Why not torchjd's `DWA`: the maths is the same, but it needs every task in every batch (we allow
partially labelled batches) and keeps its history in private attributes that `state_dict` does
not save, so a resumed run would not match. Here the history is in buffers.
"""
from __future__ import annotations

import torch
from torch import nn

from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.core.distributed import global_values
from perception_mtl.models.features import Features


@BALANCERS.register("dwa")
@variants("epochs of `period` steps")
class DynamicWeightAverage(Balancer):
    def __init__(self, tasks: list[str], temperature: float = 2.0, period: int = 50):
        super().__init__(tasks)
        if temperature <= 0 or period < 1:
            raise ValueError(f"dwa needs temperature > 0 and period >= 1, got {temperature}, {period}")
        self.temperature, self.period = temperature, period
        k = len(tasks)
        self.register_buffer("sums", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("history", torch.full((2, k), float("nan"), dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def current_weights(self, present: list[str]) -> dict[str, float]:
        """lambda_k for the tasks in `present` (all 1 until two full periods are averaged)."""
        idx = torch.tensor([self.tasks.index(t) for t in present])
        rates = self.history[1, idx] / self.history[0, idx]
        if not torch.isfinite(rates).all():
            return {t: 1.0 for t in present}
        lam = len(present) * torch.softmax(rates / self.temperature, dim=0)
        return dict(zip(present, lam.tolist()))

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        weights = self.current_weights(list(losses))
        sum(weights[t] * loss for t, loss in losses.items()).backward()
        for t, value in global_values(losses, self.tasks).items():  # the same history on every rank
            i = self.tasks.index(t)
            self.sums[i] += value
            self.counts[i] += 1
        self.calls += 1
        if int(self.calls) % self.period == 0:
            average = torch.where(self.counts > 0, self.sums / self.counts.clamp_min(1), torch.nan)
            self.history.copy_(torch.stack([self.history[1], average]))
            self.sums.zero_()
            self.counts.zero_()
        return {"weights": weights}
