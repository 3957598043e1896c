"""Feature pyramid neck (torchvision's `FeaturePyramidNetwork`), keyed by stride."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork


class FPN(nn.Module):
    """{stride: (B, C_s, h, w)} -> {stride: (B, out_channels, h, w)} for the same strides."""

    def __init__(self, in_channels: list[int], strides: list[int], out_channels: int):
        super().__init__()
        self.strides = list(strides)
        self.out_channels = out_channels
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels)

    def forward(self, feats: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        out = self.fpn(OrderedDict((str(s), feats[s]) for s in self.strides))
        return {s: out[str(s)] for s in self.strides}
