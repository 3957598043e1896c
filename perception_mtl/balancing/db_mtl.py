"""DB-MTL: Baijiong Lin et al., "Dual-Balancing for Multi-Task
Learning" (arXiv 2308.12029, 2023), as the authors' code (LibMTL's DB_MTL) runs it.

Loss-scale balancing: each task contributes log(L_i + 1e-8), so its gradient is g_i / L_i.
Gradient-magnitude balancing, on the shared parameters: per task an EMA of those gradients,
  h_i <- g_i + beta_t (h_i - g_i),   beta_t = beta / t^beta_sigma   (h_i = 0 before the first step)
then every h_i is scaled to the largest norm, alpha_i = max_j |h_j| / (|h_i| + 1e-8), and the
shared parameters step along sum_i alpha_i h_i. Task-specific parameters get the gradient of their
own log-loss. beta = 0.9 and beta_sigma = 0 are the code's defaults; t counts the steps in which
task i had a label (partially labelled batches leave the others' h_j as they are).

Parameter space only (the authors' code rejects representation gradients: an EMA of gradients
on the features of different batches is meaningless). The EMA holds T copies of the shared
gradient (checkpointed). Under DDP the per-task Jacobians are averaged over ranks before the
EMA, so every rank holds the same state. The weights logged are the alpha_i.
"""
from __future__ import annotations

import torch
from torch import nn
from torchjd.autojac import mtl_backward

from perception_mtl.core import distributed
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.models.features import Features

EPS = 1e-8


@BALANCERS.register("db_mtl")
@variants()
class DBMTL(Balancer):
    spaces = ("parameter",)

    def __init__(self, tasks: list[str], beta: float = 0.9, beta_sigma: float = 0.0):
        super().__init__(tasks)
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(f"db_mtl needs 0 <= beta < 1 and beta_sigma >= 0, got {beta}, {beta_sigma}")
        self.beta, self.beta_sigma = beta, beta_sigma
        self.register_buffer("steps", torch.zeros(len(tasks), dtype=torch.long))
        self.ema: list[torch.Tensor] = []  # per shared parameter: (T, *shape)
        self.averaged: list[nn.Parameter] = []

    def _update(self, shared: list[nn.Parameter], idx: torch.Tensor) -> None:
        """Fold this step's Jacobians (`p.jac`, rows in `idx`'s order) into the EMA."""
        if not self.ema:
            self.ema = [p.new_zeros(len(self.tasks), *p.shape) for p in shared]
        self.ema = [h.to(p.device) for h, p in zip(self.ema, shared)]  # a checkpoint loads on the CPU
        self.steps[idx] += 1
        rate = self.beta / self.steps[idx].double() ** self.beta_sigma  # (n,)
        distributed.all_reduce_mean_many(p.jac for p in shared)  # the global batch's Jacobians
        for h, p in zip(self.ema, shared):
            jac = p.jac
            rate_p = rate.to(jac).view(-1, *[1] * p.dim())
            h[idx] = jac + rate_p * (h[idx] - jac)
            del p.jac

    def averaged_parameters(self) -> list[nn.Parameter]:
        return self.averaged

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        distributed.require_same_tasks(list(losses), self.tasks)
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        mtl_backward([torch.log(loss + EPS) for loss in losses.values()], features.tensors(),
                     tasks_params=[list(model.task_parameters(t)) for t in losses], shared_params=shared)
        idx = torch.tensor([self.tasks.index(t) for t in losses])
        self._update(shared, idx)
        norms = torch.stack([h[idx].flatten(1).square().sum(1) for h in self.ema]).sum(0).sqrt()  # (n,)
        alpha = norms.max() / (norms + EPS)
        for h, p in zip(self.ema, shared):
            g = torch.tensordot(alpha.to(h), h[idx], dims=1)
            p.grad = g if p.grad is None else p.grad + g
        self.averaged = shared  # from the global Jacobians: the same on every rank
        return {"weights": dict(zip(losses, alpha.tolist()))}

    def get_extra_state(self) -> dict:
        return {"ema": [h.clone() for h in self.ema]}

    def set_extra_state(self, state: dict) -> None:
        self.ema = list(state["ema"])
