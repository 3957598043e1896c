"""GradDrop: Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign:
Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020, Algorithm 1.

`space="representation"` (default, the paper's form): GradDrop sits at the activations A the
heads read (our shared representation, each level (B, C, H, W)). Per task i and per element of A,
  S_i = sum over the batch of sgn(A) * dL_i/dA               (C, H, W)
  P   = 1/2 (1 + sum_i S_i / sum_i |S_i|)                     purity of the positive sign
  M_i = [P > U] [S_i > 0] + [P < U] [S_i < 0],   U ~ U(0, 1) one draw per element (f = identity)
and every sample's gradient at that element becomes sum_i (l + (1 - l) M_i) dL_i/dA (leak l, 0 in
the paper's multi-task runs); the result goes through the backbone in one backward.
`space="parameter"` (a labelled variant): torchjd's `GradDrop` on the Jacobian of the shared
parameters, i.e. purity and mask per parameter, without sgn(A) or a batch.

There are no task weights; the log holds each task's projection <d, g_i> / |g_i|^2 of the
direction d. Under DDP, S is summed over ranks (one mask for the global batch; U is drawn from the
torch RNG, identical on every rank).
"""
from __future__ import annotations

import torch
from torch import nn
from torchjd.aggregation import GradDrop

from perception_mtl.core import distributed
from perception_mtl.balancing.aggregators import AggregatorBalancer
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.gradients import backward_through_shared, representation, task_gradients
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.models.features import Features

PARAMETER = "parameter space (torchjd GradDrop: purity per parameter)"


def dropped(grads: torch.Tensor, activations: torch.Tensor, leak: float) -> torch.Tensor:
    """Per-task gradients (T, B, ...) at activations (B, ...) -> GradDrop's gradient (B, ...)."""
    signed = (grads * activations.sign()).sum(dim=1)  # S_i (T, ...)
    distributed.all_reduce_sum(signed)
    purity = 0.5 * (1 + signed.sum(0) / signed.abs().sum(0))  # nan where every S_i is 0: all dropped
    draw = torch.rand_like(purity)
    mask = ((purity > draw) & (signed > 0)) | ((purity < draw) & (signed < 0))
    keep = leak + (1 - leak) * mask.to(grads.dtype)
    return (keep.unsqueeze(1) * grads).sum(0)


class GradDropBalancer(Balancer):
    """The paper's GradDrop on the shared representation (see the module docstring)."""

    def __init__(self, tasks: list[str], leak: float = 0.0):
        super().__init__(tasks)
        if not 0 <= leak <= 1:
            raise ValueError(f"graddrop leak={leak} must be in [0, 1]")
        self.leak = leak

    def direction(self, jac: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """Jacobian J (T, D) on the flattened features `feats` -> the dropped direction (D,)."""
        pieces = torch.split(jac, [f.numel() for f in feats], dim=1)
        return torch.cat([dropped(p.view(len(jac), *f.shape), f.detach().to(jac.dtype), self.leak).flatten()
                          for p, f in zip(pieces, feats)])

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        distributed.require_same_tasks(list(losses), self.tasks)
        jac, own = task_gradients(losses, features, model)
        direction = self.direction(jac, representation(features))
        backward_through_shared(model, features, direction, own, {t: 1.0 for t in losses})
        projection = distributed.all_reduce_sum(jac @ direction)
        weights = projection / distributed.all_reduce_sum((jac * jac).sum(dim=1)).clamp_min(1e-20)
        return {"weights": dict(zip(losses, weights.tolist()))}


@BALANCERS.register("graddrop")
@variants(space={"parameter": PARAMETER})
def graddrop(tasks: list[str], space: str = "representation", leak: float = 0.0,
             parallel_chunk_size: int | None = None) -> Balancer:
    """GradDrop in the paper's form (representation) or torchjd's on the parameters."""
    if space == "representation":
        return GradDropBalancer(tasks, leak)
    if space != "parameter":
        raise ValueError(f"graddrop space={space!r}; choose from ['parameter', 'representation']")
    return AggregatorBalancer(tasks, lambda n: GradDrop(leak=torch.full((n,), float(leak))), "parameter",
                              parallel_chunk_size)


graddrop.spaces = ("representation", "parameter")
