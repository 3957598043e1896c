"""The optimizer of a run: AdamW over the model's and the balancer's parameter groups, with linear
warm-up then cosine decay."""
from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from perception_mtl.balancing.base import Balancer


def param_groups(model: torch.nn.Module, balancer: Balancer, optim: DictConfig) -> list[dict]:
    """Backbone (lr times `optim.backbone_lr_mult`), the rest of the model, the balancer's own
    parameters; frozen parameters are left out."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [p for n, p in named if n.split(".")[0] in ("backbone", "backbones")]
    rest = [p for n, p in named if n.split(".")[0] not in ("backbone", "backbones")]
    groups = [{"params": rest, "weight_decay": optim.weight_decay}]
    if backbone:
        groups.append({"params": backbone, "weight_decay": optim.weight_decay, "lr": optim.lr * optim.backbone_lr_mult})
    if balancer.optimizer_parameters():
        groups.append({"params": balancer.optimizer_parameters(), "weight_decay": 0.0})
    return groups


def lr_factor(step: int, optim: DictConfig, total: int) -> float:
    """Linear warm-up over `optim.warmup_steps`, then cosine decay to `optim.min_lr_ratio` at `total`."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, total - optim.warmup_steps)
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_optimizer(model: torch.nn.Module, balancer: Balancer, optim: DictConfig,
                    total: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `param_groups` and its `lr_factor` schedule over `total` steps."""
    optimizer = torch.optim.AdamW(param_groups(model, balancer, optim), lr=optim.lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, optim, total))
