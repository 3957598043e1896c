"""Batching of sample dicts: dense targets stacked, boxes kept as lists, label masks per task;
moving a batch (or predictions) between devices."""
from __future__ import annotations

from typing import TypedDict

import torch

from perception_mtl.data.targets import empty_like, target

NOT_TARGETS = ("image", "frame", "has", "unreadable")  # every other sample key is a task's label


class Batch(TypedDict, total=False):
    """The keys every batch has (and `unreadable`); besides them, one key per declared target
    (`Task.targets`): a tensor (B, ...) when the target has a fill, else a list of B tensors."""

    image: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    frame: list[str]  # B frame names
    has: dict[str, torch.Tensor]  # task -> (B,) bool: which samples carry its labels
    unreadable: list[str]  # frames a loader passed over (data.on_bad_label=skip), when any


def collate(samples: list[dict]) -> Batch:
    """-> image (B, 3, H, W), frame [B], has {task: (B,) bool}; each label key declared by a task
    (`Task.targets`): stacked, e.g. semantic (B, H, W), depth (B, H, W), scene (B, 2), or a list
    of (N_i, ...) tensors, e.g. boxes/labels/iscrowd; unreadable: the frames a loader passed over
    (data.on_bad_label=skip), when there were any."""
    images = torch.stack([torch.as_tensor(s["image"]) for s in samples])
    batch: Batch = {"image": images, "frame": [s["frame"] for s in samples]}
    tasks = sorted(set().union(*(s["has"] for s in samples)))
    batch["has"] = {t: torch.tensor([t in s["has"] for s in samples]) for t in tasks}
    keys = sorted(set().union(*samples) - set(NOT_TARGETS))
    for key in keys:
        spec, present = target(key), next(s[key] for s in samples if key in s)
        values = [torch.as_tensor(s[key]).to(spec.dtype) if key in s else empty_like(present, key) for s in samples]
        if spec.fill is None:
            batch[key] = [v.reshape(-1, *spec.item_shape) for v in values]
        else:
            batch[key] = torch.stack(values)
    unreadable = [name for s in samples for name in s.get("unreadable", ())]
    if unreadable:
        batch["unreadable"] = unreadable
    return batch


def move_batch(batch, device: torch.device | str):
    """A batch or predictions (tensors in dicts and lists, any nesting) on `device`; other values
    (frame names) as they are. Asynchronous from pinned memory to a GPU only: a copy to the CPU
    must be complete before the CPU reads it."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=torch.device(device).type == "cuda")
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(v, device) for v in batch)
    return batch
