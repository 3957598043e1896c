"""Bad input, systematically (hypothesis): the config loader and the Cityscapes, KITTI and BDD100K label parsers
either accept an input and return something valid, or raise their own error naming what is
wrong (ConfigError, DatasetError), never another exception."""
from __future__ import annotations

import io
import json
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from perception_mtl.core.config import ConfigError, _valid_keys, structured
from perception_mtl.data.cityscapes import TIMES, WEATHERS, CityscapesDataset, DatasetError
from perception_mtl.data.det_classes import CLASS_SETS
from perception_mtl.data.labels import DET_CLASSES
from perception_mtl.engine.builders import load_config, selection_metric

FAST = settings(max_examples=settings.default.max_examples * 5 // 2,  # 25 in the ci profile (tests/conftest.py)
                deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = _valid_keys(structured())  # the task sections included (engine.builders registers the tasks)
TEXT = st.text(alphabet=string.ascii_letters + string.digits + " _-.,:[]{}$'\"/", max_size=12)
VALUES = st.one_of(TEXT, st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(str),
                   st.sampled_from(["", "null", "[]", "[1,2]", "{}", "true", "no", "[a,b]", "-1", "0", "1e400",
                                    "${oops}", "[64,128]", "???"]))
OVERRIDE = st.tuples(st.one_of(st.sampled_from(KEYS), TEXT), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")


@FAST
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_any_override_gives_a_valid_config_or_a_config_error(overrides):
    try:
        cfg = load_config(None, ["tasks=[det,seg,depth]", *overrides], defaults=None)
    except ConfigError as err:
        assert str(err)
        return
    assert cfg.train.steps >= 1 and cfg.train.batch_size >= 1 and len(cfg.data.size) == 2
    assert isinstance(cfg.train.steps, int) and isinstance(cfg.optim.lr, float)


@FAST
@given(st.sampled_from(KEYS), st.sampled_from(["abc", "[1,2", "{}", "null"]))
def test_a_bad_value_names_its_key(key, value):
    """Where a value is refused, the message names the key (unknown values of free-text keys such
    as data.root are accepted)."""
    try:
        load_config(None, ["tasks=[det,seg,depth]", f"{key}={value}"], defaults=None)
    except ConfigError as err:
        assert key.split(".")[-1] in str(err) or "override" in str(err), str(err)


@FAST
@given(st.one_of(st.binary(max_size=60), TEXT.map(str.encode),
                 st.sampled_from([b"- a\n- b\n", b"3\n", b"train: {steps: [\n", b"train:\n  stepz: 3\n",
                                  b"train: {steps: abc}\n", b"\xff\xfe\x00", b"tasks: det\n"])))
def test_any_config_file_gives_a_valid_config_or_a_config_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.yaml"
        path.write_bytes(content)
        try:
            load_config(path, [], defaults=None)
        except ConfigError as err:
            assert str(path) in str(err) or "key" in str(err) or "valid" in str(err), str(err)


def test_missing_config_file_and_a_folder_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml", [], defaults=None)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path, [], defaults=None)


# --- Cityscapes label parsers --------------------------------------------------------------
H, W, STEM = 8, 16, "city_000000_000000"
FILES = {"image": ("leftImg8bit", "_leftImg8bit.png"), "labels": ("gtFine", "_gtFine_labelIds.png"),
         "instances": ("gtFine", "_gtFine_instanceIds.png"), "disparity": ("disparity", "_disparity.png"),
         "camera": ("camera", "_camera.json"), "scene": ("scene", "_scene.json")}


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _good_files() -> dict[str, bytes]:
    labels = np.full((H, W), 7, np.uint8)  # road
    labels[2:6, 3:9] = 26  # a car
    instances = labels.astype(np.uint16)
    instances[2:6, 3:9] = 26001
    return {"image": _png(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)),
            "labels": _png(labels), "instances": _png(instances),
            "disparity": _png(np.full((H, W), 2561, np.uint16)),
            "camera": json.dumps({"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 100.0}}).encode(),
            "scene": json.dumps({"weather": "fog", "timeofday": "night"}).encode()}


def _load(replace: dict[str, bytes]) -> dict:
    """Write one frame (good files, `replace` swapped in) and read it with every task."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in {**_good_files(), **replace}.items():
            folder, suffix = FILES[name]
            path = Path(tmp) / folder / "train" / "city" / f"{STEM}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        return CityscapesDataset(tmp, "train", ("det", "seg", "depth", "scene"))[0]


def _check(sample: dict) -> None:
    """What a parsed sample guarantees, whatever the files held."""
    semantic = sample["semantic"].numpy()
    assert set(np.unique(semantic)) <= set(range(19)) | {255}
    depth = sample["depth"].numpy()
    assert np.isfinite(depth).all() and (depth >= 0).all()
    boxes = sample["boxes"]
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert all(0 <= int(c) < len(DET_CLASSES) for c in sample["labels"])
    assert 0 <= int(sample["scene"][0]) < len(WEATHERS) and 0 <= int(sample["scene"][1]) < len(TIMES)


def _parses_or_names_the_file(replace: dict[str, bytes]) -> None:
    try:
        sample = _load(replace)
    except DatasetError as err:
        # the file at fault is named (a wrong-size image shows up as its labels' size mismatch)
        assert any(FILES[name][1] in str(err) for name in replace) or "differs from its image" in str(err), str(err)
        return
    _check(sample)


def test_the_good_frame_parses():
    _check(_load({}))


@FAST
@given(st.sampled_from(["image", "labels", "instances", "disparity"]), st.data())
def test_corrupt_png_is_named(name, data):
    good = _good_files()[name]
    content = data.draw(st.one_of(st.binary(max_size=80), st.integers(0, len(good) - 1).map(lambda k: good[:k])))
    _parses_or_names_the_file({name: content})


@FAST
@given(st.sampled_from(["image", "labels", "instances", "disparity"]), st.integers(1, 20), st.integers(1, 20),
       st.sampled_from([None, 3, 4]), st.sampled_from([np.uint8, np.uint16]))
def test_wrong_size_or_channels_is_named(name, h, w, channels, dtype):
    if channels is not None and dtype == np.uint16:
        dtype = np.uint8  # PIL writes multi-channel PNGs as 8 bit
    shape = (h, w) if channels is None else (h, w, channels)
    _parses_or_names_the_file({name: _png(np.random.default_rng(h * w).integers(0, 40, shape).astype(dtype))})


@FAST
@given(st.sampled_from(["labels", "instances", "disparity"]), st.sampled_from([np.uint8, np.uint16]), st.data())
def test_any_class_or_instance_id_parses_or_is_named(name, dtype, data):
    top = int(np.iinfo(dtype).max)
    values = data.draw(st.lists(st.integers(0, top), min_size=H * W, max_size=H * W))
    _parses_or_names_the_file({name: _png(np.array(values, dtype).reshape(H, W))})


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
                    max_leaves=6)
CAMERA = st.fixed_dictionaries({"extrinsic": st.fixed_dictionaries({"baseline": JSON}),
                                "intrinsic": st.fixed_dictionaries({"fx": JSON})})
SCENE = st.fixed_dictionaries({"weather": st.one_of(st.sampled_from(WEATHERS), JSON),
                               "timeofday": st.one_of(st.sampled_from(TIMES), JSON)})


@FAST
@given(st.sampled_from(["camera", "scene"]), st.data())
def test_any_json_parses_or_is_named(name, data):
    value = data.draw(st.one_of(JSON, CAMERA if name == "camera" else SCENE))
    content = data.draw(st.one_of(st.just(json.dumps(value).encode()), st.binary(max_size=30)))
    _parses_or_names_the_file({name: content})


# --- KITTI label_2 lines and BDD100K det_20 JSON --------------------------------------------
KITTI_TOKEN = st.one_of(st.sampled_from(["Car", "Van", "DontCare", "Misc", "Bus", "car", "nan", "inf", "-inf",
                                         "1e400", "", "x", "1.5.2"]),
                        st.floats(-2000, 2000, allow_nan=False).map(lambda v: f"{v:.2f}"),
                        st.integers(-5, 5).map(str))
KITTI_GOOD = "Car 0.00 0 -1.58 10.00 5.00 40.00 30.00 1.48 1.60 3.90 -2.10 1.70 12.30 -1.62".split()
KITTI_LINE = st.one_of(  # random fields, or a good line with one field swapped
    st.lists(KITTI_TOKEN, min_size=13, max_size=17).map(" ".join),
    st.tuples(st.integers(0, 14), KITTI_TOKEN).map(
        lambda kv: " ".join(KITTI_GOOD[:kv[0]] + [kv[1]] + KITTI_GOOD[kv[0] + 1:])))


@FAST
@given(KITTI_LINE)
def test_any_label_2_line_parses_to_a_valid_object_or_says_what_is_wrong(line):
    from perception_mtl.data.kitti_labels import KITTI_TYPES, parse_label_line
    try:
        obj = parse_label_line(line)
    except ValueError as err:
        assert any(word in str(err) for word in ("fields", "type", "field", "negative size")), str(err)
        return
    left, top, right, bottom = obj.bbox
    assert obj.type in KITTI_TYPES and left <= right and top <= bottom
    assert all(np.isfinite(v) for v in (*obj.bbox, *obj.dimensions, *obj.location, obj.alpha, obj.rotation_y))


@FAST
@given(st.lists(KITTI_LINE, min_size=1, max_size=3), st.sampled_from(["error", "skip"]))
def test_any_label_2_file_gives_valid_boxes_or_names_its_line(lines, mode):
    from perception_mtl.data.kitti import KittiDataset
    from tests.test_kitti import OBJECT_LABELS, make_object
    with tempfile.TemporaryDirectory() as tmp:
        make_object(Path(tmp), {"000000": OBJECT_LABELS["000004"], "000001": "\n".join(lines) + "\n"})
        try:
            ds = KittiDataset(tmp, "train", ("det",), on_bad_label=mode)
        except DatasetError as err:
            assert mode == "error" and "label_2/000001.txt:" in str(err), str(err)
            return
        assert mode == "skip" or not ds.skipped
        for i in range(len(ds)):
            sample = ds[i]
            boxes, (h, w) = sample["boxes"], sample["image"].shape[-2:]
            assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= h)).all()
            assert all(0 <= int(c) < len(DET_CLASSES) for c in sample["labels"])


JSON_VALUE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-50, 200), st.floats(allow_nan=True),
                                    st.sampled_from(["car", "pedestrian", "traffic light", "bus", "a.jpg", "x"])),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.sampled_from(["x1", "y1", "x2", "y2", "name",
                                                                                   "category", "box2d", "labels"]),
                                                                  inner, max_size=4)),
                          max_leaves=12)
BDD_BOX = st.fixed_dictionaries({k: st.one_of(st.floats(-20, 100), JSON_VALUE) for k in ("x1", "y1", "x2", "y2")})
BDD_LABEL = st.one_of(JSON_VALUE, st.fixed_dictionaries(
    {"category": st.one_of(st.sampled_from(["car", "pedestrian", "traffic light", "other vehicle", "tram"]),
                           JSON_VALUE),
     "box2d": st.one_of(BDD_BOX, JSON_VALUE)}))
BDD_FRAME = st.one_of(JSON_VALUE, st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["a.jpg", "b.jpg", "zz.jpg"]), JSON_VALUE),
     "labels": st.one_of(st.lists(BDD_LABEL, max_size=3), JSON_VALUE)}))


@FAST
@given(st.one_of(st.lists(BDD_FRAME, min_size=1, max_size=3), JSON_VALUE), st.sampled_from(["error", "skip"]))
def test_any_det_20_json_gives_valid_boxes_or_names_the_file(frames, mode):
    from perception_mtl.data.bdd100k import BDD100KDataset
    from tests.test_bdd100k import make_bdd
    with tempfile.TemporaryDirectory() as tmp:
        root = make_bdd(Path(tmp) / "bdd100k", frames)
        try:
            ds = BDD100KDataset(root, "train", ("det",), on_bad_label=mode)
        except DatasetError as err:
            assert "det_train.json" in str(err) or "no frames" in str(err), str(err)
            return
        for i in range(len(ds)):
            sample = ds[i]
            boxes, (h, w) = sample["boxes"], sample["image"].shape[-2:]
            assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
            assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= h)).all()
            assert all(0 <= int(c) < len(CLASS_SETS["bdd100k"]) for c in sample["labels"])  # its 10 classes


def test_the_default_config_is_found_and_loaded():
    """configs/default.yaml is merged under every config (a moved module once pointed DEFAULTS
    inside the package, where no file is, and the defaults were silently left out)."""
    from omegaconf import OmegaConf

    from perception_mtl.core.config import DEFAULTS

    assert DEFAULTS == Path(__file__).resolve().parents[1] / "configs" / "default.yaml" and DEFAULTS.is_file()
    assert load_config(None, []).model.weights == OmegaConf.load(DEFAULTS).model.weights == "imagenet"


def test_a_missing_defaults_file_is_an_error_not_a_silent_skip(tmp_path):
    with pytest.raises(ConfigError, match=r"defaults file .*missing.*pip install -e \."):
        load_config(None, [], defaults=tmp_path / "configs" / "default.yaml")


def test_best_pt_follows_the_first_main_tasks_primary_metric_unless_named():
    assert selection_metric(load_config(None, ["tasks=[det,seg]"], defaults=None)) == "det/mAP50"
    assert selection_metric(load_config(None, ["tasks=[det,seg]", "aux_tasks=[det]"], defaults=None)) == "seg/mIoU"
    assert selection_metric(load_config(None, ["tasks=[det,seg]", "train.best_metric=seg/pixel_acc"],
                                        defaults=None)) == "seg/pixel_acc"


@pytest.mark.parametrize("key,message", [("seg/mIoU", "does not train"), ("det/mIoU", "mAP50"), ("mIoU", "<task>/<metric>")])
def test_a_best_metric_best_pt_could_never_follow_is_refused(key, message):
    """Before, a det-only run with best_metric seg/mIoU silently never wrote best.pt."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["tasks=[det,depth]", f"train.best_metric={key}"], defaults=None)
