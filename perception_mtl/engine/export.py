"""Predictions in the files outside evaluators read (docs/ARCHITECTURE.md, "File contracts", `--save-predictions`):
semantic/<frame>.png in Cityscapes label ids, depth/<frame>.png uint16 depth*256 (KITTI, 0 = none),
detections.json (COCO results) with detections_gt.json (COCO ground truth, same images)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from perception_mtl.data.labels import DET_CLASS_TO_LABEL_ID, DET_CLASSES, TRAIN_ID_TO_LABEL_ID
from perception_mtl.tasks.base import labelled


class PredictionWriter:
    def __init__(self, out_dir: str | Path, seg_classes: int = 19):
        self.out = Path(out_dir)
        if seg_classes != 19:
            raise ValueError("semantic export writes Cityscapes label ids and needs the 19-class label space")
        self.results: list[dict] = []
        self.gt = {"images": [], "annotations": [],
                   "categories": [{"id": DET_CLASS_TO_LABEL_ID[i], "name": n} for i, n in enumerate(DET_CLASSES)]}

    def add(self, batch: dict, predictions: dict) -> None:
        """Write one batch's predictions ({task: predictions}) for its labelled samples; tasks
        without an export format here (scene, drivable, ...) are not written."""
        has = {t: labelled(batch, t) for t in predictions}
        for i, frame in enumerate(batch["frame"]):
            if "seg" in predictions and has["seg"][i]:
                self._png("semantic", frame, TRAIN_ID_TO_LABEL_ID[predictions["seg"][i].numpy()])
            if "depth" in predictions and has["depth"][i]:
                depth = (predictions["depth"][i].numpy() * 256.0).round().clip(1, 65535).astype(np.uint16)
                self._png("depth", frame, depth)
            if "det" in predictions and has["det"][i]:
                self._detections(batch, i, predictions["det"][i])

    def _png(self, kind: str, frame: str, array: np.ndarray) -> None:
        path = self.out / kind / f"{frame}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    def _detections(self, batch: dict, i: int, det: dict) -> None:
        image_id = len(self.gt["images"]) + 1
        h, w = batch["image"].shape[-2:]
        self.gt["images"].append({"id": image_id, "file_name": batch["frame"][i], "height": int(h), "width": int(w)})
        for box, label, crowd in zip(batch["boxes"][i].tolist(), batch["labels"][i].tolist(),
                                     batch["iscrowd"][i].tolist()):
            x0, y0, x1, y1 = box
            self.gt["annotations"].append({"id": len(self.gt["annotations"]) + 1, "image_id": image_id,
                                           "category_id": DET_CLASS_TO_LABEL_ID[label],
                                           "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                           "iscrowd": int(crowd)})
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            x0, y0, x1, y1 = box
            self.results.append({"image_id": image_id, "category_id": DET_CLASS_TO_LABEL_ID[label],
                                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})

    def close(self) -> None:
        if self.gt["images"]:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "detections.json").write_text(json.dumps(self.results))
            (self.out / "detections_gt.json").write_text(json.dumps(self.gt))
