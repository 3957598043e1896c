"""Loss-space methods that torchjd's scalarizers implement faithfully; used as they are.

- `rlw`: Random Loss Weighting (Lin et al., TMLR 2022, Algorithm 2): weights softmax(N(0, I))
  drawn afresh each step (from torch's global RNG, so seeded and resumable).
- `gls`: Geometric Loss Strategy (Chennupati et al., CVPRW 2019): L = (prod_i L_i)^(1/T).

Any scalarizer S(L_1..L_T) is applied through its effective weights w_i = dS/dL_i at this
step's losses: by the chain rule, backpropagating sum_i w_i L_i gives exactly grad S, and the
weights are what gets logged.
"""
from __future__ import annotations

import torch
from torch import nn
from torchjd.scalarization import GeometricMean, Random, Scalarizer

from perception_mtl.balancing import BALANCERS
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.engine.distributed import global_values


class ScalarizerBalancer(Balancer):
    """Backpropagates a torchjd scalarizer of the task losses."""

    def __init__(self, tasks: list[str], scalarizer: Scalarizer):
        super().__init__(tasks)
        self.scalarizer = scalarizer

    def backward(self, losses: Losses, model: nn.Module) -> dict:
        glob = global_values(losses, self.tasks)  # the weights follow the global batch's losses
        values = torch.tensor([glob[t] for t in losses], dtype=torch.float32, requires_grad=True)
        (weights,) = torch.autograd.grad(self.scalarizer(values), values)
        sum(w * loss for w, loss in zip(weights, losses.values())).backward()
        return {"weights": dict(zip(losses, weights.tolist()))}


@BALANCERS.register("rlw")
class RandomLossWeighting(ScalarizerBalancer):
    def __init__(self, tasks: list[str]):
        super().__init__(tasks, Random())


@BALANCERS.register("gls")
class GeometricLossStrategy(ScalarizerBalancer):
    def __init__(self, tasks: list[str]):
        super().__init__(tasks, GeometricMean())
