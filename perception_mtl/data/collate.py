"""Batching of sample dicts: dense targets stacked, boxes kept as lists, label masks per task;
moving a batch (or predictions) between devices."""
from __future__ import annotations

import torch

from perception_mtl.data.labels import IGNORE

DENSE_FILL = {"semantic": IGNORE, "depth": 0.0, "drivable": IGNORE}  # what a sample without the target gets
DENSE_INT = {"semantic", "drivable"}  # class-index targets; the others are float
TASK_KEYS = {"seg": "semantic", "depth": "depth", "det": "boxes", "scene": "scene", "drivable": "drivable"}


def collate(samples: list[dict]) -> dict:
    """-> image (B, 3, H, W), frame [B], has {task: (B,) bool}, semantic (B, H, W),
    depth (B, H, W), drivable (B, H, W), scene (B, 2), boxes/labels/iscrowd: lists of (N_i, ...) tensors;
    unreadable: the frames a loader passed over (data.on_bad_label=skip), when there were any."""
    images = torch.stack([torch.as_tensor(s["image"]) for s in samples])
    h, w = images.shape[-2:]
    batch: dict = {"image": images, "frame": [s["frame"] for s in samples]}
    tasks = sorted(set().union(*(s["has"] for s in samples)))
    batch["has"] = {t: torch.tensor([t in s["has"] for s in samples]) for t in tasks}
    for key, fill in DENSE_FILL.items():
        if any(key in s for s in samples):
            dtype = torch.int64 if key in DENSE_INT else torch.float32
            batch[key] = torch.stack([torch.as_tensor(s[key]).to(dtype) if key in s
                                      else torch.full((h, w), fill, dtype=dtype) for s in samples])
    if any("scene" in s for s in samples):
        batch["scene"] = torch.stack([torch.as_tensor(s["scene"]) if "scene" in s
                                      else torch.full((2,), -1, dtype=torch.int64) for s in samples])
    unreadable = [name for s in samples for name in s.get("unreadable", ())]
    if unreadable:
        batch["unreadable"] = unreadable
    if any("boxes" in s for s in samples):
        batch["boxes"] = [torch.as_tensor(s["boxes"]).reshape(-1, 4) if "boxes" in s else torch.zeros(0, 4)
                          for s in samples]
        batch["labels"] = [torch.as_tensor(s.get("labels", torch.zeros(0, dtype=torch.int64))) for s in samples]
        batch["iscrowd"] = [torch.as_tensor(s.get("iscrowd", torch.zeros(0, dtype=torch.bool))) for s in samples]
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
