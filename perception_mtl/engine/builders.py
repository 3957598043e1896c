"""The run's parts from its config, and the checks a config must pass to build them: the one place
that turns a config into tasks, a model, a balancer and data, so the trainer, checkpoint
evaluation, the benchmark runner and the tools load and build alike. The layers below never see a
whole config to build from: a model receives its heads (`models.build_model(cfg, heads)`), a
balancer its name, tasks and parameters; config.py is the schema and the merge only.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import timm
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn
from torch.utils.data import DataLoader, Dataset

from perception_mtl import models
from perception_mtl.balancing import BALANCERS, build_balancer as balancer_by_name
from perception_mtl.balancing.base import Balancer
from perception_mtl.core.config import ConfigError, DEFAULTS, check_choice as choice, merge_config
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.data import DATASETS
from perception_mtl.data.build import train_set, val_loaders
from perception_mtl.data.det_classes import class_set
from perception_mtl.engine.schedule import SCHEDULES
from perception_mtl.models import SHARING
from perception_mtl.models.weights import PACKAGED
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.base import Task


def load_config(file: str | Path | None = None, overrides: list[str] | None = None,
                defaults: str | Path | None = DEFAULTS, base: Any = None) -> DictConfig:
    """`config.merge_config` (schema <- `base` <- `defaults` <- the method's YAML <- `file` <-
    `overrides`), then `check`: a config the run cannot use raises a ConfigError before any work."""
    cfg = merge_config(file, overrides, defaults, base)
    check(cfg)
    return cfg


def check(cfg: DictConfig) -> None:
    """Raise a ConfigError, naming the key and what is valid, for a value the schema's types admit
    but the run cannot use: a name no registry holds, balancer parameters the method refuses, a
    backbone timm does not know, bounds and combinations; each task checks its own section
    (`Task.check_config`)."""
    for task in cfg.tasks:
        choice("tasks", task, TASKS.names())
    if not cfg.tasks:
        raise ConfigError(f"tasks is empty: set the tasks to train, tasks=[<name>,...]; valid: {TASKS.names()}")
    choice("balancer.name", cfg.balancer.name, BALANCERS.names())
    try:
        balancer_by_name(cfg.balancer.name, list(cfg.tasks), OmegaConf.to_container(cfg.balancer.params))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"balancer.params: {err}") from err
    choice("model.branch", cfg.model.branch, ["neck", "backbone"])
    choice("model.sharing", cfg.model.sharing, list(SHARING))
    choice("model.soft.penalty", cfg.model.soft.penalty, ["params", "features"])
    if cfg.model.sharing != "hard" and cfg.balancer.params.get("space") == "representation":
        raise ConfigError(f"balancer.params.space=representation needs one representation shared by all tasks; "
                          f"model.sharing={cfg.model.sharing} has none: use balancer.params.space=parameter")
    choice("data.seg_classes", cfg.data.seg_classes, [7, 19])
    choice("train.nonfinite", cfg.train.nonfinite, ["stop", "skip"])
    for task, factor in cfg.train.loss_scale.items():
        choice("train.loss_scale", task, TASKS.names())  # a task the run does not train is ignored
        if not factor > 0:
            raise ConfigError(f"train.loss_scale.{task}={factor} must be > 0 (the factor on {task}'s loss)")
    choice("train.schedule", cfg.train.schedule, list(SCHEDULES))
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.train.device):
        raise ConfigError(f"train.device={cfg.train.device!r} is not valid; choose from auto, cpu, cuda, cuda:N")
    for task in cfg.aux_tasks:
        choice("aux_tasks", task, list(cfg.tasks))
    if cfg.aux_tasks and set(cfg.aux_tasks) == set(cfg.tasks):
        raise ConfigError(f"aux_tasks={list(cfg.aux_tasks)} leaves no main task; list fewer auxiliary tasks")
    _check_data(cfg)
    selection_metric(cfg)
    if not 0 < cfg.data.train_fraction <= 1:
        raise ConfigError(f"data.train_fraction={cfg.data.train_fraction} must be in (0, 1]")
    choice("wandb.mode", cfg.wandb.mode, [None, "online", "offline", "disabled"])
    if len(cfg.data.size) != 2 or min(cfg.data.size) < 32 or any(s % 32 for s in cfg.data.size):
        raise ConfigError(f"data.size={list(cfg.data.size)} must be [H, W], multiples of 32")
    for key in ("steps", "batch_size", "eval_every", "log_every", "checkpoint_every"):
        if cfg.train[key] < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {cfg.train[key]}")
    _check_model(cfg)
    _check_bounds(cfg)
    for name in TASKS.names():
        TASKS.get(name).check_config(cfg)


def selection_metric(cfg: DictConfig) -> str:
    """The val metric that picks best.pt: `train.best_metric`, else the primary metric of the first
    task that is not auxiliary; a ConfigError when it names a task the run does not train or a
    metric its task does not compute (best.pt would silently never be written)."""
    first = next(t for t in cfg.tasks if t not in cfg.aux_tasks)
    default = f"{first}/{TASKS.get(first).primary}"
    key = cfg.train.best_metric or default
    try:
        parsed = MetricKey.parse(key)
    except ValueError as err:
        raise ConfigError(f"train.best_metric: {err}") from err
    if parsed.task not in cfg.tasks:
        raise ConfigError(f"train.best_metric={key} names task {parsed.task!r}, which this run does not train "
                          f"(tasks={list(cfg.tasks)}); name one of its metrics, or null for {default}")
    choice("train.best_metric's metric", parsed.metric, sorted(TASKS.get(parsed.task).directions))
    return key


# numeric settings the schema's types admit at values no run can use (found by tests/test_fuzz_config.py):
# key -> (test, the valid range in words); null (an Optional's "none") passes. A task's own keys
# declare theirs on its `Config` (tasks/base.py's `bounded`).
BOUNDS: dict[str, tuple[Callable[[float], bool], str]] = {
    "data.min_box_size": (lambda v: v >= 1, ">= 1 (torchvision's SanitizeBoundingBoxes)"),
    "data.hflip": (lambda v: 0 <= v <= 1, "in [0, 1] (a probability)"),
    "data.color_jitter": (lambda v: v >= 0, ">= 0"),
    "data.workers": (lambda v: v >= 0, ">= 0 (0: load in the main process)"),
    "data.train_limit": (lambda v: v >= 1, ">= 1 frame, or null (all)"),
    "data.val_limit": (lambda v: v >= 1, ">= 1 frame, or null (all)"),
    "model.neck_channels": (lambda v: v >= 1, ">= 1"),
    "model.head_channels": (lambda v: v >= 8 and v % 8 == 0, "a multiple of 8 (the dense heads' GroupNorm: 8 groups)"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optim.min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "optim.clip_grad": (lambda v: v > 0, "> 0"),
    "train.threads": (lambda v: v >= 1, ">= 1, or null (torch's default)"),
    "train.affinity_every": (lambda v: v >= 0, ">= 0 (0: off)"),
    "train.early_stopping.patience": (lambda v: v >= 0, ">= 0 (0: off)"),
    "wandb.images": (lambda v: v >= 0, ">= 0"),
}


def _check_bounds(cfg: DictConfig) -> None:
    """Every interpolation resolved, every number of the config finite (NaN or Inf would reach the
    weights) and those of BOUNDS in their range."""
    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for k, v in enumerate(node):
                walk(v, f"{key}[{k}]")
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{key}={node} must be a finite number")

    try:
        values = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:  # an interpolation, ${...}, that names no key
        raise ConfigError(f"{err.full_key}: {' '.join(str(err.msg).split())}") from err
    walk(values, "")
    for key, (valid, words) in BOUNDS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and not valid(value):
            raise ConfigError(f"{key}={value} must be {words}")


def _check_data(cfg: DictConfig) -> None:
    """Checks of `data.dataset`, `data.mix`, `data.drop_labels` and the loader options."""
    choice("data.dataset", cfg.data.dataset, DATASETS.names())
    choice("data.on_bad_label", cfg.data.on_bad_label, ["error", "skip"])
    choice("data.depth_crop", cfg.data.depth_crop, [None, "garg", "eigen"])
    for task, fraction in cfg.data.drop_labels.items():
        choice("data.drop_labels", task, TASKS.names())  # a task the run does not train is ignored
        if not 0 <= fraction <= 1:
            raise ConfigError(f"data.drop_labels.{task}={fraction} must be in [0, 1] (the fraction of frames "
                              "whose labels are removed)")
    names = []
    for k, entry in enumerate(cfg.data.mix):
        choice(f"data.mix[{k}].dataset", entry.dataset, DATASETS.names())
        if OmegaConf.is_missing(entry, "root"):
            raise ConfigError(f"data.mix[{k}] ({entry.dataset}) has no root; give each entry its folder, e.g. "
                              "{dataset: kitti, root: datasets/kitti, tasks: [det]}")
        for task in entry.tasks:
            choice(f"data.mix[{k}].tasks", task, list(cfg.tasks))
        if not entry.weight > 0:
            raise ConfigError(f"data.mix[{k}].weight={entry.weight} must be > 0")
        names.append(entry.name or entry.dataset)
    if len(set(names)) < len(names):
        raise ConfigError(f"data.mix names {names} repeat; give entries of the same dataset a `name`")
    served = {t for entry in cfg.data.mix for t in (entry.tasks or cfg.tasks)}
    if cfg.data.mix and set(cfg.tasks) - served:
        raise ConfigError(f"tasks {sorted(set(cfg.tasks) - served)} have no dataset in data.mix; add them to an "
                          "entry's tasks or drop them from tasks")
    class_set(cfg)  # data.det_classes: one detection class set that every dataset with det labels


def _check_model(cfg: DictConfig) -> None:
    """Checks of the backbone, its weights and freezing."""
    if not timm.is_model(cfg.model.backbone):
        raise ConfigError(f"model.backbone={cfg.model.backbone!r} is not a timm model; "
                          f"see timm.list_models(), e.g. resnet18, efficientnet_b0, convnext_atto, test_resnet")
    choice("model.weights", cfg.model.weights, [None, "imagenet"])
    if cfg.model.weights == "imagenet" and cfg.model.backbone not in PACKAGED:
        raise ConfigError(f"model.weights=imagenet: no packaged weights for model.backbone={cfg.model.backbone!r}; "
                          f"backbones with packaged weights: {sorted(PACKAGED)}. Add model.weights=null to start "
                          "from random weights, or use model.pretrained_path=FILE for a local timm checkpoint")
    if cfg.model.weights is not None and (cfg.model.pretrained or cfg.model.pretrained_path):
        raise ConfigError("model.weights, model.pretrained and model.pretrained_path are three sources of weights; "
                          "set one")
    if cfg.model.freeze_at < 0:
        raise ConfigError(f"model.freeze_at={cfg.model.freeze_at} must be >= 0 (0: nothing frozen)")
    if not cfg.optim.backbone_lr_mult >= 0:
        raise ConfigError(f"optim.backbone_lr_mult={cfg.optim.backbone_lr_mult} must be >= 0")


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
