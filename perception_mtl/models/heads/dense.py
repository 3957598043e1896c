"""A light dense-prediction head over a feature pyramid (Kirillov et al. 2019, Panoptic FPN's
semantic branch): each level is convolved, upsampled to the finest stride and summed."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


class DenseHead(nn.Module):
    """{stride: (B, C, H/s, W/s)} -> (B, out_channels, H, W) at the input resolution."""

    def __init__(self, channels: int, strides: list[int], out_channels: int, width: int = 64):
        super().__init__()
        self.strides = sorted(strides)
        self.lateral = nn.ModuleDict({str(s): _conv(channels, width) for s in self.strides})
        self.fuse = _conv(width, width)
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        finest = self.strides[0]
        size = feats[finest].shape[-2:]
        x = sum(F.interpolate(self.lateral[str(s)](feats[s]), size=size, mode="bilinear", align_corners=False)
                if s != finest else self.lateral[str(s)](feats[s]) for s in self.strides)
        x = self.out(self.fuse(x))
        return F.interpolate(x, scale_factor=finest, mode="bilinear", align_corners=False)
