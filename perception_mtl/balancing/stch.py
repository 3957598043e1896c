"""STCH: Xi Lin et al., "Smooth Tchebycheff Scalarization for
Multi-Objective Optimization", ICML 2024, in the form of its multi-task code (LibMTL's STCH):

- warm-up (`warmup` epochs): L = sum_i log L_i (weights 1 / L_i); the losses of the last warm-up
  epoch are averaged into the nadir point n_i;
- then L = T * STCH_mu(log(L_i / n_i)) = T * mu * log sum_i exp(log(L_i / n_i) / mu), with torchjd's
  `STCH` (preference weights 1, ideal point 0), mu = 1 and 4 warm-up epochs as in that code.

Our trainer counts steps, so an "epoch" here is `period` steps (as for `dwa`, a labelled variant).
A task without a label in the whole last warm-up epoch takes its nadir from its first loss after
it. The nadir, the sums and the step count are buffers (checkpointed); the losses are the global
batch's (`distributed.global_values`), so every rank holds the same state.
"""
from __future__ import annotations

import torch
from torch import nn
from torchjd.scalarization import STCH

from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.core.distributed import global_values
from perception_mtl.models.features import Features


@BALANCERS.register("stch")
@variants("epochs of `period` steps")
class SmoothTchebycheff(Balancer):
    def __init__(self, tasks: list[str], mu: float = 1.0, warmup: int = 4, period: int = 50):
        super().__init__(tasks)
        if mu <= 0 or warmup < 1 or period < 1:
            raise ValueError(f"stch needs mu > 0, warmup >= 1 and period >= 1, got {mu}, {warmup}, {period}")
        self.mu, self.warmup, self.period = mu, warmup, period
        k = len(tasks)
        self.register_buffer("sums", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("nadir", torch.full((k,), float("nan"), dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _observe(self, values: dict[str, float]) -> None:
        """Average the losses of the last warm-up epoch into the nadir point."""
        if int(self.calls) >= (self.warmup - 1) * self.period:
            for t, v in values.items():
                self.sums[self.tasks.index(t)] += v
                self.counts[self.tasks.index(t)] += 1
        self.calls += 1
        if int(self.calls) == self.warmup * self.period:
            self.nadir.copy_(self.sums / self.counts)  # nan where a task was never labelled

    def weights(self, values: dict[str, float]) -> torch.Tensor:
        """dS/dL_i at the losses `values` (n,): 1/L_i in the warm-up, STCH's derivative after it."""
        losses = torch.tensor(list(values.values()), dtype=torch.float64, requires_grad=True)
        if int(self.calls) < self.warmup * self.period:
            total = losses.log().sum()
        else:
            idx = [self.tasks.index(t) for t in values]
            unseen = [i for i in idx if torch.isnan(self.nadir[i])]
            self.nadir[unseen] = losses.detach()[[idx.index(i) for i in unseen]]
            stch = STCH(self.mu, weights=torch.ones(len(values), dtype=torch.float64))
            total = len(values) * stch((losses / self.nadir[idx]).log())
        (grad,) = torch.autograd.grad(total, losses)
        return grad

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        values = global_values(losses, self.tasks)
        weights = self.weights({t: values[t] for t in losses}).float()
        sum(w * loss for w, loss in zip(weights, losses.values())).backward()
        self._observe({t: values[t] for t in losses})
        return {"weights": dict(zip(losses, weights.tolist()))}
