"""FCOS detection head from torchvision's parts: `FCOSHead`, its anchor points, matching,
focal/GIoU/centerness losses and post-processing, all taken from `torchvision.models.detection`."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


class _GivenFeatures(nn.Module):
    """Stands in for FCOS's backbone: our features come from the shared multi-task model."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels


class PositiveDistances(nn.Conv2d):
    """torchvision's box-distance conv with FCOS's original exp output: (B, C, H, W) -> (B, 4A, H, W) > 0.

    torchvision applies a ReLU to this conv's output. A side whose pre-activation goes <= 0 at every
    location then gets no gradient and never recovers: that is how detection collapsed in some seeds
    (the top-side distance was dead at 100% of locations). exp(x) is positive, so torchvision's ReLU
    becomes the identity and every side keeps its gradient. The clamp (e^8 ~ 3000 strides, far beyond
    any box) only keeps exp finite in low precision."""

    MAX_LOG_DISTANCE = 8.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(super().forward(x).clamp(max=self.MAX_LOG_DISTANCE))


def _exp_distances(conv: nn.Conv2d) -> PositiveDistances:
    """The same conv (weights, init) with the exp output."""
    out = PositiveDistances(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    out.load_state_dict(conv.state_dict())
    return out


class DetectionHead(nn.Module):
    """{stride: (B, C, H/s, W/s)} -> {"cls_logits": (B, A, K), "bbox_regression": (B, A, 4),
    "bbox_ctrness": (B, A, 1)} over A anchor points of the levels in `strides`."""

    def __init__(self, channels: int, strides: list[int], num_classes: int, score_thresh: float = 0.05,
                 nms_thresh: float = 0.6, detections_per_img: int = 100, topk_candidates: int = 1000,
                 num_convs: int = 2):
        super().__init__()
        self.strides = sorted(strides)
        anchors = AnchorGenerator(tuple((s,) for s in self.strides), ((1.0,),) * len(self.strides))
        # torchvision's FCOS supplies head, matching, losses and post-processing; its own
        # backbone, transform and forward are never used.
        head = FCOSHead(channels, 1, num_classes, num_convs=num_convs)
        head.regression_head.bbox_reg = _exp_distances(head.regression_head.bbox_reg)
        self.fcos = FCOS(_GivenFeatures(channels), num_classes, anchor_generator=anchors, head=head,
                         score_thresh=score_thresh, nms_thresh=nms_thresh,
                         detections_per_img=detections_per_img, topk_candidates=topk_candidates)

    def forward(self, feats: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.fcos.head([feats[s] for s in self.strides])

    def anchors(self, images: torch.Tensor, feats_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """Anchor boxes (A, 4) per image for input `images` (B, 3, H, W)."""
        b, _, h, w = images.shape
        dummies = [images.new_empty((b, 1, fh, fw)) for fh, fw in feats_shapes]
        return self.fcos.anchor_generator(ImageList(images, [(h, w)] * b), dummies)

    def level_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        return [(-(-height // s), -(-width // s)) for s in self.strides]

    def loss(self, outputs: dict[str, torch.Tensor], images: torch.Tensor,
             targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """FCOS losses (classification, bbox_regression, bbox_ctrness) for targets with
        boxes (N, 4) xyxy and labels (N,)."""
        shapes = self.level_shapes(*images.shape[-2:])
        anchors = self.anchors(images, shapes)
        return self.fcos.compute_loss(targets, outputs, anchors, [h * w for h, w in shapes])

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor], images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image: boxes (D, 4) xyxy in input pixels, scores (D,), labels (D,), after NMS."""
        shapes = self.level_shapes(*images.shape[-2:])
        counts = [h * w for h, w in shapes]
        anchors = self.anchors(images, shapes)
        split = {k: list(v.split(counts, dim=1)) for k, v in outputs.items()}
        split_anchors = [list(a.split(counts)) for a in anchors]
        sizes = [tuple(images.shape[-2:])] * images.shape[0]
        return self.fcos.postprocess_detections(split, split_anchors, sizes)
