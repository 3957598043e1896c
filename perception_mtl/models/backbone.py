"""A thin timm backbone: `features_only`, channels and strides from `feature_info`; weights from
timm's hub, a local file or a registry package (`weights.py`); early levels optionally frozen."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from omegaconf import DictConfig
from timm.utils.model import freeze
from torch import nn

from perception_mtl.core.errors import ConfigError
from perception_mtl.models.weights import load_imagenet

# ImageNet statistics; inputs are normalised inside the model so data stays in [0, 1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> {stride: features (B, C_s, H/s, W/s)}."""

    def __init__(self, name: str, out_indices: tuple[int, ...] | None = None, pretrained: bool = False,
                 pretrained_path: str | None = None, weights: str | None = None, freeze_at: int = 0,
                 channels_last: bool = False):
        super().__init__()
        if out_indices is None:  # the levels at strides 4..32, wherever a model puts them
            probe = timm.create_model(name, features_only=True, pretrained=False)
            out_indices = tuple(i for i, r in enumerate(probe.feature_info.reduction()) if 4 <= r <= 32)
        kwargs: dict = dict(features_only=True, out_indices=tuple(out_indices))
        if pretrained_path is not None:
            if not Path(pretrained_path).is_file():
                raise ConfigError(f"model.pretrained_path={pretrained_path} does not exist")
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
        if weights == "imagenet":
            load_imagenet(self.body, name)
        self.frozen = self._freeze(freeze_at)
        self.channels_last = channels_last  # NHWC inputs: NHWC weights with NCHW inputs run several times slower
        self.channels: list[int] = self.body.feature_info.channels()
        self.strides: list[int] = self.body.feature_info.reduction()
        cfg = getattr(self.body, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, m: DictConfig) -> "Backbone":
        """The backbone of `cfg.model`."""
        indices = tuple(m.out_indices) if m.out_indices is not None else None
        return cls(m.backbone, indices, m.pretrained, m.pretrained_path, m.weights, m.freeze_at, m.channels_last)

    def _freeze(self, freeze_at: int) -> list[str]:
        """Freeze the stem and the stages up to timm feature level `freeze_at - 1`, counting every
        level of the model (detectron2's `freeze_at`: 1 = up to stride 2, 2 = up to stride 4, ...):
        no gradient, BatchNorm replaced by frozen BatchNorm (timm's `freeze`). Returns the frozen
        modules' names."""
        if freeze_at <= 0:
            return []
        levels = [info["module"] for info in self.body.feature_info.info]
        if freeze_at > len(levels):
            raise ConfigError(f"model.freeze_at={freeze_at} but {self.body.__class__.__name__} has {len(levels)} "
                              f"feature levels ({levels}); choose 0..{len(levels)}")
        children = dict(self.body.named_children())
        last = levels[freeze_at - 1]
        if last.split(".")[0] not in children:  # timm's FeatureListNet flattens "stages.0" to "stages_0"
            last = last.replace(".", "_")
        top, _, inner = last.partition(".")
        names = list(children)[:list(children).index(top)]
        if inner:  # a level inside a container of stages (EfficientNet's blocks.N): its stages 0..N
            stages = [n for n, _ in children[top].named_children()]
            names += [f"{top}.{n}" for n in stages[:stages.index(inner) + 1]]
        else:
            names.append(top)
        freeze(self.body, names)
        return names

    def forward(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        images = (images - self.mean) / self.std
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.body(images)
        return dict(zip(self.strides, feats))
