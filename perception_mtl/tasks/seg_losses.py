"""Segmentation loss terms by name (`task.seg.loss`, terms joined by "+", e.g. "ce+dice"):
torch's cross-entropy and smp's Dice, Lovász-softmax and focal losses, each over logits
(B, K, H, W) and train ids (B, H, W), pixels labelled 255 ignored."""
from __future__ import annotations

from typing import Callable

from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, LovaszLoss
from torch import nn

from perception_mtl.data.labels import IGNORE

SEG_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "ce": lambda: nn.CrossEntropyLoss(ignore_index=IGNORE),
    "dice": lambda: DiceLoss(mode="multiclass", ignore_index=IGNORE),  # Milletari et al. 2016
    "lovasz": lambda: LovaszLoss(mode="multiclass", ignore_index=IGNORE),  # Berman et al. 2018
    "focal": lambda: FocalLoss(mode="multiclass", ignore_index=IGNORE),  # Lin et al. 2017, gamma 2
}


def seg_loss_terms(spec: str) -> list[str]:
    """'ce+dice' -> ['ce', 'dice']; an unknown or repeated term raises ValueError naming the valid ones."""
    terms = [t.strip() for t in spec.split("+")]
    for term in terms:
        if term not in SEG_LOSSES:
            raise ValueError(f"task.seg.loss={spec!r}: unknown term {term!r}; choose from {list(SEG_LOSSES)}, "
                             "joined by '+' (e.g. ce+dice)")
    if len(set(terms)) != len(terms):
        raise ValueError(f"task.seg.loss={spec!r} repeats a term")
    return terms


def build_seg_loss(spec: str) -> nn.ModuleDict:
    """{term: loss module} of `spec`; the task's loss is their sum, each logged by its name."""
    return nn.ModuleDict({t: SEG_LOSSES[t]() for t in seg_loss_terms(spec)})
