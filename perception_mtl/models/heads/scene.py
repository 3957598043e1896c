"""Scene-attribute head: global average pooling of the coarsest features, then a small MLP."""
from __future__ import annotations

import torch
from torch import nn


class SceneHead(nn.Module):
    """{stride: (B, C, h, w)} -> logits (B, sum(num_classes)) for each attribute in turn."""

    def __init__(self, channels: int, strides: list[int], num_classes: tuple[int, ...], width: int = 64):
        super().__init__()
        self.stride = max(strides)
        self.mlp = nn.Sequential(nn.Linear(channels, width), nn.ReLU(inplace=True), nn.Linear(width, sum(num_classes)))

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        return self.mlp(feats[self.stride].mean(dim=(2, 3)))
