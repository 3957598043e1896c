"""Validation pictures for dashboards, in W&B's Image format: each task draws its prediction over
the image (`Task.overlay`: masks=, boxes=) or as a picture of its own (`Task.picture`: depth)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from perception_mtl.tasks.base import Task


def media_panels(batch: dict, preds: dict, count: int, tasks: Mapping[str, Task]) -> list[dict]:
    """Up to `count` samples: the image with every overlay, then each task's own picture."""
    panels = []
    for i in range(min(count, batch["image"].shape[0])):
        image = (batch["image"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        panel: dict = {"image": image, "caption": batch["frame"][i]}
        for t, pred in preds.items():
            panel.update(tasks[t].overlay(pred[i], batch, i))
        panels.append(panel)
        for t, pred in preds.items():
            picture = tasks[t].picture(pred[i])
            if picture is not None:
                panels.append({"image": picture, "caption": f"{batch['frame'][i]} {t}"})
    return panels
