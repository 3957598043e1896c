"""Hard parameter sharing: one timm backbone (and optionally one FPN) feeding every task head."""
from __future__ import annotations

from typing import Any, Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from perception_mtl.models.backbone import Backbone
from perception_mtl.models.features import Features
from perception_mtl.models.heads import HeadBuilder
from perception_mtl.models.necks import FPN


class MultiTaskModel(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> {task: raw head output}.

    `model.branch=neck`: heads share one FPN (a shared decision layer, light heads);
    `model.branch=backbone`: each task has its own FPN on the shared backbone.
    The forward is `task_outputs(shared_features(images))`; training calls the two parts itself
    and hands the features, which every task reads, to the balancer.
    """

    def __init__(self, cfg: DictConfig, heads: dict[str, HeadBuilder]):
        super().__init__()
        m = cfg.model
        self.backbone = Backbone.from_config(m)
        strides, channels = self.backbone.strides, self.backbone.channels
        self.shared_neck = m.branch == "neck"
        if self.shared_neck:
            self.neck = FPN(channels, strides, m.neck_channels)
        else:
            self.necks = nn.ModuleDict({t: FPN(channels, strides, m.neck_channels) for t in heads})
        self.heads = nn.ModuleDict({t: build(m.neck_channels, strides) for t, build in heads.items()})

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        return self.task_outputs(self.shared_features(images))

    def shared_features(self, images: torch.Tensor) -> Features:
        """images (B, 3, H, W) -> the levels every task branches from, {stride: (B, C, H/s, W/s)}:
        the shared FPN's outputs, or with `branch=backbone` the backbone's levels."""
        feats = self.backbone(images)
        if self.shared_neck:
            return Features(self.neck(feats), shared=True)
        # aliases read only by the necks: backbone levels feed each other, and a gradient taken on
        # them must count each level's path to the heads once (see balancing/gradients.py)
        return Features({s: f.view_as(f) for s, f in feats.items()}, shared=True)

    def task_outputs(self, features: Features) -> dict[str, Any]:
        """`shared_features`' result -> {task: raw head output}."""
        if self.shared_neck:
            return {t: head(features.levels) for t, head in self.heads.items()}
        return {t: head(self.necks[t](features.levels)) for t, head in self.heads.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters every task's loss depends on (the balancer's 'shared' part)."""
        yield from self.backbone.parameters()
        if self.shared_neck:
            yield from self.neck.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters only `task`'s loss depends on: its head (and its own FPN if branched early)."""
        yield from self.heads[task].parameters()
        if not self.shared_neck:
            yield from self.necks[task].parameters()

    def coupling_losses(self, features: Features) -> dict[str, torch.Tensor]:
        """Terms outside the task losses (none with hard sharing; see soft_sharing.py)."""
        return {}

    def last_shared_parameters(self) -> Iterator[nn.Parameter]:
        """The last shared layer (GradNorm's W): the FPN's output convolutions, or without a shared
        neck the backbone's last stage."""
        if self.shared_neck:
            yield from self.neck.fpn.layer_blocks.parameters()
        else:
            stages = [m for m in self.backbone.body.children() if any(True for _ in m.parameters())]
            yield from stages[-1].parameters()

