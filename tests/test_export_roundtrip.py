"""Exported predictions reproduce our metrics when read by the outside tools."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from perception_mtl.data.cityscapes import CityscapesDataset
from perception_mtl.data.collate import collate
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.depth import DepthMetric, depth_errors
from perception_mtl.tasks.det import DetectionMetric
from perception_mtl.tasks.seg import ConfusionMetric

ROOT = Path(__file__).resolve().parents[1]


def _tasks() -> dict:
    cfg = load_config(None, ["tasks=[det,seg,depth]"], defaults=None)
    return {t: TASKS.get(t)(cfg) for t in ("seg", "depth", "det")}


@pytest.fixture(scope="module")
def exported(tiny_world, tmp_path_factory):
    """Corrupted ground truth as 'predictions': non-trivial scores, written and measured."""
    out = tmp_path_factory.mktemp("pred")
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(CityscapesDataset(tiny_world, "val"), batch_size=2, collate_fn=collate)
    writer, seg, depth, det = PredictionWriter(out, _tasks()), ConfusionMetric(19), DepthMetric(0.5, 80.0), DetectionMetric()
    for batch in loader:
        sem = batch["semantic"].clone()
        flip = torch.rand(sem.shape, generator=g) < 0.2
        sem[flip] = torch.randint(0, 19, sem.shape, generator=g)[flip]
        sem[sem == 255] = 0
        dep = batch["depth"].clamp(min=1.0) * (1 + 0.15 * torch.randn(batch["depth"].shape, generator=g)).clamp(0.5, 2)
        dets = []
        for boxes, labels in zip(batch["boxes"], batch["labels"]):
            jitter = boxes + 2 * torch.randn(boxes.shape, generator=g)
            dets.append({"boxes": torch.cat([jitter, jitter[:1] + 5]), "labels": torch.cat([labels, labels[:1]]),
                         "scores": torch.rand(len(boxes) + min(1, len(boxes)), generator=g)})
        seg.update(sem, batch["semantic"])
        depth.update(dep, batch["depth"])
        det.update(dets, [{"boxes": b, "labels": c, "iscrowd": k.long()}
                          for b, c, k in zip(batch["boxes"], batch["labels"], batch["iscrowd"])])
        writer.add(batch, {"seg": sem, "depth": dep, "det": dets})
    writer.close()
    ours = {**{f"seg/{k}": float(v) for k, v in seg.compute().items()},
            **{f"depth/{k}": float(v) for k, v in depth.compute().items()},
            **{f"det/{k}": float(v) for k, v in det.compute().items()}}
    return out, ours


def test_official_cityscapes_evaluator_reads_our_semantic_pngs(exported, tiny_world, monkeypatch):
    out, ours = exported
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tiny_world))
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    official.args.quiet, official.args.JSONOutput, official.args.predictionPath = True, False, str(out / "semantic")
    official.args.predictionWalk = None
    gts = sorted(str(p) for p in (tiny_world / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = [official.getPrediction(official.args, gt) for gt in gts]
    result = official.evaluateImgLists(preds, gts, official.args)
    assert 0.2 < ours["seg/mIoU"] < 0.95
    assert result["averageScoreClasses"] == pytest.approx(ours["seg/mIoU"], abs=1e-9)


def test_pycocotools_reads_our_detection_json(exported):
    out, ours = exported
    gt = COCO(str(out / "detections_gt.json"))
    evaluator = COCOeval(gt, gt.loadRes(str(out / "detections.json")), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert 0.05 < ours["det/mAP"] < 0.99
    assert evaluator.stats[0] == pytest.approx(ours["det/mAP"], abs=1e-6)
    assert evaluator.stats[1] == pytest.approx(ours["det/mAP50"], abs=1e-6)


def test_standard_depth_formulas_on_our_depth_pngs(exported, tiny_world):
    out, ours = exported
    ds = CityscapesDataset(tiny_world, "val", tasks=("depth",))
    sums = torch.zeros(7, dtype=torch.float64)
    for i in range(len(ds)):
        pred = torch.from_numpy(np.array(Image.open(out / "depth" / f"{ds.frame(i)}.png")).astype(np.float64) / 256)
        gt = ds[i]["depth"].double()
        valid = (gt > 0.5) & (gt <= 80.0)
        sums += depth_errors(pred[valid].clamp(0.5, 80.0), gt[valid])
    theirs = dict(zip(["abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3"], sums / len(ds)))
    for key, value in theirs.items():
        assert float(value) == pytest.approx(ours[f"depth/{key}"], rel=2e-3, abs=2e-3), key


def test_evaluate_cli_writes_metrics_and_prediction_files(tiny_world, tmp_path):
    from perception_mtl.engine.trainer import Trainer
    from helpers import tiny_config

    trained = Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=2", "train.checkpoint_every=2")).fit()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--checkpoint",
                           str(tmp_path / "run" / "last.pt"), "--save-predictions", str(tmp_path / "pred")],
                          capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "run" / "eval_val.json").read_text())
    assert {"seg/mIoU", "det/mAP", "depth/delta1"} <= set(trained) and result["step"] == 2
    # the CLI re-evaluates the saved weights: the trainer's own evaluation after its last step
    assert {k: result[k] for k in trained} == pytest.approx(trained, rel=1e-5, abs=1e-7)
    assert len(list((tmp_path / "pred" / "semantic").glob("*.png"))) == 3
    assert len(list((tmp_path / "pred" / "depth").glob("*.png"))) == 3
    assert (tmp_path / "pred" / "detections.json").exists() and (tmp_path / "pred" / "detections_gt.json").exists()
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--checkpoint", "/no/such.pt"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no checkpoint" in bad.stderr
