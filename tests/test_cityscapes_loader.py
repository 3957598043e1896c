"""The Cityscapes loader on the driving world: round trips with known answers, bad input."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from PIL import Image

from perception_mtl.data.cityscapes import TIMES, WEATHERS, CityscapesDataset, DatasetError
from perception_mtl.data.labels import DET_CLASSES, SEG_CLASSES
from perception_mtl.data.world.generate import WorldSpec, generate, render_frame

from conftest import TINY


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_disparity_round_trip_gives_depth_within_quantisation(tiny_world):
    ds = CityscapesDataset(tiny_world, "train", tasks=("depth",))
    for i in range(len(ds)):
        truth = render_frame(TINY, "train", i).depth
        loaded = ds[i]["depth"].numpy()
        assert np.array_equal(loaded > 0, truth > 0)
        valid = truth > 0
        camera = json.loads(ds.path(i, "camera", "_camera.json").read_text())
        bf = camera["extrinsic"]["baseline"] * camera["intrinsic"]["fx"]
        # disparity is stored to 1/256 px: |dz| <= z^2 / (b f) * (0.5 / 256), plus float32 error
        bound = truth[valid] ** 2 / bf * (0.5 / 256) + 1e-4 * truth[valid]
        assert np.all(np.abs(loaded[valid] - truth[valid]) <= bound)


def test_loader_boxes_are_the_extent_of_each_instance(tiny_world):
    ds = CityscapesDataset(tiny_world, "train", tasks=("det",), min_box_size=1.0)
    seen = 0
    for i in range(len(ds)):
        ids = np.array(Image.open(ds.path(i, "gtFine", "_gtFine_instanceIds.png"))).astype(np.int64)
        expected = []
        for value in np.unique(ids[ids >= 1000]):
            rows, cols = np.nonzero(ids == value)
            expected.append((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1,
                             DET_CLASSES.index({24: "person", 25: "rider", 26: "car", 27: "truck",
                                                28: "bus", 33: "bicycle"}[value // 1000])))
        sample = ds[i]
        got = sorted(tuple(b) + (c,) for b, c in zip(sample["boxes"].int().tolist(), sample["labels"].tolist()))
        assert got == sorted(expected)
        assert not sample["iscrowd"].any()
        seen += len(expected)
    assert seen > 0


def test_hflip_and_resize_keep_targets_consistent(tiny_world):
    plain = CityscapesDataset(tiny_world, "train", min_box_size=1.0)
    flipped = CityscapesDataset(tiny_world, "train", hflip=1.0, min_box_size=1.0)
    double = CityscapesDataset(tiny_world, "train", size=(128, 256), min_box_size=1.0)
    for i in range(len(plain)):
        a, b, c = plain[i], flipped[i], double[i]
        w = a["image"].shape[-1]
        assert torch.equal(b["image"], a["image"].flip(-1))
        assert torch.equal(b["semantic"], a["semantic"].flip(-1))
        assert torch.equal(b["depth"], a["depth"].flip(-1))
        expected = a["boxes"].clone()
        expected[:, [0, 2]] = w - a["boxes"][:, [2, 0]]
        assert torch.allclose(b["boxes"], expected)
        assert torch.allclose(c["boxes"], a["boxes"] * 2.0)
        assert c["semantic"].shape == c["depth"].shape == (128, 256)
        # nearest resizing: every resized depth value exists in the original (no blending)
        assert set(c["depth"].unique().tolist()) <= set(a["depth"].unique().tolist())
        assert set(c["semantic"].unique().tolist()) <= set(a["semantic"].unique().tolist())


def test_seven_category_variant():
    ds_classes = SEG_CLASSES[7]
    from perception_mtl.data.labels import SEG_LUT
    assert ds_classes[SEG_LUT[7][7]] == "flat" and ds_classes[SEG_LUT[7][26]] == "vehicle"
    assert ds_classes[SEG_LUT[7][23]] == "sky" and SEG_LUT[7][0] == 255 and SEG_LUT[19][26] == 13


def test_polygons_repaint_the_label_image(tiny_world):
    ds = CityscapesDataset(tiny_world, "val", tasks=("seg",))
    for i in range(len(ds)):
        annotation = Annotation()
        annotation.fromJsonFile(str(ds.path(i, "gtFine", "_gtFine_polygons.json")))
        painted = np.array(createLabelImage(annotation, "ids"))
        truth = np.array(Image.open(ds.path(i, "gtFine", "_gtFine_labelIds.png")))
        assert (painted == truth).mean() > 0.95


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    spec = WorldSpec(train=3, val=1, seed=3, height=48, width=96)
    one = _files(generate(tmp_path / "a", spec, workers=1, progress=False))
    two = _files(generate(tmp_path / "b", spec, workers=2, progress=False))
    other = _files(generate(tmp_path / "c", WorldSpec(train=3, val=1, seed=4, height=48, width=96),
                            workers=1, progress=False))
    assert one == two
    assert one != other and one.keys() == other.keys()


def test_scene_attributes_are_each_frames_json_as_indices(tiny_world):
    """Each frame's scene target is (weather, time of day) of its own *_scene.json, as indices into
    WEATHERS and TIMES."""
    ds = CityscapesDataset(tiny_world, "train", tasks=("scene",))
    attrs = {p.name.removesuffix("_scene.json"): json.loads(p.read_text())
             for p in (tiny_world / "scene" / "train").rglob("*_scene.json")}
    assert sorted(attrs) == sorted(ds.frame(i) for i in range(len(ds)))
    got = [ds[i]["scene"].tolist() for i in range(len(ds))]
    assert got == [[WEATHERS.index(attrs[ds.frame(i)]["weather"]), TIMES.index(attrs[ds.frame(i)]["timeofday"])]
                   for i in range(len(ds))]
    assert len({tuple(g) for g in got}) > 1  # the frames differ, so one frame's answer for all would fail


def test_missing_root_shows_layout_and_command(tmp_path):
    with pytest.raises(DatasetError) as err:
        CityscapesDataset(tmp_path / "nowhere", "train")
    assert "leftImg8bit/train" in str(err.value) and "tools/make_synthetic.py" in str(err.value)


def test_missing_task_folder_is_named(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root)
    shutil.rmtree(root / "disparity")
    with pytest.raises(DatasetError, match="depth.*disparity"):
        CityscapesDataset(root, "train", tasks=("depth",))


def test_corrupt_and_missing_files_are_named(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root)
    ds = CityscapesDataset(root, "train")
    labels = ds.path(0, "gtFine", "_gtFine_labelIds.png")
    labels.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=str(labels.name)):
        ds[0]
    disparity = ds.path(1, "disparity", "_disparity.png")
    disparity.unlink()
    with pytest.raises(DatasetError, match=f"missing file .*{disparity.name}"):
        ds[1]
    camera = ds.path(2, "camera", "_camera.json")
    camera.write_text("{}")
    with pytest.raises(DatasetError, match=camera.name):
        ds[2]


def test_crowd_regions_become_crowd_boxes(tiny_world, tmp_path):
    root = tmp_path / "w"
    shutil.copytree(tiny_world, root)
    ds = CityscapesDataset(root, "train", tasks=("det",), min_box_size=1.0)
    path = ds.path(0, "gtFine", "_gtFine_instanceIds.png")
    ids = np.array(Image.open(path)).astype(np.uint16)
    ids[2:6, 3:9] = 26  # a car group without instance ids, as Cityscapes marks crowds
    Image.fromarray(ids).save(path)
    sample = ds[0]
    crowd = sample["boxes"][sample["iscrowd"]]
    assert crowd.tolist() == [[3.0, 2.0, 9.0, 6.0]]
    assert sample["labels"][sample["iscrowd"]].tolist() == [DET_CLASSES.index("car")]
