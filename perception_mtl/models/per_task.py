"""Per-task networks: one backbone, FPN and head per task (the base of soft sharing and
cross-stitch). Each task's network is initialised under its own seed, derived from
(`train.seed`, the task's name), so a task's network starts from the same weights whichever other
tasks are trained beside it or are registered."""
from __future__ import annotations

import itertools
import zlib
from typing import Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from perception_mtl.models.backbone import Backbone
from perception_mtl.models.features import Features
from perception_mtl.models.heads import HeadBuilder
from perception_mtl.models.necks import FPN


def task_seed(seed: int, task: str) -> int:
    """The seed of `task`'s network in run seed `seed`: a stable hash of the name (CRC-32, not
    Python's salted `hash`), so no other task's presence or registration moves it."""
    return seed * 1009 + zlib.crc32(task.encode())


class PerTaskModel(nn.Module):
    """images (B, 3, H, W) -> {task: raw head output}, one backbone + FPN + head per task.

    Subclasses define `shared_features` (how the columns interact). Nothing is one tensor shared
    by all tasks, so their `Features` are not shared: representation-space balancers need hard
    sharing; parameter-space ones treat every backbone (and any coupling unit) as shared. The
    levels, {(task, stride): features} that only the task's own FPN reads, are the cut through
    which torchjd's `mtl_backward` reaches the shared parameters.
    """

    def __init__(self, cfg: DictConfig, heads: dict[str, HeadBuilder]):
        super().__init__()
        m = cfg.model
        self.backbones, self.necks, self.heads = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for t, build_head in heads.items():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task_seed(cfg.train.seed, t))
                self.backbones[t] = Backbone.from_config(m)
                strides, channels = self.backbones[t].strides, self.backbones[t].channels
                self.necks[t] = FPN(channels, strides, m.neck_channels)
                self.heads[t] = build_head(m.neck_channels, strides)

    def forward(self, images: torch.Tensor) -> dict:
        return self.task_outputs(self.shared_features(images))

    @staticmethod
    def cut(feats: dict[str, dict[int, torch.Tensor]]) -> Features:
        """{task: {stride: features}} -> their `Features`: aliases that only the task's FPN reads."""
        return Features({(t, s): f.view_as(f) for t, levels in feats.items() for s, f in levels.items()},
                        shared=False)

    def task_outputs(self, features: Features) -> dict:
        """`shared_features`' result -> {task: raw head output}."""
        levels = {t: {s: f for (u, s), f in features.levels.items() if u == t} for t in self.heads}
        return {t: self.heads[t](self.necks[t](levels[t])) for t in self.heads}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Every backbone: what couples the tasks (the penalty, or the cross-stitch units)."""
        yield from self.backbones.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """The task's FPN and head."""
        yield from self.necks[task].parameters()
        yield from self.heads[task].parameters()

    def last_shared_parameters(self) -> Iterator[nn.Parameter]:
        """Each backbone's last stage (GradNorm's W: a task's gradient reaches its own)."""
        for backbone in self.backbones.values():
            stages = [m for m in backbone.body.children() if any(True for _ in m.parameters())]
            yield from stages[-1].parameters()

    def coupling_losses(self, features: Features) -> dict[str, torch.Tensor]:
        """Terms outside the task losses that the trainer adds to the gradient ({} here)."""
        return {}

    @staticmethod
    def pairs(tasks) -> Iterator[tuple[str, str]]:
        return itertools.combinations(list(tasks), 2)
