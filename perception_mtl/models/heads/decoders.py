"""Dense heads by name (`task.seg.decoder`, `task.depth.decoder`): the light Panoptic-FPN branch
of `dense.py`, or a decoder of segmentation-models-pytorch (FPN, DeepLabV3+, UNet) followed by
smp's `SegmentationHead`, over the feature pyramid the model gives its heads."""
from __future__ import annotations

import math
from typing import Callable

import torch
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder
from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn

from perception_mtl.models.heads.dense import DenseHead

SMP_STRIDES = (1, 2, 4, 8, 16, 32)  # smp's encoder levels: features[i] is at stride 2**i
OUT_STRIDE = 4  # every smp decoder here ends at stride 4; SegmentationHead upsamples to the input


def _fpn(channels: list[int], width: int) -> tuple[nn.Module, int]:
    """Kirillov et al. 2019 (Panoptic FPN): top-down pyramid on strides 4..32, summed at stride 4."""
    return FPNDecoder(channels, encoder_depth=5, pyramid_channels=width, segmentation_channels=width), 6


def _deeplabv3plus(channels: list[int], width: int) -> tuple[nn.Module, int]:
    """Chen et al. 2018: ASPP on the stride-16 level (the paper's output stride 16; in the FPN
    neck that level carries stride 32 through the top-down path) fused with stride 4."""
    decoder = DeepLabV3PlusDecoder(channels[:5], encoder_depth=4, out_channels=width, atrous_rates=(12, 24, 36),
                                   output_stride=16, aspp_separable=True, aspp_dropout=0.5)
    return decoder, 5


def _unet(channels: list[int], width: int) -> tuple[nn.Module, int]:
    """Ronneberger et al. 2015: upsampling blocks from stride 32 with skips at 16, 8 and 4 (the
    pyramid has no stride-2 level, so the decoder stops at stride 4)."""
    return UnetDecoder(channels, decoder_channels=(4 * width, 2 * width, width), n_blocks=3), 6


# name -> (builder of the smp decoder and how many smp levels it reads, strides it needs)
SMP_DECODERS: dict[str, tuple[Callable[[list[int], int], tuple[nn.Module, int]], tuple[int, ...]]] = {
    "fpn": (_fpn, (4, 8, 16, 32)),
    "deeplabv3plus": (_deeplabv3plus, (4, 16)),
    "unet": (_unet, (4, 8, 16, 32)),
}
DECODERS = ("light", *SMP_DECODERS)


class SmpDecoderHead(nn.Module):
    """{stride: (B, C_s, H/s, W/s)} -> (B, out_channels, H, W): an smp decoder over the levels in
    smp's encoder order (stride 1, 2, 4, ..., 32), then smp's SegmentationHead (3x3 conv, bilinear
    upsampling from stride 4). Levels the pyramid lacks are (B, 0, H/s, W/s) tensors, the
    zero-channel placeholder smp's own encoders return for a missing level."""

    def __init__(self, name: str, channels: list[int], strides: list[int], out_channels: int, width: int):
        super().__init__()
        build, needs = SMP_DECODERS[name]
        missing = sorted(set(needs) - set(strides))
        if missing:
            raise ValueError(f"decoder {name!r} needs feature strides {list(needs)}; the pyramid has {sorted(strides)} "
                             f"(missing {missing}): set model.out_indices to include them")
        by_stride = dict(zip(strides, channels))
        self.decoder, levels = build([by_stride.get(s, 0) for s in SMP_STRIDES], width)
        self.strides = SMP_STRIDES[:levels]
        self.head = SegmentationHead(width, out_channels, kernel_size=3, upsampling=OUT_STRIDE)

    def forward(self, feats: dict[int, torch.Tensor]) -> torch.Tensor:
        s, f = next(iter(feats.items()))
        b, h, w = f.shape[0], f.shape[-2] * s, f.shape[-1] * s  # input resolution
        levels = [feats[t] if t in feats else f.new_empty(b, 0, math.ceil(h / t), math.ceil(w / t))
                  for t in self.strides]
        return self.head(self.decoder(levels))


def build_dense_head(name: str, channels: int, strides: list[int], out_channels: int, width: int) -> nn.Module:
    """The dense head `name` over a pyramid of `channels` at each of `strides`, predicting
    (B, out_channels, H, W) at the input resolution."""
    if name == "light":
        return DenseHead(channels, strides, out_channels, width)
    if name not in SMP_DECODERS:
        raise ValueError(f"unknown dense decoder {name!r}; choose from {list(DECODERS)}")
    return SmpDecoderHead(name, [channels] * len(strides), list(strides), out_channels, width)
