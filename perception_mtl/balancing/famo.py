"""FAMO: Liu, Liu, Jin, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

Task logits xi (init 0), z = softmax(xi). The model steps along the gradient of
  sum_i c z_i log(L_i - b_i + eps),   c = (sum_i z_i / (L_i - b_i + eps))^-1  (held constant),
i.e. effective weights c z_i / (L_i - b_i + eps) that sum to 1. After the step, with
delta_i = log(L_i^before - b_i + eps) - log(L_i^after - b_i + eps), xi takes an Adam step along
(dz/dxi)^T delta with weight decay gamma (the paper's regulariser; lr 0.025, gamma 1e-3 as in
its Algorithm 2). b_i = 0 (losses are non-negative here).

`update="same_batch"` is the paper's and the official code's choice: L^after is recomputed on
the same batch after the step (one extra forward without grad per step). `update="next_batch"`
uses the next step's losses, measured before its update, as L^after: no extra cost, noisier
because the batch differs.

Why not torchjd's `FAMO`: the same maths, but its Adam lives in a private attribute that
`state_dict` does not save (a resumed run would differ), and it needs every task in every batch.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.core.distributed import global_values
from perception_mtl.models.features import Features

EPS = 1e-8


@BALANCERS.register("famo")
@variants(update={"next_batch": "logits stepped on the next batch's losses"})
class FAMO(Balancer):
    def __init__(self, tasks: list[str], lr: float = 0.025, weight_decay: float = 1e-3,
                 update: str = "same_batch"):
        super().__init__(tasks)
        if update not in ("same_batch", "next_batch"):
            raise ValueError(f"famo update={update!r}; choose from ['next_batch', 'same_batch']")
        self.update = update
        self.logits = nn.Parameter(torch.zeros(len(tasks)))
        self.adam = torch.optim.Adam([self.logits], lr=lr, weight_decay=weight_decay)
        self.before: dict[str, float] = {}

    def optimizer_parameters(self) -> list[nn.Parameter]:
        return []  # FAMO steps its logits itself

    def _logit_step(self, after: dict[str, float]) -> None:
        tasks = [t for t in after if t in self.before]
        if not tasks:
            return
        device = self.logits.device
        idx = torch.tensor([self.tasks.index(t) for t in tasks], device=device)
        before = torch.tensor([self.before[t] + EPS for t in tasks], device=device)
        delta = torch.log(before) - torch.log(torch.tensor([after[t] + EPS for t in tasks], device=device))
        with torch.enable_grad():
            z = torch.softmax(self.logits[idx], dim=0)
            (grad,) = torch.autograd.grad(z, self.logits, grad_outputs=delta)
        self.logits.grad = grad
        self.adam.step()
        self.logits.grad = None

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        values = global_values(losses, self.tasks)  # the same logits and Adam state on every rank
        if self.update == "next_batch":
            self._logit_step(values)
        idx = torch.tensor([self.tasks.index(t) for t in losses], device=self.logits.device)
        z = torch.softmax(self.logits.detach()[idx], dim=0)
        shifted = torch.tensor([values[t] + EPS for t in losses], device=self.logits.device)
        weights = z / shifted / (z / shifted).sum()
        sum(w * loss for w, loss in zip(weights, losses.values())).backward()
        self.before = values
        return {"weights": dict(zip(losses, weights.tolist()))}

    def after_step(self, recompute: Callable[[], Losses]) -> None:
        if self.update == "same_batch":
            self._logit_step(global_values(recompute(), self.tasks))

    def get_extra_state(self) -> dict:
        return {"adam": self.adam.state_dict(), "before": dict(self.before)}

    def set_extra_state(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])
        self.before = dict(state["before"])
