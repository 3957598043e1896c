"""The two-objective toy problem of the gradient-balancing papers, solved with our balancers.

The problem (CAGrad, Liu et al. NeurIPS 2021, Fig. 1; reused by Nash-MTL, ICML 2022, and FAMO,
NeurIPS 2023) lives on x = (x1, x2) in R^2. Above x2 = 0 each loss is a log-barrier valley,
below it a shallow quadratic bowl; a tanh gate blends the two:

  a(x2) = max(tanh(x2 / 2), 0),   b(x2) = max(-tanh(x2 / 2), 0)
  f1 = a * (log max(|tanh(x2) - (x1 + 7) / 2|, 5e-6) + 6) + b * (((x1 - 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20)
  f2 = a * (log max(|(7 - x1) / 2 - tanh(x2)|, 5e-6) + 6) + b * (((x1 + 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20)

The papers draw the Pareto set as the segment x2 = -8.3552, x1 in [-7, 7]; exactly, it is the curve
where the two gradients are opposite, x2 = `pareto_x2(x1)`, from -8.3551 at x1 = 0 to -8.4345 at
|x1| = 7. The mean loss is smallest at (0, -8.3551). `scale` multiplies f1 (1 in CAGrad's figure,
0.1 in Nash-MTL's and FAMO's); it leaves the Pareto set
where it is but moves the mean loss's optimum (to about (-5.73, -8.41) at 0.1; `outcome` measures the
distance to the unscaled one).

Every balancer sees the losses shifted by a constant, L_i = f_i + 21 * s_i (s = (scale, 1)), so
that they are positive: that changes no gradient, and is the floor FAMO's toy run subtracts
(its `min_losses`), without which FAMO's log(L_i) is undefined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from perception_mtl.balancing import build_balancer
from perception_mtl.models.features import Features

PARETO_X2 = -8.3552  # the papers' value for the Pareto set's x2
PARETO_X1 = (-7.0, 7.0)
OPTIMUM = (0.0, -8.3551)  # minimum of the mean loss (found numerically)
FLOOR = -21.0  # below every f_i; the shift that makes the losses positive
TASKS = ("f1", "f2")
CAGRAD_STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))  # CAGrad Fig. 1
NASH_STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))  # Nash-MTL and FAMO


def floor(t: torch.Tensor, low: float) -> torch.Tensor:
    """max(t, low) whose derivative is 1 at t == low, as the papers' `torch.clamp` had from 2018
    (pytorch#7049) until torch took the minimum-norm subgradient 0 (pytorch#184574, the torch
    pinned here): with 0, the gates' kink x2 = 0 passes no gradient and the Nash-MTL / FAMO
    start (0, 0) would stand still, where the papers' runs move."""
    return torch.where(t >= low, t, low)


def objectives(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """x (..., 2) -> (f1, f2) stacked on the last dimension (..., 2), f1 multiplied by `scale`."""
    x1, x2 = x[..., 0], x[..., 1]
    gate = torch.tanh(x2 / 2)
    above, below = floor(gate, 0.0), floor(-gate, 0.0)
    bowl = 0.01 * (x2 + 8) ** 2 - 20
    valley1 = torch.log(floor((torch.tanh(x2) - (x1 + 7) / 2).abs(), 5e-6)) + 6
    valley2 = torch.log(floor(((7 - x1) / 2 - torch.tanh(x2)).abs(), 5e-6)) + 6
    f1 = above * valley1 + below * ((x1 - 7) ** 2 / 10 + bowl)
    f2 = above * valley2 + below * ((x1 + 7) ** 2 / 10 + bowl)
    return torch.stack([scale * f1, f2], dim=-1)


class ToyModel(nn.Module):
    """x (2,) is the only, shared, parameter; no task has parameters of its own. The shared
    representation is x itself, so parameter and representation space coincide."""

    def __init__(self, start: tuple[float, float], scale: float = 1.0):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.scale = scale

    def forward_losses(self) -> tuple[Features, dict[str, torch.Tensor]]:
        """(the shared representation {0: x (2,)}, {task: scalar}), each f_i shifted by 21 * s_i to
        be positive (see the module docstring)."""
        rep = self.x * 1.0
        shift = -FLOOR * torch.tensor([self.scale, 1.0])
        # one graph per task: torchjd's mtl_backward differentiates each loss on its own
        losses = {t: objectives(rep, self.scale)[i] + shift[i] for i, t in enumerate(TASKS)}
        return Features({0: rep}, shared=True), losses

    def losses(self) -> dict[str, torch.Tensor]:
        """The losses of `forward_losses` alone."""
        return self.forward_losses()[1]

    def shared_parameters(self):
        return iter([self.x])

    def task_parameters(self, task: str):
        return iter([])


@dataclass(frozen=True)
class Method:
    """A balancer of ours with the settings of the toy figure (`params`, `note` says why)."""
    balancer: str
    params: dict
    note: str = ""


METHODS: dict[str, Method] = {
    "equal": Method("equal", {}),
    "mgda": Method("mgda", {}),
    "pcgrad": Method("pcgrad", {}),
    "cagrad": Method("cagrad", {"c": 0.5}, "c = 0.5 as in CAGrad's toy.py (our default 0.4)"),
    "nashmtl": Method("nashmtl", {}),
    "imtl_g": Method("imtl_g", {}),
    "aligned_mtl": Method("aligned_mtl", {}),
    "upgrad": Method("upgrad", {}),
    "dualproj": Method("dualproj", {}),
    "config": Method("config", {}),
    "gradvac": Method("gradvac", {}),
    "fairgrad": Method("fairgrad", {}),
    "famo": Method("famo", {"weight_decay": 0.0}, "gamma = 0 as in FAMO's toy run.sh (our default 1e-3)"),
}


@dataclass
class Run:
    """One trajectory: `path` (steps + 1, 2) of x, every `every`-th step and the last."""
    method: str
    start: tuple[float, float]
    path: torch.Tensor

    @property
    def end(self) -> tuple[float, float]:
        return float(self.path[-1, 0]), float(self.path[-1, 1])


def run(method: str, start: tuple[float, float], steps: int = 100_000, lr: float = 1e-3, scale: float = 1.0,
        every: int = 100) -> Run:
    """Adam on x from `start` for `steps` steps, the update direction from our balancer `method`."""
    spec = METHODS[method]
    model = ToyModel(start, scale)
    balancer = build_balancer(spec.balancer, list(TASKS), spec.params)
    opt = torch.optim.Adam([model.x], lr=lr)

    def recompute() -> dict[str, torch.Tensor]:  # FAMO's losses after the step
        with torch.no_grad():
            return model.losses()

    points = [model.x.detach().clone()]
    for step in range(1, steps + 1):
        opt.zero_grad()
        features, losses = model.forward_losses()
        balancer.backward(losses, features, model)
        opt.step()
        balancer.after_step(recompute)
        if step % every == 0 or step == steps:
            points.append(model.x.detach().clone())
    return Run(method, tuple(start), torch.stack(points))


def pareto_x2(x1: float) -> float:
    """x2 of the Pareto set at x1 in [-7, 7]: below x2 = 0 (gate b = -tanh(x2 / 2), b' its
    derivative, bowls q_i) the gradients are opposite where b' ((x1 - 7) q2 - (x1 + 7) q1) =
    14 b 0.02 (x2 + 8); solved by bisection on [-10, -6], where the left side changes sign."""
    def gap(x2: float) -> float:
        t = math.tanh(x2 / 2)
        bowl = 0.01 * (x2 + 8) ** 2 - 20
        q1, q2 = (x1 - 7) ** 2 / 10 + bowl, (x1 + 7) ** 2 / 10 + bowl
        return -(1 - t * t) / 2 * ((x1 - 7) * q2 - (x1 + 7) * q1) + 14 * t * 0.02 * (x2 + 8)
    lo, hi = -10.0, -6.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (gap(mid) > 0) == (gap(lo) > 0) else (lo, mid)
    return (lo + hi) / 2


def outcome(end: tuple[float, float], tol: float = 0.02) -> dict:
    """Where a trajectory ended: on the Pareto set (x1 in [-7, 7] widened by tol, x2 within tol of
    `pareto_x2(x1)`) or not, and its distance to the mean-loss optimum."""
    x1, x2 = end
    inside = PARETO_X1[0] - tol <= x1 <= PARETO_X1[1] + tol
    on_set = inside and abs(x2 - pareto_x2(max(PARETO_X1[0], min(PARETO_X1[1], x1)))) <= tol
    return {"end": [round(x1, 4), round(x2, 4)], "pareto": on_set,
            "dist_to_optimum": round(((x1 - OPTIMUM[0]) ** 2 + (x2 - OPTIMUM[1]) ** 2) ** 0.5, 4)}
