"""KITTI loader on tiny files written as the official ones: object label_2, semantics, depth."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perception_mtl.data import DATASETS
from perception_mtl.data.cityscapes import DatasetError
from perception_mtl.data.collate import collate
from perception_mtl.data.kitti import KittiDataset
from perception_mtl.data.kitti_labels import DEFAULT_CLASS_MAP, parse_label_line
from perception_mtl.data.labels import DET_CLASSES, IGNORE
from perception_mtl.engine.builders import load_config
from tests.helpers import TINY_TRAIN

H, W = 40, 130
PERSON, RIDER, CAR, TRUCK, TRAIN, BICYCLE = (DET_CLASSES.index(c) for c in
                                             ("person", "rider", "car", "truck", "train", "bicycle"))
EVERY = list(range(len(DET_CLASSES)))  # an ignore region is a crowd box of every class
DONTCARE = "DontCare -1 -1 -10 5.00 2.00 25.00 12.00 -1 -1 -1 -1000 -1000 -1000 -10"
OBJECT_LABELS = {  # frame id -> label_2 text (all 15 fields a line; a 16th score is accepted)
    "000000": "Car 0.00 0 -1.58 10.00 5.00 40.50 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62\n"
              "Cyclist 0.00 1 -2.00 50.00 8.00 60.00 35.00 1.70 0.60 1.80 1.20 1.60 15.00 -1.70\n"
              + DONTCARE + "\n"
              "Truck 0.88 2 1.50 110.00 0.00 141.00 39.00 3.20 2.50 8.00 9.00 1.80 20.00 1.90\n"  # truncated
              "Van 0.00 0 0.20 70.00 10.00 90.00 30.00 2.00 1.90 4.50 3.00 1.70 25.00 0.30\n",
    "000001": "",  # an empty label file
    "000002": "Pedestrian 0.00 0 0.10 20.00 4.00 30.00 36.00 1.75 0.60 0.80 -1.00 1.70 9.00 0.00 0.97\n"
              "Person_sitting 0.00 1 0.10 35.00 20.00 45.00 36.00 1.10 0.60 0.80 0.00 1.70 9.00 0.00\n"
              "Misc 0.00 0 0.10 60.00 10.00 80.00 30.00 1.00 1.00 1.00 2.00 1.70 9.00 0.00\n"
              "Tram 0.00 0 0.10 90.00 2.00 128.00 38.00 3.50 2.60 14.00 5.00 1.70 30.00 0.00\n",
    "000003": DONTCARE + "\n",  # no objects, one unlabelled region
    "000004": "Car 0.00 0 -1.58 10.00 5.00 40.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62\n",  # val
    "000005": "\n",  # an image without objects (a blank line)
}
SIZES = {"000004": (38, 126)}  # KITTI's frames differ in size
SEMANTIC_IDS = np.array([7, 26, 24, 23, 0], np.uint8)  # road, car, person, sky, unlabeled
TRAIN_IDS = {19: [0, 13, 11, 10, IGNORE], 7: [0, 6, 5, 4, IGNORE]}
DRIVES = {"train": "2011_09_26_drive_0001_sync", "val": "2011_09_28_drive_0002_sync"}


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(path: Path, size: tuple[int, int], seed: int) -> None:
    _png(path, np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def _depth_png(size: tuple[int, int], seed: int) -> np.ndarray:
    """uint16 depth * 256 with a third of the pixels 0 (no LiDAR point), and the extremes."""
    raw = np.random.default_rng(seed).integers(1, 65536, size, dtype=np.uint16)
    raw[np.random.default_rng(seed + 1).random(size) < 0.33] = 0
    raw[0, :3] = (1, 256, 65535)
    return raw


def make_object(root: Path, labels: dict[str, str | None]) -> None:
    """object/training/{image_2,label_2}; a label of None: no label file."""
    for k, (stem, text) in enumerate(labels.items()):
        _image(root / "object/training/image_2" / f"{stem}.png", SIZES.get(stem, (H, W)), k)
        if text is not None:
            (root / "object/training/label_2").mkdir(parents=True, exist_ok=True)
            (root / "object/training/label_2" / f"{stem}.txt").write_text(text)


def make_kitti(root: Path) -> Path:
    make_object(root, OBJECT_LABELS)
    for k in range(5):  # semantics: 4 train frames, 000004_10 val
        _image(root / "semantics/training/image_2" / f"{k:06d}_10.png", (H, W), 10 + k)
        _png(root / "semantics/training/semantic" / f"{k:06d}_10.png", np.resize(SEMANTIC_IDS, (H, W)))
    for split, drive in DRIVES.items():
        size = (H, W) if split == "train" else (42, 132)
        for frame in range(8):  # raw frames; ground truth only for some (as KITTI leaves out drive ends)
            _image(root / "depth/raw" / drive[:10] / drive / "image_02/data" / f"{frame:010d}.png", size, 20 + frame)
        truth = root / "depth/data_depth_annotated" / split / drive / "proj_depth/groundtruth/image_02"
        for frame in (5, 6) if split == "train" else (5,):
            _png(truth / f"{frame:010d}.png", _depth_png(size, frame))
    return root


@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_kitti(tmp_path_factory.mktemp("kitti"))


def _by_frame(ds: KittiDataset) -> dict[str, dict]:
    return {ds[i]["frame"]: ds[i] for i in range(len(ds))}


def test_label_line_has_all_fields() -> None:
    obj = parse_label_line(OBJECT_LABELS["000000"].splitlines()[0])
    assert obj.type == "Car" and obj.truncated == 0 and obj.occluded == 0 and obj.alpha == -1.58
    assert obj.bbox == (10, 5, 40.5, 30) and obj.dimensions == (1.48, 1.6, 3.9)
    assert obj.location == (-2.1, 1.7, 12.3) and obj.rotation_y == -1.62 and obj.score is None
    assert parse_label_line(OBJECT_LABELS["000002"].splitlines()[0]).score == 0.97


def test_detection_boxes_classes_and_ignore_regions(kitti: Path) -> None:
    ds = KittiDataset(kitti, "train", ("det",))
    frames = _by_frame(ds)
    assert list(frames) == [f"object/{s}" for s in ("000000", "000001", "000002", "000003", "000005")]
    s = frames["object/000000"]
    assert s["has"] == {"det"} and s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    real = ~s["iscrowd"]
    assert s["boxes"][real].tolist() == [[10, 5, 40.5, 30], [50, 8, 60, 35], [110, 0, 130, 39], [70, 10, 90, 30]]
    assert s["labels"][real].tolist() == [CAR, RIDER, TRUCK, CAR]  # Van -> car; the truck clipped at W
    assert s["labels"][~real].tolist() == EVERY and (s["boxes"][~real] == torch.tensor([5, 2, 25, 12.0])).all()
    s = frames["object/000002"]  # score field accepted; Misc is an ignore region
    assert s["labels"][~s["iscrowd"]].tolist() == [PERSON, PERSON, TRAIN]
    assert s["labels"][s["iscrowd"]].tolist() == EVERY and (s["boxes"][s["iscrowd"]][:, 0] == 60).all()
    for stem in ("000001", "000005"):  # empty label file, no objects
        assert frames[f"object/{stem}"]["boxes"].shape == (0, 4) and frames[f"object/{stem}"]["labels"].shape == (0,)
    assert frames["object/000003"]["iscrowd"].all() and len(frames["object/000003"]["iscrowd"]) == len(DET_CLASSES)


def test_class_map_overrides_and_errors(kitti: Path) -> None:
    s = KittiDataset(kitti, "train", ("det",), class_map={"Cyclist": "bicycle", "Van": None})[0]
    assert s["labels"][~s["iscrowd"]].tolist() == [CAR, BICYCLE, TRUCK]
    assert s["iscrowd"].sum() == 2 * len(DET_CLASSES)  # DontCare and the van
    with pytest.raises(ValueError, match="'automobile' is not a detection class") as err:
        KittiDataset(kitti, "train", ("det",), class_map={"Car": "automobile"})
    assert all(name in str(err.value) for name in DET_CLASSES)
    with pytest.raises(ValueError, match=r"\['car'\], not KITTI object types.*Person_sitting"):
        KittiDataset(kitti, "train", ("det",), class_map={"car": "car"})


def test_depth_is_png_over_256_with_zero_invalid(kitti: Path) -> None:
    ds = KittiDataset(kitti, "train", ("depth",))
    drive = DRIVES["train"]
    assert [f["frame"] for f in (ds[0], ds[1])] == [f"depth/{drive}/0000000005", f"depth/{drive}/0000000006"]
    for frame, s in zip((5, 6), (ds[0], ds[1])):
        raw = _depth_png((H, W), frame)
        assert s["depth"].dtype == torch.float32 and s["has"] == {"depth"} and "boxes" not in s
        assert torch.equal(s["depth"], torch.from_numpy(raw.astype(np.float32) / 256))
        assert ((s["depth"] == 0) == torch.from_numpy(raw == 0)).all()
    assert ds[0]["depth"][0, :3].tolist() == [1 / 256, 1.0, 65535 / 256]


@pytest.mark.parametrize("crop, rows", [("garg", (0.40810811, 0.99189189)), ("eigen", (0.3324324, 0.91351351))])
def test_depth_evaluation_crop(kitti: Path, crop: str, rows: tuple[float, float]) -> None:
    h, w = 42, 132
    depth = KittiDataset(kitti, "val", ("depth",), depth_crop=crop)[0]["depth"].numpy()
    expected = _depth_png((h, w), 5).astype(np.float32) / 256
    inside = np.zeros((h, w), bool)
    inside[int(rows[0] * h):int(rows[1] * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    expected[~inside] = 0
    assert np.array_equal(depth, expected) and (depth[inside] > 0).any() and (depth[~inside] == 0).all()
    assert (KittiDataset(kitti, "val", ("depth",))[0]["depth"].numpy()[~inside] > 0).any()  # no crop


@pytest.mark.parametrize("classes", [19, 7])
def test_semantics_label_ids_to_train_ids(kitti: Path, classes: int) -> None:
    ds = KittiDataset(kitti, "train", ("seg",), seg_classes=classes)
    assert [ds[i]["frame"] for i in range(len(ds))] == [f"semantics/{k:06d}_10" for k in range(4)]
    lut = dict(zip(SEMANTIC_IDS.tolist(), TRAIN_IDS[classes]))
    expected = np.vectorize(lut.get)(np.resize(SEMANTIC_IDS, (H, W)))
    assert np.array_equal(ds[0]["semantic"].numpy(), expected) and ds[0]["has"] == {"seg"}
    both = KittiDataset(kitti, "val", ("seg", "edges"))
    assert len(both) == 1 and both.tasks_of(0) == {"seg", "edges"}


def test_hold_out_and_imagesets_splits(kitti: Path, tmp_path: Path) -> None:
    assert [f.name for f in KittiDataset(kitti, "val", ("det",)).frames] == ["object/000004"]
    root = shutil.copytree(kitti / "object", tmp_path / "object")
    (root / "ImageSets").mkdir()
    (root / "ImageSets/train.txt").write_text("000003\n000001\n")
    (root / "ImageSets/val.txt").write_text("000000\n\n000002\n")
    assert [f.name for f in KittiDataset(tmp_path, "train", ("det",)).frames] == ["object/000003", "object/000001"]
    assert [f.name for f in KittiDataset(tmp_path, "val", ("det",)).frames] == ["object/000000", "object/000002"]
    (root / "ImageSets/val.txt").write_text("000000\n000042\n")
    with pytest.raises(DatasetError, match=r"val.txt:2: image .*000042.png does not exist"):
        KittiDataset(tmp_path, "val", ("det",))


def test_parts_concatenate_with_partial_labels(kitti: Path) -> None:
    ds = KittiDataset(kitti, "val", ("det", "seg", "depth"))
    assert [ds.tasks_of(i) for i in range(len(ds))] == [{"det"}, {"seg"}, {"depth"}]
    samples = [ds[i] for i in range(len(ds))]
    # evaluation: native pixels, cropped to the smallest frame (38x126): bottom rows, centre columns
    assert all(s["image"].shape == (3, 38, 126) for s in samples)
    native = _depth_png((42, 132), 5).astype(np.float32) / 256
    assert np.array_equal(samples[2]["depth"].numpy(), native[4:, 3:129])
    semantic = KittiDataset(kitti, "val", ("seg",))[0]["semantic"]  # alone: not cropped
    assert torch.equal(samples[1]["semantic"], semantic[2:, 2:128])
    batch = collate(samples)
    assert batch["image"].shape == (3, 3, 38, 126)
    assert {t: m.tolist() for t, m in batch["has"].items()} == {
        "det": [True, False, False], "seg": [False, True, False], "depth": [False, False, True]}
    assert (batch["semantic"][[0, 2]] == IGNORE).all() and (batch["depth"][:2] == 0).all()
    assert batch["boxes"][0].tolist() == [[10, 5, 40, 30]] and batch["boxes"][1].shape == (0, 4)


def test_registered_loader_resizes_for_training(kitti: Path) -> None:
    cfg = load_config(None, TINY_TRAIN + ["data.class_map={Cyclist: bicycle}"], defaults=None)
    ds = DATASETS.get("kitti")(kitti, "train", tuple(cfg.tasks), cfg.data, True)
    assert len(ds) == 5 + 4 + 2
    batch = collate([ds[0], ds[5], ds[9]])
    assert batch["image"].shape == (3, 3, 64, 128) and batch["depth"].shape == (3, 64, 128)
    assert BICYCLE in batch["labels"][0].tolist()
    assert load_config("configs/dataset/kitti.yaml").data.class_map == DEFAULT_CLASS_MAP


def test_missing_parts_name_the_layout(kitti: Path, tmp_path: Path) -> None:
    shutil.copytree(kitti / "object", tmp_path / "object")
    with pytest.raises(DatasetError, match=r"tasks \['depth'\] need .*data_depth_annotated/train") as err:
        KittiDataset(tmp_path, "train", ("det", "depth"))
    assert "proj_depth/groundtruth/image_02" in str(err.value) and "semantics" not in str(err.value)
    with pytest.raises(DatasetError, match="no KITTI data for tasks") as err:
        KittiDataset(tmp_path / "nothing", "train", ("det", "seg", "depth"))
    assert "need" not in str(err.value) and all(p in str(err.value) for p in ("label_2", "semantic/", "image_02"))


BAD_LINES = {  # case -> (label_2 line, what the error says)
    "14 fields": ("Car 0.00 0 -1.58 10.00 5.00 40.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30",
                  "expected 15 fields"),
    "not a number": ("Car 0.00 0 -1.58 10.00 five 40.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62",
                     r"field 6 \(top\) 'five' is not a number"),
    "negative size": ("Car 0.00 0 -1.58 40.00 5.00 10.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62",
                      r"box \(left 40.0, top 5.0, right 10.0, bottom 30.0\) has negative size"),
    "unknown type": ("Bus 0.00 0 -1.58 10.00 5.00 40.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62",
                     "type 'Bus' is not a KITTI object type"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_bad_label_line_error_or_skip(tmp_path: Path, case: str) -> None:
    line, reason = BAD_LINES[case]
    make_object(tmp_path, {"000000": OBJECT_LABELS["000004"], "000001": OBJECT_LABELS["000004"] + line + "\n"})
    with pytest.raises(DatasetError, match=rf"label_2/000001.txt:2: {reason}"):
        KittiDataset(tmp_path, "train", ("det",))
    ds = KittiDataset(tmp_path, "train", ("det",), on_bad_label="skip")
    assert ds.skipped == {"bad label line": 1} and [f.name for f in ds.frames] == ["object/000000"]


def test_missing_label_file_error_or_skip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_object(tmp_path, {"000000": OBJECT_LABELS["000004"], "000001": None})
    with pytest.raises(DatasetError, match=r"image_2/000001.png: label file .*label_2/000001.txt does not exist"):
        KittiDataset(tmp_path, "train", ("det",))
    ds = KittiDataset(tmp_path, "train", ("det",), on_bad_label="skip")
    assert ds.skipped == {"missing label file": 1} and len(ds) == 1
    assert capsys.readouterr().out.count("skipped bad labels/frames: {'missing label file': 1}") == 1


def test_unreadable_png_error_or_skip(kitti: Path, tmp_path: Path) -> None:
    shutil.copytree(kitti / "depth", tmp_path / "depth")
    drive = DRIVES["train"]
    truth = tmp_path / "depth/data_depth_annotated/train" / drive / "proj_depth/groundtruth/image_02/0000000005.png"
    truth.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError, match="cannot read .*0000000005.png"):
        KittiDataset(tmp_path, "train", ("depth",))[0]
    ds = KittiDataset(tmp_path, "train", ("depth",), on_bad_label="skip")
    with pytest.warns(UserWarning, match="0000000005.png"):
        sample = ds[0]
    assert sample["frame"] == f"depth/{drive}/0000000006"  # the next frame of its part
    assert sample["unreadable"] == [f"depth/{drive}/0000000005"]
    # the names leave a DataLoader worker with the batch, where the trainer counts them
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=1)
    assert next(iter(loader))["unreadable"] == [f"depth/{drive}/0000000005"]  # (the worker warns on its stderr)
    image = tmp_path / "depth/raw" / drive[:10] / drive / "image_02/data/0000000006.png"
    image.write_bytes(b"broken")
    with pytest.raises(DatasetError, match="cannot read .*image_02/data/0000000006.png"):
        KittiDataset(tmp_path, "train", ("depth",))  # evaluation reads the image headers at construction
    assert KittiDataset(tmp_path, "train", ("depth",), on_bad_label="skip").skipped == {"unreadable image": 1}


def test_training_steps_on_kitti(kitti: Path, tmp_path: Path) -> None:
    from perception_mtl.engine.trainer import Trainer

    cfg = load_config(None, TINY_TRAIN + ["data.dataset=kitti", f"data.root={kitti}", "train.steps=2",
                                          "data.depth_crop=garg", f"output_dir={tmp_path / 'run'}"], defaults=None)
    metrics = Trainer(cfg).fit()  # evaluates at the last step, on frames of three sizes
    for key in ("det/mAP", "seg/mIoU", "depth/abs_rel"):
        assert key in metrics and np.isfinite(metrics[key]), key


def test_the_trainer_counts_frames_passed_over_in_data_workers(kitti: Path, tmp_path: Path) -> None:
    """A frame skipped inside a DataLoader worker reaches train/unreadable_frames and the checkpoint."""
    import json

    from perception_mtl.engine.trainer import Trainer

    shutil.copytree(kitti / "depth", tmp_path / "depth")
    truth = tmp_path / "depth/data_depth_annotated/train" / DRIVES["train"] / "proj_depth/groundtruth/image_02"
    (truth / "0000000005.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # 1 of the 2 train frames
    cfg = load_config(None, TINY_TRAIN + ["tasks=[depth]", "data.dataset=kitti", f"data.root={tmp_path}",
                                          "data.on_bad_label=skip", "data.workers=1", "train.steps=2",
                                          "train.checkpoint_every=1", f"output_dir={tmp_path / 'run'}"], defaults=None)
    trainer = Trainer(cfg)
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    logged = [r["train/unreadable_frames"] for r in rows if "train/unreadable_frames" in r]
    assert trainer.unreadable >= 1 and logged[-1] == trainer.unreadable  # 6 draws of 2 frames: some hit 000005
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["unreadable"] == trainer.unreadable
