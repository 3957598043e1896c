"""BDD100K's official detection evaluation (the `bdd100k` toolkit, a test extra: bdd100k.eval.run -t det,
i.e. scalabel.eval.detect) on our exported detections gives the AP our metric gives, to 1e-3."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from perception_mtl.data import DATASETS
from perception_mtl.data.collate import collate
from perception_mtl.data.det_classes import CLASS_SETS
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.det_bdd100k import FILE
from tests.helpers import TINY_TRAIN, tool_main

H, W = 720, 1280  # BDD100K's image size (the toolkit's det config says so too)
CLASSES = CLASS_SETS["bdd100k"]
CROWD = ("other person", "other vehicle", "trailer")  # evaluated as iscrowd boxes of their parent class


def toolkit():
    """bdd100k 1.0.1's det evaluation: (load, bdd100k_to_scalabel, evaluate_det, its det config). Its
    scalabel 0.3.1 (the newest) is written for pydantic 1, and wandb needs pydantic 2, which ships
    pydantic 1's API as pydantic.v1: the toolkit is imported with `pydantic` pointing there."""
    import pydantic
    import pydantic.v1

    sys.modules["pydantic"] = pydantic.v1
    try:
        from bdd100k.common.utils import load_bdd100k_config
        from bdd100k.label.to_scalabel import bdd100k_to_scalabel
        from scalabel.eval.detect import evaluate_det
        from scalabel.label.io import load
    finally:
        sys.modules["pydantic"] = pydantic
    return load, bdd100k_to_scalabel, evaluate_det, load_bdd100k_config("det")


def official_ap(gt: Path, result: Path) -> dict[str, float]:
    """AP and AP50 in [0, 1] as `python -m bdd100k.eval.run -t det -g gt -r result` computes them."""
    load, to_scalabel, evaluate_det, config = toolkit()
    frames = [to_scalabel(load(str(path)).frames, config) for path in (gt, result)]
    summary = evaluate_det(*frames, config.scalabel, nproc=1).summary()
    return {"mAP": summary["AP"] / 100, "mAP50": summary["AP50"] / 100}


def _frames(rng: np.random.Generator, n: int) -> list[dict]:
    """n frames of BDD100K labels: every class, crowd categories, boxes of all sizes, float corners
    (x2, y2 the last pixel, as BDD's), some touching or reaching past the image border."""
    frames = []
    for k in range(n):
        labels = []
        for j in range(int(rng.integers(0, 16)) if k else 0):  # frame 0: no objects
            category = CROWD[j % 3] if rng.random() < 0.1 else CLASSES[int(rng.integers(len(CLASSES)))]
            w, h = np.exp(rng.uniform(np.log(4), np.log(500), 2))
            x1, y1 = rng.uniform(0, W - w), rng.uniform(0, H - h)
            x2, y2 = (W - 1 + rng.choice([0, 0.5]), y1 + h) if j == 1 else (x1 + w, y1 + h)  # j 1: at the border
            labels.append({"id": str(j), "category": category, "attributes": {"occluded": False, "truncated": j == 1},
                           "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}})
        frames.append({"name": f"f{k:02d}.jpg", "attributes": {"weather": "clear", "timeofday": "daytime"},
                       "labels": labels})
    return frames


def make_bdd_val(root: Path, frames: list[dict]) -> Path:
    """`frames` as BDD100K's det_20 val labels, with grey 720x1280 images."""
    images = root / "images" / "100k" / "val"
    images.mkdir(parents=True)
    for frame in frames:
        Image.new("RGB", (W, H), (90, 90, 90)).save(images / frame["name"])
    (root / "labels" / "det_20").mkdir(parents=True)
    (root / "labels" / "det_20" / "det_val.json").write_text(json.dumps(frames))
    return root


def _detections(boxes: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A detector's output from true boxes (N, 4): most found with jitter of their size, some with the
    wrong class, some missed; plus false positives; random scores."""
    n = len(boxes)
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    found = torch.rand(n, generator=g) < 0.85
    jitter = boxes + 0.12 * size * torch.randn(boxes.shape, generator=g)
    wrong = torch.rand(n, generator=g) < 0.1
    classes = torch.where(wrong, torch.randint(0, len(CLASSES), (n,), generator=g), labels)
    xy = torch.rand(4, 2, generator=g) * torch.tensor([W - 60.0, H - 60.0])
    false = torch.cat([xy, xy + 10 + 50 * torch.rand(4, 2, generator=g)], 1)
    out = torch.cat([jitter[found], false])
    out[:, 0::2], out[:, 1::2] = out[:, 0::2].clamp(0, W), out[:, 1::2].clamp(0, H)
    return {"boxes": out, "labels": torch.cat([classes[found], torch.randint(0, len(CLASSES), (4,), generator=g)]),
            "scores": torch.rand(len(out), generator=g)}


def test_official_toolkit_gives_our_ap(tmp_path: Path) -> None:
    root = make_bdd_val(tmp_path / "bdd100k", _frames(np.random.default_rng(0), 12))
    cfg = load_config(None, ["data.dataset=bdd100k", f"data.root={root}", "tasks=[det]"], defaults=None)
    task = TASKS.get("det")(cfg)
    assert task.classes == CLASSES  # BDD100K's 10 classes by default
    dataset = DATASETS.get("bdd100k")(root, "val", ("det",), cfg.data, False)
    writer, metric = PredictionWriter(tmp_path / "pred", {"det": task}), task.metric()
    g = torch.Generator().manual_seed(0)
    for batch in DataLoader(dataset, batch_size=4, collate_fn=collate):
        predictions = [_detections(b, c, g) for b, c in zip(batch["boxes"], batch["labels"])]
        task.update(metric, predictions, batch)
        writer.add(batch, {"det": predictions})
    writer.close()
    ours = {k: float(v) for k, v in metric.compute().items()}
    theirs = official_ap(root / "labels" / "det_20" / "det_val.json", tmp_path / "pred" / FILE)
    print(f"\nours {ours}  toolkit {theirs}")
    assert 0.1 < ours["mAP"] < 0.8  # a detector neither perfect nor useless: the comparison can fail
    assert theirs == pytest.approx(ours, abs=1e-6)  # pycocotools underneath both: equal but for float32


def test_evaluate_cli_exports_frames_the_toolkit_reads(tmp_path: Path) -> None:
    """tools/evaluate.py --save-predictions of a BDD100K run: one frame per labelled image, named as
    the labels' frames, with BDD100K categories; the toolkit's AP on it is the CLI's det/mAP."""
    from perception_mtl.engine.trainer import Trainer

    frames = _frames(np.random.default_rng(1), 3)
    root = make_bdd_val(tmp_path / "bdd100k", frames)
    (root / "images" / "100k" / "train").symlink_to(root / "images" / "100k" / "val")
    (root / "labels" / "det_20" / "det_train.json").write_text(json.dumps(frames))
    cfg = load_config(None, TINY_TRAIN + ["data.dataset=bdd100k", f"data.root={root}", "tasks=[det]", "train.steps=1",
                                          "task.det.score_thresh=0.0", f"output_dir={tmp_path / 'run'}"],
                      defaults=None)
    Trainer(cfg).fit()
    tool_main("evaluate")(["--checkpoint", str(tmp_path / "run" / "last.pt"),
                           "--save-predictions", str(tmp_path / "p")])
    exported = json.loads((tmp_path / "p" / FILE).read_text())
    assert [f["name"] for f in exported] == [f["name"] for f in frames]
    labels = [label for f in exported for label in f["labels"]]
    assert labels and {label["category"] for label in labels} <= set(CLASSES)
    assert all(label["box2d"]["x1"] <= label["box2d"]["x2"] + 1 for label in labels)
    cli = json.loads((tmp_path / "run" / "eval_val.json").read_text())
    theirs = official_ap(root / "labels" / "det_20" / "det_val.json", tmp_path / "p" / FILE)
    # a model of one step finds nothing (AP 0 both ways): this checks the file; the test above, the AP
    assert theirs["mAP"] == pytest.approx(cli["det/mAP"], abs=1e-6)
