"""Validation pictures for dashboards, in W&B's Image format (masks=, boxes=) plus depth maps."""
from __future__ import annotations

import numpy as np

from perception_mtl.data.labels import DET_CLASSES, SEG_CLASSES
from perception_mtl.visualize import colorize_depth


def media_panels(batch: dict, preds: dict, count: int) -> list[dict]:
    """Up to `count` panels: image with predicted/true masks and predicted boxes, then its depth."""
    panels = []
    for i in range(min(count, batch["image"].shape[0])):
        image = (batch["image"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        panel: dict = {"image": image, "caption": batch["frame"][i]}
        if "seg" in preds:
            names = SEG_CLASSES[19] if len(SEG_CLASSES[19]) > int(preds["seg"].max()) else []
            labels = {int(k): n for k, n in enumerate(names or SEG_CLASSES[7])}
            panel["masks"] = {"predictions": {"mask_data": preds["seg"][i].numpy().astype(np.uint8),
                                              "class_labels": labels}}
            if "semantic" in batch:
                panel["masks"]["ground_truth"] = {"mask_data": batch["semantic"][i].numpy().astype(np.uint8),
                                                  "class_labels": {**labels, 255: "ignore"}}
        if "det" in preds:
            boxes = [{"position": {"minX": float(b[0]), "minY": float(b[1]), "maxX": float(b[2]), "maxY": float(b[3])},
                      "domain": "pixel", "class_id": int(c), "box_caption": f"{DET_CLASSES[int(c)]} {float(s):.2f}",
                      "scores": {"score": float(s)}}
                     for b, c, s in zip(preds["det"][i]["boxes"], preds["det"][i]["labels"], preds["det"][i]["scores"])
                     if float(s) >= 0.3]
            panel["boxes"] = {"predictions": {"box_data": boxes,
                                              "class_labels": {k: n for k, n in enumerate(DET_CLASSES)}}}
        panels.append(panel)
        if "depth" in preds:
            panels.append({"image": colorize_depth(preds["depth"][i].numpy()), "caption": f"{batch['frame'][i]} depth"})
    return panels
