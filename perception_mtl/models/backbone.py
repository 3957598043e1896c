"""A thin timm backbone: `features_only`, channels and strides from `feature_info`."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

# ImageNet statistics; inputs are normalised inside the model so data stays in [0, 1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> {stride: features (B, C_s, H/s, W/s)}."""

    def __init__(self, name: str, out_indices: tuple[int, ...] | None = None, pretrained: bool = False,
                 pretrained_path: str | None = None):
        super().__init__()
        if out_indices is None:  # the levels at strides 4..32, wherever a model puts them
            probe = timm.create_model(name, features_only=True, pretrained=False)
            out_indices = tuple(i for i, r in enumerate(probe.feature_info.reduction()) if 4 <= r <= 32)
        kwargs: dict = dict(features_only=True, out_indices=tuple(out_indices))
        if pretrained_path is not None:
            if not Path(pretrained_path).is_file():
                raise FileNotFoundError(f"model.pretrained_path={pretrained_path} does not exist")
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained_path)))
        else:
            kwargs.update(pretrained=pretrained)
        try:
            self.body = timm.create_model(name, **kwargs)
        except Exception as err:  # timm raises various errors when the hub is unreachable
            if pretrained and pretrained_path is None:
                raise RuntimeError(
                    f"could not download pretrained weights for '{name}' ({type(err).__name__}: {err}). "
                    "Offline? Set model.pretrained_path=FILE to a local timm/safetensors checkpoint, "
                    "or model.pretrained=false.") from err
            raise
        self.channels: list[int] = self.body.feature_info.channels()
        self.strides: list[int] = self.body.feature_info.reduction()
        cfg = getattr(self.body, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        feats = self.body((images - self.mean) / self.std)
        return dict(zip(self.strides, feats))
