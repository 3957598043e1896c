"""Cross-stitch networks (Misra et al., CVPR 2016): one backbone per task, run stage by stage in
lockstep; after each stage that feeds the FPN, a cross-stitch unit replaces every task's
feature map by a learned linear combination of all tasks' maps, per channel:

    x'_t[c] = sum_s alpha[t, s, c] * x_s[c],   alpha initialised to `model.cross_stitch_init` on
    the diagonal and the rest of each row spread evenly (1.0: the per-task networks exactly).

Written here because neither timm nor smp has cross-stitch units; the backbone is still timm's,
run through its `FeatureDictNet` layers in order.
"""
from __future__ import annotations

from typing import Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from perception_mtl.models.features import Features
from perception_mtl.models.heads import HeadBuilder
from perception_mtl.models.per_task import PerTaskModel


class CrossStitchUnit(nn.Module):
    """[T x (B, C, h, w)] -> [T x (B, C, h, w)] mixed per channel by alpha (T, T, C)."""

    def __init__(self, tasks: int, channels: int, self_weight: float):
        super().__init__()
        other = (1.0 - self_weight) / max(tasks - 1, 1)
        alpha = torch.full((tasks, tasks, channels), other)
        alpha[range(tasks), range(tasks)] = self_weight
        self.alpha = nn.Parameter(alpha)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = torch.stack(feats)  # (T, B, C, h, w)
        mixed = torch.einsum("tsc,sbchw->tbchw", self.alpha.to(stacked.dtype), stacked)
        return list(mixed.unbind(0))


class CrossStitchModel(PerTaskModel):
    def __init__(self, cfg: DictConfig, heads: dict[str, HeadBuilder]):
        super().__init__(cfg, heads)
        first = next(iter(self.backbones.values()))
        if not hasattr(first.body, "return_layers"):
            raise ValueError(f"model.sharing=cross_stitch needs a timm backbone whose features_only model is a "
                             f"FeatureDictNet (resnet*, efficientnet*, convnext*); {cfg.model.backbone} is not")
        self.taps = list(first.body.return_layers)
        self.units = nn.ModuleDict({name: CrossStitchUnit(len(heads), c, cfg.model.cross_stitch_init)
                                    for name, c in zip(self.taps, first.channels)})

    def shared_features(self, images: torch.Tensor) -> Features:
        """images (B, 3, H, W) -> each task's stitched levels, {(task, stride): (B, C, H/s, W/s)}."""
        tasks = list(self.backbones)
        first = self.backbones[tasks[0]]
        x = [(images - first.mean) / first.std] * len(tasks)
        feats: list[dict[int, torch.Tensor]] = [{} for _ in tasks]
        layers = [list(self.backbones[t].body.items()) for t in tasks]
        for level in zip(*layers):
            name = level[0][0]
            x = [module(xi) for (_, module), xi in zip(level, x)]
            if name in self.units:
                x = self.units[name](x)
                stride = first.strides[self.taps.index(name)]
                for i in range(len(tasks)):
                    feats[i][stride] = x[i]
        return self.cut(dict(zip(tasks, feats)))

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The backbones and the cross-stitch units: every task's loss reaches all of them."""
        yield from super().shared_parameters()
        yield from self.units.parameters()
