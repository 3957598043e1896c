"""2D object detection: FCOS losses from torchvision, COCO mAP from pycocotools (via torchmetrics)."""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from perception_mtl.data.labels import DET_CLASSES
from perception_mtl.distributed import gather_objects
from perception_mtl.models.heads.detection import DetectionHead
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.base import Task, labelled


class DetectionMetric(Metric):
    """COCO box mAP (IoU .50:.95) and mAP50, computed by pycocotools' COCOeval through
    torchmetrics; crowd boxes enter as iscrowd=1 ground truth. Under DDP, `compute` gathers every
    rank's images (ranks may hold different numbers of them, which torchmetrics' own list-state
    sync does not survive) and every rank evaluates them all."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.coco = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools",
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
    directions = {"mAP": True, "mAP50": True}

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        c = self.cfg.task.det
        return DetectionHead(channels, list(c.strides), len(DET_CLASSES), c.score_thresh, c.nms_thresh,
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
