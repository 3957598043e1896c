"""The run's parts from its config: the one place that turns a config into tasks, a model, a
balancer and data, so the trainer, checkpoint evaluation, the benchmark runner and the tools
build alike. The layers below never build from a whole config: a model receives its heads
(`models.build_model(cfg, heads)`), a balancer its name, tasks and parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from perception_mtl import models
from perception_mtl.balancing import build_balancer as balancer_by_name
from perception_mtl.balancing.base import Balancer
from perception_mtl.data.build import train_set, val_loaders
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.base import Task


@dataclass
class RunData:
    """The training set, its per-frame sampling weights (None: uniform; `data.mix`) and the
    validation loaders {part: (loader, tasks)}."""
    train: Dataset
    frame_weights: torch.Tensor | None
    val: dict[str, tuple[DataLoader, list[str]]]


def build_tasks(cfg: DictConfig) -> dict[str, Task]:
    """{task: Task} for `cfg.tasks`, in config order."""
    return {t: TASKS.get(t)(cfg) for t in cfg.tasks}


def build_model(cfg: DictConfig, tasks: dict[str, Task]) -> nn.Module:
    """The multi-task model of `cfg.model.sharing` with each task's head."""
    return models.build_model(cfg, {t: task.build_head for t, task in tasks.items()})


def build_balancer(cfg: DictConfig) -> Balancer:
    """The balancer `cfg.balancer.name` with `cfg.balancer.params` over `cfg.tasks`."""
    return balancer_by_name(cfg.balancer.name, list(cfg.tasks),
                            OmegaConf.to_container(cfg.balancer.params, resolve=True))


def build_data(cfg: DictConfig) -> RunData:
    """The run's training set and its validation loaders (first `data.val_limit` frames)."""
    train, weights = train_set(cfg)
    return RunData(train, weights, val_loaders(cfg, limit=cfg.data.val_limit))
