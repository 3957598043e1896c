"""BDD100K loader on tiny files in the official layout, the drivable task, and scene's unknowns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from perception_mtl.data import DATASETS, files
from perception_mtl.data.bdd100k import BDD100KDataset
from perception_mtl.data.cityscapes import CityscapesDataset, DatasetError
from perception_mtl.data.collate import collate
from perception_mtl.data.det_classes import CLASS_SETS
from perception_mtl.data.labels import DET_CLASSES, IGNORE
from perception_mtl.engine.builders import ConfigError, load_config
from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.tasks import TASKS
from tests.helpers import TINY_TRAIN

H, W = 36, 64
BDD = CLASS_SETS["bdd100k"]  # the default: BDD100K's 10 official classes
PERSON, CAR, TRUCK, LIGHT = (BDD.index(c) for c in ("pedestrian", "car", "truck", "traffic light"))


def _box(x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2}


def _label(i: int, category: str, box: dict, occluded: bool = False, truncated: bool = False) -> dict:
    return {"id": str(i), "category": category, "box2d": box,
            "attributes": {"occluded": occluded, "truncated": truncated, "trafficLightColor": "NA"}}


FRAMES = [
    {"name": "a.jpg", "timestamp": 10000,
     "attributes": {"weather": "partly cloudy", "scene": "city street", "timeofday": "daytime"},
     "labels": [_label(0, "pedestrian", _box(2, 3, 11.5, 20), occluded=True),
                _label(1, "car", _box(30, 10, 70, 35), truncated=True),  # past the right border
                _label(2, "traffic light", _box(5, 0, 8, 6)),
                _label(3, "other vehicle", _box(40, 20, 50, 30))]},
    {"name": "b.jpg", "attributes": {"weather": "undefined", "scene": "highway", "timeofday": "night"}},
    {"name": "c.jpg", "attributes": {"weather": "snowy", "scene": "residential", "timeofday": "dawn/dusk"},
     "labels": [_label(0, "truck", _box(10, 10, 20, 25))]},
    {"name": "d.jpg", "attributes": {"weather": "undefined", "scene": "undefined", "timeofday": "undefined"},
     "labels": []},
]


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def drivable_mask() -> np.ndarray:
    mask = np.full((H, W), 2, np.uint8)
    mask[20:, 10:40], mask[20:, 40:60], mask[0, 0] = 0, 1, IGNORE
    return mask


def semantic_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)  # road
    mask[:10], mask[10:20, :32], mask[0, :4] = 10, 13, IGNORE  # sky, car, unlabelled
    return mask


def make_bdd(root: Path, frames: list | dict = FRAMES) -> Path:
    """Both splits in the official layout: 100K frames a-d (c without a drivable mask), 10K frames s1, s2."""
    for split in ("train", "val"):
        for k, name in enumerate("abcd"):
            _jpg(root / "images" / "100k" / split / f"{name}.jpg", k)
            if name != "c":
                _png(root / "labels" / "drivable" / "masks" / split / f"{name}.png", drivable_mask())
        for k, name in enumerate(("s1", "s2")):
            _jpg(root / "images" / "10k" / split / f"{name}.jpg", 10 + k)
            _png(root / "labels" / "sem_seg" / "masks" / split / f"{name}.png", semantic_mask())
        det = root / "labels" / "det_20" / f"det_{split}.json"
        det.parent.mkdir(parents=True, exist_ok=True)
        det.write_text(json.dumps(frames))
    return root


@pytest.fixture
def bdd(tmp_path: Path) -> Path:
    return make_bdd(tmp_path / "bdd100k")


def test_frames_boxes_classes_and_box_attributes(bdd: Path) -> None:
    ds = BDD100KDataset(bdd, "train", ("det", "seg", "drivable", "scene"))
    assert [f.name for f in ds.frames] == ["a", "b", "c", "d", "s1", "s2"]
    a = ds[0]
    assert a["image"].shape == (3, H, W) and a["image"].dtype == torch.float32 and a["frame"] == "a"
    # x2, y2 are BDD's last pixel: +1, then clipped to the image; the traffic light is a class
    assert a["boxes"].tolist() == [[2, 3, 12.5, 21], [30, 10, 64, 36], [5, 0, 9, 7], [40, 20, 51, 31]]
    assert a["labels"].tolist() == [PERSON, CAR, LIGHT, CAR]
    assert a["iscrowd"].tolist() == [False, False, False, True]  # "other vehicle": a crowd car, as BDD's eval
    assert ds.frames[0].occluded.tolist() == [True, False, False, False]
    assert ds.frames[0].truncated.tolist() == [False, True, False, False]
    b = ds[1]  # a frame without `labels`: no objects, still a detection label
    assert "det" in b["has"] and b["boxes"].shape == (0, 4) and b["labels"].shape == (0,)
    assert ds[2]["labels"].tolist() == [TRUCK]
    shared = BDD100KDataset(bdd, "train", ("det",), det_classes="cityscapes")  # the 8 classes of a mix
    assert shared[0]["labels"].tolist() == [DET_CLASSES.index(c) for c in ("person", "car", "car")]


def test_class_map_overrides_and_errors(bdd: Path) -> None:
    ds = BDD100KDataset(bdd, "train", ("det",), class_map={"pedestrian": "rider", "other vehicle": None,
                                                           "traffic light": "bicycle"})
    a = ds[0]
    assert a["labels"].tolist() == [BDD.index("rider"), CAR, BDD.index("bicycle")]
    assert not a["iscrowd"].any()
    with pytest.raises(ValueError, match="automobile.*pedestrian.*traffic sign"):
        BDD100KDataset(bdd, "train", ("det",), class_map={"car": "automobile"})
    with pytest.raises(ValueError, match="lorry"):
        BDD100KDataset(bdd, "train", ("det",), class_map={"lorry": "truck"})
    with pytest.raises(ValueError, match=r"traffic light.*not a detection class.*\['person'"):
        BDD100KDataset(bdd, "train", ("det",), det_classes="cityscapes", class_map={"pedestrian": "traffic light"})


MIX = "data.mix=[{dataset: bdd100k, root: b, tasks: [det]}, {dataset: %s, root: c, tasks: [det, seg]}]"


@pytest.mark.parametrize("overrides, classes", [
    (["data.dataset=bdd100k"], 10), (["data.dataset=bdd100k", "data.det_classes=cityscapes"], 8),
    ([MIX % "cityscapes", "data.det_classes=cityscapes"], 8), ([MIX % "kitti", "data.det_classes=cityscapes"], 8),
    (["data.mix=[{dataset: bdd100k, root: b, tasks: [det]}, {dataset: cityscapes, root: c, tasks: [seg]}]"], 10),
    ([MIX % "cityscapes"], "mix has one class set: set data.det_classes=cityscapes"),
    ([MIX % "kitti", "data.det_classes=bdd100k"], r"\(kitti has \['cityscapes'\]\); use data.det_classes=cityscapes"),
    (["data.det_classes=bdd100k"], r"cityscapes has \['cityscapes'\]"), (["data.det_classes=coco"], "choose from")])
def test_one_detection_class_set_per_run(overrides: list[str], classes: int | str) -> None:
    """BDD100K's 10 classes by default; a mix trains det on one set, which every dataset in it labels."""
    args = ["tasks=[det,seg]", *overrides]
    if isinstance(classes, str):
        with pytest.raises(ConfigError, match=classes):
            load_config(None, args, defaults=None)
        return
    cfg = load_config(None, args, defaults=None)
    task = TASKS.get("det")(cfg)
    head = task.build_head(32, [4, 8]).fcos.head.classification_head
    assert len(task.classes) == classes and head.num_classes == classes


def test_drivable_and_semantic_targets(bdd: Path) -> None:
    ds = BDD100KDataset(bdd, "val", ("seg", "drivable"))
    assert [f.name for f in ds.frames] == ["a", "b", "d", "s1", "s2"]  # 100K frames listed by the masks
    a, s1 = ds[0], ds[len(ds) - 2]
    assert a["has"] == {"drivable"} and "semantic" not in a and "boxes" not in a
    assert a["drivable"].dtype == torch.int64 and torch.equal(a["drivable"], torch.from_numpy(drivable_mask()).long())
    assert s1["has"] == {"seg"} and "drivable" not in s1
    assert torch.equal(s1["semantic"], torch.from_numpy(semantic_mask()).long())
    seven = BDD100KDataset(bdd, "val", ("seg",), seg_classes=7)
    assert len(seven) == 2
    assert seven[0]["semantic"].unique().tolist() == [0, 4, 6, IGNORE]  # flat, sky, vehicle


def test_frame_without_drivable_mask_is_counted(bdd: Path) -> None:
    ds = BDD100KDataset(bdd, "train", ("det", "drivable"))
    assert ds.missing["drivable"] == 1
    c = ds[2]
    assert c["frame"] == "c" and c["has"] == {"det"} and "drivable" not in c
    drivable_only = BDD100KDataset(bdd, "train", ("drivable",))  # listed by the masks, no JSON needed
    assert [f.name for f in drivable_only.frames] == ["a", "b", "d"]


def test_scene_attributes_and_unknowns(bdd: Path) -> None:
    ds = BDD100KDataset(bdd, "train", ("det", "scene"))
    samples = [ds[i] for i in range(4)]
    # partly cloudy -> clear, daytime -> day; undefined -> -1; snowy -> rain, dawn/dusk -> dusk
    assert [s["scene"].tolist() if "scene" in s else None for s in samples] == [[0, 0], [-1, 2], [2, 1], None]
    assert ds.tasks_of(3) == {"det"}  # both attributes undefined: no scene label
    scene_only = BDD100KDataset(bdd, "train", ("scene",))
    assert [f.name for f in scene_only.frames] == ["a", "b", "c"] and scene_only.missing["scene"] == 1


def test_tasks_of_does_not_decode(bdd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = BDD100KDataset(bdd, "train", ("det", "seg", "drivable", "scene"))

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    monkeypatch.setattr(files, "read_png", no_decoding)  # under read_rgb and read_label_png
    assert [ds.tasks_of(i) for i in range(len(ds))] == [
        {"det", "drivable", "scene"}, {"det", "drivable", "scene"}, {"det", "scene"}, {"det", "drivable"},
        {"seg"}, {"seg"}]


def _changed(index: int, change) -> list:
    """FRAMES with `change` applied to frame `index`'s labels."""
    frames = json.loads(json.dumps(FRAMES))
    change(frames[index]["labels"])
    return frames


def _inserted(frame: dict) -> list:
    """FRAMES with `frame` inserted at index 1."""
    return FRAMES[:1] + [frame] + FRAMES[1:]


BAD = {  # kind counted in `skipped` -> (frames, what the error names after the file)
    "frame without name": (_inserted({"attributes": {}}), "frame 1 has no 'name'"),
    "label without category": (_changed(0, lambda labels: labels[1].pop("category")),
                               r"frame 0 \(a.jpg\): label 1 has no 'category'"),
    "label without box2d": (_changed(0, lambda labels: labels[1].pop("box2d")),
                            r"frame 0 \(a.jpg\): label 1 \(car\) has no box2d"),
    "box with x2<x1 or y2<y1": (_changed(2, lambda labels: labels[0]["box2d"].update(x2=5)),
                                r"frame 2 \(c.jpg\): label 0 \(truck\).*x2<x1"),
    "unknown category": (_changed(0, lambda labels: labels[0].update(category="lane")),
                         r"frame 0 \(a.jpg\): label 0 has category 'lane'"),
    "missing image": (_inserted({"name": "ghost.jpg", "labels": []}),
                      r"frame 1 \(ghost.jpg\).*images/100k/train/ghost.jpg does not exist"),
}


@pytest.mark.parametrize("kind", BAD)
def test_bad_labels_error_or_skip(tmp_path: Path, kind: str) -> None:
    frames, message = BAD[kind]
    root = make_bdd(tmp_path / "bdd100k", frames)
    with pytest.raises(DatasetError, match=r"det_train\.json: " + message):
        BDD100KDataset(root, "train", ("det",))
    ds = BDD100KDataset(root, "train", ("det",), on_bad_label="skip")
    assert dict(ds.skipped) == {kind: 1}
    assert [f.name for f in ds.frames] == ["a", "b", "c", "d"]
    assert all(len(f.boxes) == len(f.classes) == len(f.crowd) == len(f.occluded) for f in ds.frames)


def test_bad_files(bdd: Path, capsys: pytest.CaptureFixture) -> None:
    (bdd / "labels" / "det_20" / "det_train.json").write_text(json.dumps({"frames": FRAMES}))
    for mode in ("error", "skip"):  # nothing to skip to: the file is the wrong one
        with pytest.raises(DatasetError, match="det_train.json: expected a list of frames"):
            BDD100KDataset(bdd, "train", ("det",), on_bad_label=mode)
    (bdd / "images" / "10k" / "train" / "s2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"sem_seg/masks/train/s2.png: its image .*s2.jpg does not exist"):
        BDD100KDataset(bdd, "train", ("seg",))
    ds = BDD100KDataset(bdd, "train", ("seg",), on_bad_label="skip")
    assert len(ds) == 1 and dict(ds.skipped) == {"missing image": 1}
    assert "skipped bad labels/frames: {'missing image': 1}" in capsys.readouterr().out
    _png(bdd / "labels" / "sem_seg" / "masks" / "train" / "s1.png", np.full((H, W), 19))
    with pytest.raises(DatasetError, match=r"s1.png: values \[19\] are not a Cityscapes train id"):
        ds[0]
    with pytest.raises(ValueError, match="no labels for tasks.*depth"):
        BDD100KDataset(bdd, "train", ("depth",))
    with pytest.raises(ValueError, match="unknown tasks.*drivable"):  # Cityscapes has no drivable labels
        CityscapesDataset(bdd, "train", ("drivable",))


def test_registered_loader_resizes_for_training_and_collates(bdd: Path) -> None:
    cfg = load_config(None, TINY_TRAIN + ["tasks=[det,seg,drivable,scene]"], defaults=None)
    train = DATASETS.get("bdd100k")(bdd, "train", tuple(cfg.tasks), cfg.data, True)
    assert train[0]["image"].shape == (3, 64, 128) and train[0]["drivable"].shape == (64, 128)
    batch = collate([train[0], train[2], train[4]])  # drivable; no drivable mask; 10K seg frame
    assert batch["has"]["drivable"].tolist() == [True, False, False]
    assert batch["has"]["seg"].tolist() == [False, False, True]
    assert batch["drivable"].dtype == torch.int64 and (batch["drivable"][1:] == IGNORE).all()
    assert (batch["semantic"][:2] == IGNORE).all() and batch["scene"][2].tolist() == [-1, -1]
    val = DATASETS.get("bdd100k")(bdd, "val", tuple(cfg.tasks), cfg.data, False)
    assert val[0]["image"].shape == (3, H, W)  # evaluation at the native size


def test_drivable_task_loss_and_metric() -> None:
    cfg = load_config(None, TINY_TRAIN + ["tasks=[drivable]"], defaults=None)
    task = TASKS.get("drivable")(cfg)
    head = task.build_head(16, [4, 8])
    assert head({4: torch.zeros(2, 16, 8, 8), 8: torch.zeros(2, 16, 4, 4)}).shape == (2, 3, 32, 32)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[0, 0, 0] = IGNORE
    batch = {"drivable": target, "has": {"drivable": torch.tensor([True, False])}}
    loss = task.loss(head, logits, batch)["ce"]
    assert torch.isclose(loss, F.cross_entropy(logits[:1], target[:1], ignore_index=IGNORE))
    batch["drivable"] = torch.full_like(target, IGNORE)
    assert task.loss(head, logits, batch) == {}  # no labelled pixel: no loss, not nan
    metric = task.metric()
    truth = torch.tensor([[[0, 0, 1, 2], [IGNORE, 2, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1, 2], [0, 2, 2, 2]]])
    task.update(metric, torch.cat([pred, 1 - pred.clamp(max=1)]),
                {"drivable": torch.cat([truth, truth]), "has": {"drivable": torch.tensor([True, False])}})
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result == pytest.approx({"mIoU": (0.5 + 0.5 + 1) / 3, "direct_IoU": 0.5, "alternative_IoU": 0.5})


def test_scene_task_ignores_unknown_attributes() -> None:
    cfg = load_config(None, TINY_TRAIN + ["tasks=[scene]"], defaults=None)
    task = TASKS.get("scene")(cfg)
    logits = torch.randn(3, 6)
    scene = torch.tensor([[0, -1], [-1, -1], [2, -1]])
    losses = task.loss(None, logits, {"scene": scene, "has": {"scene": torch.ones(3, dtype=torch.bool)}})
    assert set(losses) == {"weather"}  # time unknown everywhere: no loss rather than nan
    assert torch.isclose(losses["weather"], F.cross_entropy(logits[[0, 2], :3], scene[[0, 2], 0]))
    metric = task.metric()
    pred = torch.tensor([[0, 1], [1, 1], [1, 2]])
    task.update(metric, pred, {"scene": torch.tensor([[0, -1], [-1, 1], [2, 0]]),
                               "has": {"scene": torch.ones(3, dtype=torch.bool)}})
    result = {k: float(v) for k, v in metric.compute().items()}
    assert result == pytest.approx({"weather_acc": 0.5, "time_acc": 0.5})


def test_export_skips_tasks_a_batch_lacks(tmp_path: Path) -> None:
    cfg = load_config(None, ["tasks=[seg,drivable]"], defaults=None)
    writer = PredictionWriter(tmp_path, {t: TASKS.get(t)(cfg) for t in ("seg", "drivable")})
    batch = {"frame": ["a"], "image": torch.zeros(1, 3, H, W), "has": {"drivable": torch.tensor([True])}}
    writer.add(batch, {"seg": torch.zeros(1, H, W, dtype=torch.int64), "drivable": torch.zeros(1, H, W)})
    writer.close()
    assert not any(tmp_path.iterdir())


def test_training_steps_on_bdd100k(bdd: Path, tmp_path: Path) -> None:
    from perception_mtl.engine.trainer import Trainer

    cfg = load_config(None, TINY_TRAIN + ["data.dataset=bdd100k", f"data.root={bdd}", "train.steps=2",
                                          "tasks=[det,seg,drivable,scene]", f"output_dir={tmp_path / 'run'}"],
                      defaults=None)
    metrics = Trainer(cfg).fit()
    for key in ("det/mAP", "seg/mIoU", "drivable/mIoU", "drivable/direct_IoU", "scene/weather_acc"):
        assert key in metrics and np.isfinite(metrics[key]), key
