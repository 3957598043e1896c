"""Joint transforms of images and all their targets, with torchvision's `transforms.v2`.

Samples hold `tv_tensors`: the image as `Image`, boxes as `BoundingBoxes`, and semantic
labels and depth as `Mask`, so v2 resizes masks with nearest neighbour (depth is never
interpolated across invalid pixels), scales boxes with the image and flips them together.
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def build_transforms(size: tuple[int, int] | None = None, hflip: float = 0.0,
                     color_jitter: float = 0.0, min_box_size: float = 1.0) -> v2.Compose:
    """Resize to `size` (H, W), random horizontal flip with probability `hflip`, optional
    photometric jitter on the image only, then drop boxes smaller than `min_box_size` px
    (with their labels and crowd flags) and convert the image to float in [0, 1]."""
    steps: list = []
    if size is not None:
        steps.append(v2.Resize(tuple(size), antialias=True))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    steps += [
        v2.SanitizeBoundingBoxes(min_size=min_box_size, min_area=1.0, labels_getter=_box_fields),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
    ]
    return v2.Compose(steps)


def transform_sample(transforms: v2.Compose, sample: dict, boxes: torch.Tensor, classes: torch.Tensor,
                     crowd: torch.Tensor, has_det: bool) -> dict:
    """Apply `transforms` to `sample` with its boxes (N, 4) xyxy pixels of the image, labels (N,)
    and crowd flags (N,). v2's SanitizeBoundingBoxes needs boxes in every sample, so a frame
    without detection labels carries empty ones through and loses them after."""
    sample["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(sample["image"].shape[-2:]))
    sample["labels"], sample["iscrowd"] = classes, crowd
    sample = transforms(sample)
    if not has_det:
        for key in ("boxes", "labels", "iscrowd"):
            del sample[key]
    return sample


def _box_fields(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-box tensors that must be filtered together with the boxes."""
    return sample["labels"], sample["iscrowd"]
