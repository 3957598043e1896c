"""Per-frame detection matches at IoU 0.5, as pycocotools' COCOeval makes them: the data a frame
bootstrap of mAP50 needs (`analysis/frame_bootstrap.py`).

Per frame: the non-ignored ground-truth boxes per class, and every detection COCOeval keeps
(its top 100 per class, after its own greedy matching) as (class, score, true positive). Detections
matched to a crowd box are left out: COCOeval ignores them, so they change neither precision nor
recall. Recomputing AP50 from this table over all frames gives COCOeval's mAP50 exactly.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU = 0.5
MAX_DETS = 100


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.double()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist()


def frame_matches(images: list[tuple[dict, dict]]) -> dict:
    """[(prediction {boxes (D, 4) xyxy, scores (D,), labels (D,)}, target {boxes (N, 4), labels (N,),
    iscrowd (N,)})] per frame -> {"iou": 0.5, "frames": [{"gt": [[class, n]], "dt": [[class, score, tp]]}]}."""
    gt = {"images": [{"id": i} for i in range(len(images))], "annotations": [], "categories": []}
    dt = []
    classes = set()
    for i, (pred, target) in enumerate(images):
        crowd = target.get("iscrowd", torch.zeros(len(target["labels"]))).bool().tolist()
        for box, label, is_crowd in zip(_xywh(target["boxes"]), target["labels"].tolist(), crowd):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": label,
                                      "bbox": box, "area": box[2] * box[3], "iscrowd": int(is_crowd)})
        for box, label, score in zip(_xywh(pred["boxes"]), pred["labels"].tolist(), pred["scores"].tolist()):
            dt.append({"image_id": i, "category_id": label, "bbox": box, "score": score})
        classes |= set(target["labels"].tolist()) | set(pred["labels"].tolist())
    gt["categories"] = [{"id": c} for c in sorted(classes)]
    frames = [{"gt": [], "dt": []} for _ in images]
    if not classes:
        return {"iou": IOU, "frames": frames}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dt) if dt else COCO()
        evaluation = COCOeval(coco_gt, coco_dt, "bbox")
        evaluation.params.iouThrs = np.array([IOU])
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [MAX_DETS]
        evaluation.evaluate()
    for e in evaluation.evalImgs:
        if e is None:
            continue
        frame, label = frames[int(e["image_id"])], int(e["category_id"])
        n = int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
        if n:
            frame["gt"].append([label, n])
        matched, ignored = e["dtMatches"][0] > 0, e["dtIgnore"][0].astype(bool)
        frame["dt"] += [[label, float(s), int(m)] for s, m, ig in zip(e["dtScores"], matched, ignored) if not ig]
    return {"iou": IOU, "frames": frames}
