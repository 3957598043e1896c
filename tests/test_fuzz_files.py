"""Fuzzed files of every kind the loaders read (hypothesis; examples per test: tests/fuzzing.py's
`examples` times the profile's count): Cityscapes PNGs (image, labelIds, instanceIds, disparity),
camera and polygon JSON, KITTI label_2 files, BDD100K det_20 JSON and checkpoints, each mutated
byte by byte from a good file (and polygons and checkpoints also structurally). Each example,
read through the function a tool runs, ends in a valid result or in "<kind> error: ..." with exit
code 2 (tests/fuzzing.py's `ends_well`); any other exception is a crash."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from perception_mtl.data.bdd100k import BDD100KDataset
from perception_mtl.data.cityscapes import CityscapesDataset
from perception_mtl.data.kitti import KittiDataset
from perception_mtl.engine.checkpoint_eval import evaluate_checkpoint, open_checkpoint
from perception_mtl.engine.trainer import Trainer

from fuzzing import JSON, ends_well, examples, mutations
from helpers import tiny_config
from tests.test_bad_input import FILES, H, STEM, W, _check, _good_files
from tests.test_bdd100k import FRAMES, make_bdd
from tests.test_kitti import OBJECT_LABELS, make_object

POLYGONS = {"imgHeight": H, "imgWidth": W, "objects": [
    {"label": "car", "polygon": [[3, 2], [8, 2], [8, 5], [3, 5]], "deleted": 0},
    {"label": "persongroup", "polygon": [[10, 1], [14, 1], [12, 7]], "deleted": 0},
    {"label": "road", "polygon": [[0, 6], [15, 6], [15, 7]], "deleted": 0}]}
GOOD = {**_good_files(), "polygons": json.dumps(POLYGONS).encode()}
FOLDERS = {**FILES, "polygons": ("gtFine", "_gtFine_polygons.json")}


def _cityscapes_sample(replace: dict[str, bytes]) -> dict:
    """Write one frame (good files, `replace` swapped in) and read it with every task, boxes from
    the polygons when they are fuzzed."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in {**GOOD, **replace}.items():
            folder, suffix = FOLDERS[name]
            path = Path(tmp) / folder / "train" / "city" / f"{STEM}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return CityscapesDataset(tmp, "train", ("det", "seg", "depth", "scene"), polygon_boxes="polygons" in replace)[0]


def _valid_boxes(samples: list[dict]) -> None:
    for sample in samples:
        boxes, (h, w) = sample["boxes"], sample["image"].shape[-2:]
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= h)).all()
        assert all(int(c) >= 0 for c in sample["labels"])  # the class set is the loader's (data.det_classes)


@pytest.mark.parametrize("name", ["image", "labels", "instances", "disparity", "camera", "polygons"])
@examples(1)
@given(data=st.data())
def test_mutated_cityscapes_files(name, data):
    _, sample = ends_well(_cityscapes_sample, {name: data.draw(mutations(GOOD[name]), label=name)})
    if sample is not None:
        _check(sample)


POINT = st.one_of(st.tuples(st.integers(-5, 30), st.integers(-5, 30)).map(list), JSON)
OBJECT = st.fixed_dictionaries({"label": st.one_of(st.sampled_from(["car", "cargroup", "person", "road", "x"]), JSON),
                                "polygon": st.one_of(st.lists(POINT, max_size=4), JSON),
                                "deleted": st.one_of(st.sampled_from([0, 1]), JSON)})
POLYGON_FILE = st.one_of(JSON, st.fixed_dictionaries({"imgHeight": st.one_of(st.just(H), JSON),
                                                      "imgWidth": st.one_of(st.just(W), JSON),
                                                      "objects": st.one_of(st.lists(OBJECT, max_size=3), JSON)}))


@examples(2)
@given(POLYGON_FILE)
def test_any_polygons_json(polygons):
    _, sample = ends_well(_cityscapes_sample, {"polygons": json.dumps(polygons).encode()})
    if sample is not None:
        _check(sample)


def _kitti_samples(content: bytes, mode: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        make_object(Path(tmp), {"000000": OBJECT_LABELS["000004"], "000001": ""})
        (Path(tmp) / "object/training/label_2/000001.txt").write_bytes(content)
        ds = KittiDataset(tmp, "train", ("det",), on_bad_label=mode)
        return [ds[i] for i in range(len(ds))]


@examples(2)
@given(mutations(OBJECT_LABELS["000000"].encode()), st.sampled_from(["error", "skip"]))
def test_mutated_kitti_label_files(content, mode):
    _, samples = ends_well(_kitti_samples, content, mode)
    if samples is not None:
        _valid_boxes(samples)


def _bdd_samples(content: bytes, mode: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_bdd(Path(tmp) / "bdd100k")
        (root / "labels/det_20/det_train.json").write_bytes(content)
        ds = BDD100KDataset(root, "train", ("det",), on_bad_label=mode)
        return [ds[i] for i in range(len(ds))]


@examples(2)
@given(mutations(json.dumps(FRAMES).encode()), st.sampled_from(["error", "skip"]))
def test_mutated_bdd100k_label_files(content, mode):
    _, samples = ends_well(_bdd_samples, content, mode)
    if samples is not None:
        _valid_boxes(samples)


def _evaluate(path: Path) -> dict:
    """What tools/evaluate.py runs: the checkpoint opened and evaluated on one val frame."""
    return evaluate_checkpoint(open_checkpoint(path, limit=1), progress=False)


@examples(1)
@given(st.data())
def test_mutated_checkpoint_files(tiny_checkpoint, data):
    content = data.draw(mutations(tiny_checkpoint.read_bytes()), label="checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "last.pt").write_bytes(content)
        _, metrics = ends_well(_evaluate, Path(tmp) / "last.pt")
    assert metrics is None or all(isinstance(v, float) for v in metrics.values())


DROP = object()  # a state entry removed
STATE_EDITS = st.lists(st.tuples(st.sampled_from(["model", "config", "step", "optimizer", "scheduler", "balancer",
                                                  "rng", "hooks", "skipped", "schedule"]),
                                 st.one_of(st.just(DROP), JSON)), min_size=1, max_size=2)
WEIGHT_EDITS = st.one_of(st.just("drop a tensor"), st.just("reshape a tensor"), st.just("rename a tensor"))


def _edited(state: dict, edits: list, weights: str | None) -> dict:
    state = {**state, "model": dict(state["model"])}
    if weights is not None:
        name = next(iter(state["model"]))
        tensor = state["model"].pop(name)
        if weights == "reshape a tensor":
            state["model"][name] = tensor.reshape(-1)[:-1] if tensor.numel() > 1 else tensor.reshape(1, 1, 1)
        elif weights == "rename a tensor":
            state["model"][name + "_x"] = tensor
    for key, value in edits:
        if value is DROP:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def _resume(world: Path, out: Path) -> int:
    """What tools/train.py --resume runs first: the trainer restored from out/last.pt."""
    return Trainer(tiny_config(world, out, "train.steps=3", "resume=true")).step


@examples(0.5)
@given(STATE_EDITS, st.one_of(st.none(), WEIGHT_EDITS))
def test_checkpoints_with_wrong_entries(tiny_world, tiny_checkpoint, edits, weights):
    state = _edited(torch.load(tiny_checkpoint, weights_only=False), edits, weights)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / "last.pt")
        ends_well(_evaluate, Path(tmp) / "last.pt")
        ends_well(_resume, tiny_world, Path(tmp))


@pytest.mark.parametrize("objects, crash", [  # polygons the fuzzing found, and how they crashed before
    ([{"label": "car", "polygon": {"": None}, "deleted": 0}], "IndexError: string index out of range"),
    ([{"label": "car", "polygon": [["a", 1], [3, 4]], "deleted": 0}], "TypeError: '<' not supported"),
], ids=["polygon a mapping", "a coordinate a string"])
def test_polygons_that_crashed_are_data_errors(objects, crash):
    polygons = json.dumps({"imgHeight": H, "imgWidth": W, "objects": objects}).encode()
    message, _ = ends_well(_cityscapes_sample, {"polygons": polygons})
    assert message is not None and message.startswith("data error: cannot parse ")
    assert "_gtFine_polygons.json" in message
