"""BDD100K in its official layout (datasets/bdd100k/README.md): detection, drivable area and image
attributes on the 100K images, semantic segmentation on the separate 10K images.

A dataset asked for tasks of both sets is the 100K frames followed by the 10K frames, each frame
with `has` = the tasks it carries, so a batch holds partial labels (batch["has"]). Samples follow
cityscapes.py's contract, plus drivable (H, W) int64: 0 direct, 1 alternative, 2 background,
255 ignore. Scene attributes are mapped onto cityscapes.py's WEATHERS and TIMES, -1 = unknown.
Box labels index the class set `det_classes` (data/det_classes.py): BDD100K's 10 official classes
by default, or the 8 Cityscapes classes of a mix.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from perception_mtl.data.cityscapes import TIMES, WEATHERS
from perception_mtl.data.det_classes import CLASS_SETS, loader_sets
from perception_mtl.data.files import DatasetError, no_boxes, read_json, read_label_png, read_rgb
from perception_mtl.data.frames import FrameDataset
from perception_mtl.data.labels import IGNORE, TRAIN_ID_LUT, detection_index
from perception_mtl.data.registry import DATASETS
from perception_mtl.data.transforms import build_transforms, transform_sample

# BDD100K detection category -> class of each class set (None: ignored); data.class_map overrides entries.
# "bdd100k": the official 10 classes; "cityscapes": the 8 shared with Cityscapes, lights and signs dropped
CLASS_MAPS: dict[str, dict[str, str | None]] = {
    "bdd100k": {**{name: name for name in CLASS_SETS["bdd100k"]},
                "other person": "pedestrian", "other vehicle": "car", "trailer": "truck"},
    "cityscapes": {"pedestrian": "person", "rider": "rider", "car": "car", "truck": "truck", "bus": "bus",
                   "train": "train", "motorcycle": "motorcycle", "bicycle": "bicycle", "traffic light": None,
                   "traffic sign": None, "other person": "person", "other vehicle": "car", "trailer": "truck"},
}
# BDD100K's "uncertain" categories: the official evaluation (bdd100k/configs/det.toml, ignored_mapping)
# keeps them as iscrowd boxes of their parent class, so a detection on one is neither a false positive
# nor a required match. Crowd boxes are per category in COCO eval and det.py's loss drops them.
CROWD_CATEGORIES = frozenset({"other person", "other vehicle", "trailer"})
WEATHER_MAP = {"clear": "clear", "partly cloudy": "clear", "overcast": "clear", "foggy": "fog",
               "rainy": "rain", "snowy": "rain"}  # "undefined" and anything else: -1
TIME_MAP = {"daytime": "day", "dawn/dusk": "dusk", "night": "night"}
TASKS_100K = frozenset({"det", "drivable", "scene"})
TASKS_10K = frozenset({"seg", "edges"})  # edges are derived from the semantic labels
DRIVABLE_VALUES = (0, 1, 2, IGNORE)
LAYOUT_HELP = """expected the BDD100K layout under {root} (datasets/bdd100k/README.md):
  images/100k/{split}/<name>.jpg                  (det, drivable, scene)
  labels/det_20/det_{split}.json                  (det, scene)
  labels/drivable/masks/{split}/<name>.png        (drivable)
  images/10k/{split}/<name>.jpg                   (seg)
  labels/sem_seg/masks/{split}/<name>.png         (seg)"""


@dataclass(frozen=True)
class Frame:
    """One image and its labels. Boxes (N, 4) float32 are xyxy pixels with exclusive x2, y2; classes,
    crowd, occluded and truncated (N,) are per box; scene is (weather, time) indices, -1 unknown."""
    name: str
    image: Path
    tasks: frozenset[str]
    boxes: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray
    occluded: np.ndarray
    truncated: np.ndarray
    scene: tuple[int, int] = (-1, -1)
    drivable: Path | None = None
    semantic: Path | None = None


class BDD100KDataset(FrameDataset):
    """Frames of one split carrying any of `tasks` (see the module docstring). Bad labels raise a
    DatasetError naming file and frame (on_bad_label="error") or are skipped and counted in
    `skipped` ("skip"); `missing` counts 100K frames without a drivable mask ("drivable") and,
    when scene is their only task, those with undefined attributes ("scene"), which are left out."""

    def __init__(self, root: str | Path, split: str = "train", tasks: tuple[str, ...] = ("det", "seg", "drivable"),
                 seg_classes: int = 19, class_map: dict[str, str | None] | None = None,
                 det_classes: str = "bdd100k", on_bad_label: str = "error", size: tuple[int, int] | None = None,
                 hflip: float = 0.0, color_jitter: float = 0.0, min_box_size: float = 2.0):
        super().__init__(on_bad_label)
        self.root, self.split, self.tasks = Path(root), split, frozenset(tasks)
        unknown = self.tasks - TASKS_100K - TASKS_10K
        if unknown:
            raise ValueError(f"BDD100K has no labels for tasks {sorted(unknown)}; it has "
                             f"{sorted(TASKS_100K | TASKS_10K)}")
        if seg_classes not in TRAIN_ID_LUT:
            raise ValueError(f"seg_classes must be one of {sorted(TRAIN_ID_LUT)}, got {seg_classes}")
        self.seg_lut = TRAIN_ID_LUT[seg_classes]
        if det_classes not in CLASS_MAPS:
            raise ValueError(f"det_classes must be one of {sorted(CLASS_MAPS)}, got {det_classes!r}")
        self.class_index = _class_index(det_classes, class_map or {})
        self.missing: Counter[str] = Counter()
        if self.tasks & TASKS_100K:
            self.frames += self._index_100k()
        if self.tasks & TASKS_10K:
            self.frames += self._index_10k()
        self._report_skipped("bdd100k")
        if self.missing:
            print(f"bdd100k {split}: frames without labels of a task: {dict(self.missing)}")
        if not self.frames:
            raise DatasetError(f"no frames for tasks {sorted(self.tasks)} under {self.root}\n" + self._help())
        self.transforms = build_transforms(size, hflip, color_jitter, min_box_size)

    def __getitem__(self, index: int) -> dict:
        frame = self.frames[index]
        image = read_rgb(frame.image)
        h, w = image.shape[:2]
        sample: dict = {"image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                        "frame": frame.name, "has": set(frame.tasks)}
        if frame.semantic is not None:
            labels = self._mask(frame.semantic, (h, w), tuple(range(19)) + (IGNORE,), "Cityscapes train id")
            sample["semantic"] = tv_tensors.Mask(torch.from_numpy(self.seg_lut[labels]))
        if frame.drivable is not None:
            labels = self._mask(frame.drivable, (h, w), DRIVABLE_VALUES, "drivable value")
            sample["drivable"] = tv_tensors.Mask(torch.from_numpy(labels.astype(np.int64)))
        if "scene" in frame.tasks:
            sample["scene"] = torch.tensor(frame.scene, dtype=torch.int64)
        boxes, classes, crowd = no_boxes()
        if "det" in frame.tasks and len(frame.boxes):
            # BDD boxes may reach past the image border by a pixel (exclusive x2 = 1280)
            boxes = torch.from_numpy(frame.boxes).clone()
            boxes[:, 0::2].clamp_(0, w)
            boxes[:, 1::2].clamp_(0, h)
            classes, crowd = torch.from_numpy(frame.classes), torch.from_numpy(frame.crowd)
        return transform_sample(self.transforms, sample, boxes, classes, crowd, "det" in frame.tasks)

    # --- index: which frames exist and their box/attribute labels, read once at construction ------
    def _index_100k(self) -> list[Frame]:
        """100K frames: listed by det_20's JSON when det or scene is asked, else by the drivable masks."""
        images = self.root / "images" / "100k" / self.split
        names = self._listing(images, ".jpg")
        drivable = None
        if "drivable" in self.tasks:
            drivable = self.root / "labels" / "drivable" / "masks" / self.split
            masks = self._listing(drivable, ".png")
        if not self.tasks & {"det", "scene"}:
            return [self._frame(images / f"{stem}.jpg", frozenset({"drivable"}), drivable=drivable / f"{stem}.png")
                    for stem in sorted(masks) if self._has_image(names, images, stem, drivable / f"{stem}.png")]
        path = self.root / "labels" / "det_20" / f"det_{self.split}.json"
        if not path.is_file():
            raise DatasetError(f"tasks det/scene need {path}\n" + self._help())
        entries = read_json(path)
        if not isinstance(entries, list):
            # nothing to skip to: the file is the wrong one (e.g. the COCO-format conversion of det_20)
            raise DatasetError(f"{path}: expected a list of frames [{{name, attributes, labels}}], "
                               f"got a {type(entries).__name__}")
        frames = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                self._bad("frame without name", f"{path}: frame {k} has no 'name'")
                continue
            stem = entry["name"].removesuffix(".jpg")
            where = f"{path}: frame {k} ({entry['name']})"
            if not self._has_image(names, images, stem, where):
                continue
            tasks = self.tasks & {"det"}
            scene = _scene(entry.get("attributes"))
            if "scene" in self.tasks and scene != (-1, -1):
                tasks |= {"scene"}
            mask = None
            if drivable is not None:
                if stem in masks:
                    mask, tasks = drivable / f"{stem}.png", tasks | {"drivable"}
                else:
                    self.missing["drivable"] += 1
            if not tasks:  # scene alone was asked and both attributes are undefined
                self.missing["scene"] += 1
                continue
            boxes = self._boxes(entry.get("labels"), where) if "det" in tasks else {}
            frames.append(self._frame(images / f"{stem}.jpg", frozenset(tasks), scene=scene, drivable=mask, **boxes))
        return frames

    def _index_10k(self) -> list[Frame]:
        """10K frames: one per semantic mask, whose image must exist."""
        images = self.root / "images" / "10k" / self.split
        masks = self.root / "labels" / "sem_seg" / "masks" / self.split
        names, stems = self._listing(images, ".jpg"), self._listing(masks, ".png")
        return [self._frame(images / f"{stem}.jpg", self.tasks & TASKS_10K, semantic=masks / f"{stem}.png")
                for stem in sorted(stems) if self._has_image(names, images, stem, masks / f"{stem}.png")]

    def _boxes(self, labels, where: str) -> dict[str, np.ndarray]:
        """The frame's `labels` list -> box arrays (Frame's fields); a frame without labels has no objects."""
        rows: list[tuple[list[float], int, bool, bool, bool]] = []
        if labels is not None and not isinstance(labels, list):
            self._bad("labels not a list", f"{where}: 'labels' is a {type(labels).__name__}, not a list")
            labels = []
        for j, label in enumerate(labels or []):
            category = label.get("category") if isinstance(label, dict) else None
            if not isinstance(category, str):
                self._bad("label without category", f"{where}: label {j} has no 'category'")
                continue
            if category not in self.class_index:
                self._bad("unknown category", f"{where}: label {j} has category {category!r}, not a BDD100K "
                                              f"detection category ({', '.join(CLASS_MAPS['bdd100k'])})")
                continue
            if self.class_index[category] is None:
                continue
            box = label.get("box2d")
            try:
                x1, y1, x2, y2 = (float(box[key]) for key in ("x1", "y1", "x2", "y2"))
            except (TypeError, KeyError, ValueError):
                self._bad("label without box2d", f"{where}: label {j} ({category}) has no box2d {{x1, y1, x2, y2}}")
                continue
            if not (x1 <= x2 and y1 <= y2):
                self._bad("box with x2<x1 or y2<y1", f"{where}: label {j} ({category}) has box2d "
                                                     f"x1={x1}, y1={y1}, x2={x2}, y2={y2} with x2<x1 or y2<y1")
                continue
            attributes = label.get("attributes") if isinstance(label.get("attributes"), dict) else {}
            # BDD's x2, y2 are the last pixel (Scalabel's box2d_to_bbox adds 1); ours are exclusive
            rows.append(([x1, y1, x2 + 1, y2 + 1], self.class_index[category], category in CROWD_CATEGORIES,
                         bool(attributes.get("occluded", False)), bool(attributes.get("truncated", False))))
        boxes, classes, crowd, occluded, truncated = zip(*rows) if rows else ([],) * 5
        return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "classes": np.array(classes, np.int64),
                "crowd": np.array(crowd, bool), "occluded": np.array(occluded, bool),
                "truncated": np.array(truncated, bool)}

    def _frame(self, image: Path, tasks: frozenset[str], **fields) -> Frame:
        empty = {"boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int64),
                 **{key: np.zeros(0, bool) for key in ("crowd", "occluded", "truncated")}}
        return Frame(image.stem, image, tasks, **{**empty, **fields})

    def _listing(self, folder: Path, suffix: str) -> set[str]:
        """Stems of the `suffix` files in `folder` (one directory read, not a stat per frame)."""
        if not folder.is_dir():
            raise DatasetError(f"tasks {sorted(self.tasks)} need the folder {folder}\n" + self._help())
        return {entry.name[:-len(suffix)] for entry in os.scandir(folder) if entry.name.endswith(suffix)}

    def _has_image(self, names: set[str], images: Path, stem: str, where: str | Path) -> bool:
        if stem in names:
            return True
        self._bad("missing image", f"{where}: its image {images / f'{stem}.jpg'} does not exist")
        return False

    def _mask(self, path: Path, shape: tuple[int, int], valid: tuple[int, ...], what: str) -> np.ndarray:
        array = read_label_png(path, shape)
        bad = np.setdiff1d(np.flatnonzero(np.bincount(array.ravel())), valid)
        if bad.size:
            raise DatasetError(f"{path}: values {bad.tolist()[:5]} are not a {what} ({valid[0]}..{valid[-2]} "
                               f"or {IGNORE})")
        return array

    def _help(self) -> str:
        return LAYOUT_HELP.format(root=self.root, split=self.split)


@DATASETS.register("bdd100k")
def bdd100k(root: str | Path, split: str, tasks: tuple[str, ...], data, train: bool) -> BDD100KDataset:
    """BDD100K (perception_mtl/data/__init__.py has the signature); native 720x1280 when not `train`."""
    common = dict(seg_classes=data.seg_classes, class_map=dict(data.class_map), on_bad_label=data.on_bad_label,
                  min_box_size=data.min_box_size, det_classes=data.det_classes or loader_sets("bdd100k")[0])
    if train:
        return BDD100KDataset(root, split, tasks, size=tuple(data.size), hflip=data.hflip,
                              color_jitter=data.color_jitter, **common)
    return BDD100KDataset(root, split, tasks, **common)


def _class_index(det_classes: str, overrides: dict[str, str | None]) -> dict[str, int | None]:
    """BDD100K category -> index in class set `det_classes` (None: ignored), its CLASS_MAPS entry with `overrides`."""
    return detection_index(CLASS_MAPS[det_classes], overrides, "BDD100K detection categories",
                           classes=CLASS_SETS[det_classes])


def _scene(attributes) -> tuple[int, int]:
    """A frame's attributes {weather, timeofday, scene} -> (weather, time) indices; -1 when undefined.
    The `scene` attribute (city street, highway, ...) has no counterpart in our task and is unused."""
    attributes = attributes if isinstance(attributes, dict) else {}
    weather, time = WEATHER_MAP.get(str(attributes.get("weather"))), TIME_MAP.get(str(attributes.get("timeofday")))
    return (WEATHERS.index(weather) if weather else -1, TIMES.index(time) if time else -1)
