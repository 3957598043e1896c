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
