"""2D object detection: FCOS losses from torchvision, COCO mAP from pycocotools (via torchmetrics)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from pycocotools.cocoeval import Params
from torch import nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from perception_mtl.data.det_classes import CLASS_SETS, COCO_IDS, class_set
from perception_mtl.data.targets import Target
from perception_mtl.core.distributed import gather_objects
from perception_mtl.models.heads.detection import DetectionHead
from perception_mtl.tasks.base import Exporter, Exporters, Task, bounded, labelled
from perception_mtl.tasks.det_bdd100k import Bdd100kFrames
from perception_mtl.tasks.det_frames import frame_matches
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import draw_boxes, image_panel


class DetectionMetric(Metric):
    """COCO box mAP (IoU .50:.95) and mAP50, computed by pycocotools' COCOeval through
    torchmetrics; crowd boxes enter as iscrowd=1 ground truth. Under DDP, `compute` gathers every
    rank's images (ranks may hold different numbers of them, which torchmetrics' own list-state
    sync does not survive) and every rank evaluates them all. The IoU and recall thresholds are
    pycocotools' own: torchmetrics' defaults are float32 linspaces (0.55 -> 0.550000011920929), and a
    recall threshold just above an exact recall k/n moves the precision read there (mAP off by ~1e-4)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        coco = Params(iouType="bbox")
        self.coco = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools",
                                         iou_thresholds=coco.iouThrs.tolist(), rec_thresholds=coco.recThrs.tolist(),
                                         sync_on_compute=False)
        self.images: list[tuple[dict, dict]] = []  # (prediction, target) per image

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        self.images += [({k: v.detach().cpu() for k, v in p.items()}, {k: v.cpu() for k, v in t.items()})
                        for p, t in zip(preds, targets)]

    def compute(self) -> dict[str, torch.Tensor]:
        images = gather_objects(self.images)
        self.coco.reset()
        if images:
            self.coco.update([p for p, _ in images], [t for _, t in images])
        result = self.coco.compute()
        return {"mAP": result["map"].clamp(min=0), "mAP50": result["map_50"].clamp(min=0)}

    def reset(self) -> None:
        super().reset()
        self.coco.reset()
        self.images = []


@TASKS.register("det")
class DetectionTask(Task):
    name = "det"
    primary = "mAP50"
    loss_form = "classification"
    targets = {"boxes": Target(torch.float32, None, (4,)), "labels": Target(torch.int64), "iscrowd": Target(torch.bool)}
    directions = {"mAP": True, "mAP50": True}

    @dataclass
    class Config:
        strides: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
        num_convs: int = bounded(2, lambda v: v >= 0, ">= 0")  # conv layers per FCOS branch (torchvision's: 4)
        score_thresh: float = 0.05
        nms_thresh: float = 0.6
        detections_per_img: int = bounded(100, lambda v: v >= 1, ">= 1")
        topk_candidates: int = bounded(1000, lambda v: v >= 1, ">= 1")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.class_set = class_set(cfg)  # data.det_classes, or the datasets' own (data/det_classes.py)
        self.classes = CLASS_SETS[self.class_set]

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        c = self.cfg.task.det
        return DetectionHead(channels, list(c.strides), len(self.classes), c.score_thresh, c.nms_thresh,
                             c.detections_per_img, c.topk_candidates, c.num_convs)

    def loss(self, head: DetectionHead, output: dict, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        idx = has.nonzero()[:, 0]
        targets = [{"boxes": batch["boxes"][i][~batch["iscrowd"][i]],
                    "labels": batch["labels"][i][~batch["iscrowd"][i]]} for i in idx.tolist()]
        sub = {k: v[idx].float() for k, v in output.items()}
        return head.loss(sub, batch["image"][idx], targets)

    def predict(self, head: DetectionHead, output: dict, images: torch.Tensor, out_size) -> list[dict]:
        """Per image: boxes (D, 4) xyxy in `out_size` pixels, scores (D,), labels (D,)."""
        dets = head.postprocess({k: v.float() for k, v in output.items()}, images)
        sy, sx = out_size[0] / images.shape[-2], out_size[1] / images.shape[-1]
        scale = torch.tensor([sx, sy, sx, sy], device=images.device)
        return [{**d, "boxes": d["boxes"] * scale} for d in dets]

    def metric(self) -> Metric:
        return DetectionMetric()

    def update(self, metric: Metric, predictions: list[dict], batch: dict) -> None:
        has = labelled(batch, self.name)
        idx = has.nonzero()[:, 0].tolist()
        targets = [{"boxes": batch["boxes"][i], "labels": batch["labels"][i],
                    "iscrowd": batch["iscrowd"][i].long()} for i in idx]
        metric.update([predictions[i] for i in idx], targets)

    def truth(self, batch: dict, i: int) -> dict | None:
        """The frame's boxes that are not crowd (no scores: `draw` then draws them all)."""
        if not labelled(batch, self.name)[i]:
            return None
        keep = ~batch["iscrowd"][i]
        return {"boxes": batch["boxes"][i][keep], "labels": batch["labels"][i][keep]}

    def per_frame(self, metric: DetectionMetric) -> dict:
        """Every frame's matches at IoU 0.5 (`det_frames.py`), from which mAP50 is recomputed exactly."""
        return frame_matches(gather_objects(metric.images))

    def draw(self, ax: Axes, image: np.ndarray, prediction: dict, min_score: float) -> None:
        """The boxes scoring at least `min_score` over the image, with class and score (all boxes,
        with their class, when they carry no scores: ground truth)."""
        if "scores" not in prediction:
            image_panel(ax, image, "boxes")
            draw_boxes(ax, prediction["boxes"], prediction["labels"], None, self.classes)
            return
        keep = prediction["scores"] >= min_score
        image_panel(ax, image, f"detections (score >= {min_score:g})")
        draw_boxes(ax, *(prediction[k][keep] for k in ("boxes", "labels", "scores")), self.classes)

    def overlay(self, prediction: dict, batch: dict, i: int, min_score: float = 0.3) -> dict:
        boxes = [{"position": {"minX": float(b[0]), "minY": float(b[1]), "maxX": float(b[2]), "maxY": float(b[3])},
                  "domain": "pixel", "class_id": int(c), "box_caption": f"{self.classes[int(c)]} {float(s):.2f}",
                  "scores": {"score": float(s)}}
                 for b, c, s in zip(prediction["boxes"], prediction["labels"], prediction["scores"])
                 if float(s) >= min_score]
        return {"boxes": {"predictions": {"box_data": boxes, "class_labels": dict(enumerate(self.classes))}}}

    def exporter(self, out: Path) -> Exporter:
        """COCO files; with BDD100K's classes also its own format, which its toolkit evaluates."""
        coco = CocoFiles(out, self.classes, COCO_IDS[self.class_set])
        return Exporters(coco, Bdd100kFrames(out, self.classes)) if self.class_set == "bdd100k" else coco


class CocoFiles(Exporter):
    """detections.json (COCO results) and detections_gt.json (COCO ground truth of the same
    images, crowd boxes as iscrowd=1); category `ids[k]` for class `classes[k]` (COCO_IDS)."""

    def __init__(self, out: Path, classes: list[str], ids: list[int]):
        self.out, self.ids = out, ids
        self.results: list[dict] = []
        self.gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in zip(ids, classes)]}

    def add(self, batch: dict, i: int, frame: str, prediction: dict) -> None:
        image_id = len(self.gt["images"]) + 1
        h, w = batch["image"].shape[-2:]
        self.gt["images"].append({"id": image_id, "file_name": frame, "height": int(h), "width": int(w)})
        truth = zip(batch["boxes"][i].tolist(), batch["labels"][i].tolist(), batch["iscrowd"][i].tolist()) \
            if "boxes" in batch else ()
        for (x0, y0, x1, y1), label, crowd in truth:
            self.gt["annotations"].append({"id": len(self.gt["annotations"]) + 1, "image_id": image_id,
                                           "category_id": self.ids[label],
                                           "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                           "iscrowd": int(crowd)})
        for (x0, y0, x1, y1), score, label in zip(prediction["boxes"].tolist(), prediction["scores"].tolist(),
                                                  prediction["labels"].tolist()):
            self.results.append({"image_id": image_id, "category_id": self.ids[label],
                                 "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})

    def close(self) -> None:
        if self.gt["images"]:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "detections.json").write_text(json.dumps(self.results))
            (self.out / "detections_gt.json").write_text(json.dumps(self.gt))
