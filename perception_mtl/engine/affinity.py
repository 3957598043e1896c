"""Inter-task affinity by lookahead (TAG: Fifty et al., "Efficiently Identifying Task Groupings
for Multi-Task Learning", NeurIPS 2021, eq. 3).

For each task i: step the shared parameters along task i's gradient alone,
theta' = theta - lr * grad_theta L_i, recompute every task's loss on the same batch, and
  Z_{i->j} = (1 - L_j(theta') / L_j(theta)) / lr,
then restore theta (and the normalisation buffers the extra forwards touched). Z > 0: a step
for task i also lowers task j's loss (i helps j); Z < 0: it raises it. TAG uses the
optimizer's own update; we use a plain gradient step with the current learning rate and
divide by it, so the numbers are comparable across schedules (normalised per unit of lr).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def lookahead_affinity(model: nn.Module, losses: dict[str, torch.Tensor],
                       recompute: Callable[[], dict[str, torch.Tensor]], lr: float) -> dict[str, float]:
    """{"affinity/<i>-><j>": Z_ij} for every ordered task pair (i == j included). Keeps the graph."""
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    grads = {t: torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True) for t, loss in losses.items()}
    before = {t: float(loss.detach()) for t, loss in losses.items()}
    params = [p.detach().clone() for p in shared]
    buffers = [b.detach().clone() for b in model.buffers()]
    out = {}
    # `.data`: the step's graph saved these parameters; editing through .data leaves autograd's
    # version counters alone, and the exact restore below gives the graph its values back.
    with torch.no_grad():
        for i, grad in grads.items():
            for p, g in zip(shared, grad):
                if g is not None:
                    p.data.sub_(lr * g)
            after = recompute()
            for j, value in after.items():
                if before.get(j):
                    out[f"affinity/{i}->{j}"] = (1.0 - float(value) / before[j]) / lr
            for p, saved in zip(shared, params):
                p.data.copy_(saved)
            for b, saved in zip(model.buffers(), buffers):
                b.data.copy_(saved)
    return out
