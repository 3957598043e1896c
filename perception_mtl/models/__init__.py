"""Model builders by sharing scheme (`model.sharing`): hard, soft, cross_stitch. A model receives
its heads as builders (`heads.HeadBuilder`); models never import tasks (`perception_mtl.builders`
hands each task's `build_head` in)."""
from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from perception_mtl.models.heads import HeadBuilder

SHARING = ("hard", "soft", "cross_stitch")


def build_model(cfg: DictConfig, heads: dict[str, HeadBuilder]) -> nn.Module:
    """The multi-task model of `cfg.model.sharing` with one head per entry of `heads` (task -> builder)."""
    from perception_mtl.models.cross_stitch import CrossStitchModel
    from perception_mtl.models.multitask import MultiTaskModel
    from perception_mtl.models.soft_sharing import SoftSharingModel

    builders = {"hard": MultiTaskModel, "soft": SoftSharingModel, "cross_stitch": CrossStitchModel}
    model = builders[cfg.model.sharing](cfg, heads)
    if cfg.model.channels_last:  # NHWC convolutions: 1.7x faster forward+backward on the CPU (tools/bench_speed.py)
        model.to(memory_format=torch.channels_last)
    return model
