"""Loss-space methods that torchjd's scalarizers implement faithfully; used as they are.

- `rlw`: Random Loss Weighting (Lin et al., TMLR 2022, Algorithm 2): weights softmax(N(0, I))
  drawn afresh each step (from torch's global RNG, so seeded and resumable).
- `gls`: Geometric Loss Strategy (Chennupati et al., CVPRW 2019): L = (prod_i L_i)^(1/T).
- `imtl_l`: IMTL-L, the loss-balance half of Impartial Multi-Task Learning (Liu et al., ICLR 2021):
  L = sum_i (e^{s_i} L_i - s_i) with learnable s_i (init 0) in the trainer's optimizer (own group,
  no weight decay); at the optimum e^{s_i} = 1 / L_i, every scaled loss equals 1. The s_i are
  parameters, so `state_dict` checkpoints them.

Any scalarizer S(L_1..L_T) is applied through its effective weights w_i = dS/dL_i at this
step's losses: by the chain rule, backpropagating sum_i w_i L_i gives exactly grad S, and the
weights are what gets logged. The same backward through S fills the gradient of the scalarizer's
own parameters (IMTL-L's s_i).
"""
from __future__ import annotations

import torch
from torch import nn
from torchjd.scalarization import IMTLL, GeometricMean, Random, Scalarizer

from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.core.distributed import global_values
from perception_mtl.models.features import Features


class ScalarizerBalancer(Balancer):
    """Backpropagates a torchjd scalarizer of the task losses."""

    def __init__(self, tasks: list[str], scalarizer: Scalarizer):
        super().__init__(tasks)
        self.scalarizer = scalarizer

    def inputs(self, present: list[str], values: list[float]) -> tuple[torch.Tensor, list[int]]:
        """The scalarizer's input (a leaf that requires grad) and where the present tasks sit in it."""
        return torch.tensor(values, dtype=torch.float32, requires_grad=True), list(range(len(values)))

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        glob = global_values(losses, self.tasks)  # the weights follow the global batch's losses
        values, where = self.inputs(list(losses), [glob[t] for t in losses])
        self.scalarizer(values).backward()
        weights = values.grad[where]
        sum(w * loss for w, loss in zip(weights, losses.values())).backward()
        return {"weights": dict(zip(losses, weights.tolist()))}


@BALANCERS.register("rlw")
@variants()
class RandomLossWeighting(ScalarizerBalancer):
    def __init__(self, tasks: list[str]):
        super().__init__(tasks, Random())


@BALANCERS.register("gls")
@variants()
class GeometricLossStrategy(ScalarizerBalancer):
    def __init__(self, tasks: list[str]):
        super().__init__(tasks, GeometricMean())


@BALANCERS.register("imtl_l")
@variants()
class IMTLLoss(ScalarizerBalancer):
    def __init__(self, tasks: list[str]):
        super().__init__(tasks, IMTLL(len(tasks)))

    def inputs(self, present: list[str], values: list[float]) -> tuple[torch.Tensor, list[int]]:
        """All T values; a task without a label in this batch gets L = e^{-s}, where its term's
        derivative in s (e^s L - 1) is zero, so its scale does not move."""
        where = [self.tasks.index(t) for t in present]
        full = torch.exp(-self.scalarizer.log_scale.detach()).clone()
        full[where] = torch.tensor(values, device=full.device)
        return full.requires_grad_(), where
