"""KITTI's object (2D), semantics and depth prediction benchmarks in their official layouts
(datasets/kitti/README.md).

The three benchmarks have different images, so a dataset asked for det, seg and depth is the
object frames, then the semantics frames, then the depth frames, each frame with `has` = the task
its benchmark labels (seg and edges share the semantics frames): a batch holds partial labels
(batch["has"]). Samples follow cityscapes.py's contract.

Evaluation (train=False) keeps the labels' native pixels, but KITTI's frames differ in size
(370..376 x 1224..1242) and collate stacks a batch, so every frame is cropped to the smallest frame
of the dataset, keeping its bottom rows and centre columns (as the 352x1216 crop of Lee et al. 2019,
BTS, does): no resampling, no padding, and no valid depth lost under the Garg or Eigen crop.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from PIL import Image
from torchvision import tv_tensors

from perception_mtl.data.files import DatasetError, no_boxes, read_label_png, read_rgb
from perception_mtl.data.frames import FrameDataset
from perception_mtl.data.kitti_labels import class_index, parse_label_line
from perception_mtl.data.labels import DET_CLASSES, SEG_LUT
from perception_mtl.data.registry import DATASETS
from perception_mtl.data.transforms import build_transforms, transform_sample

PARTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {  # part -> (tasks its frames carry, folders it needs)
    "object": (frozenset({"det"}), ("object/training/image_2", "object/training/label_2")),
    "semantics": (frozenset({"seg", "edges"}), ("semantics/training/image_2", "semantics/training/semantic")),
    "depth": (frozenset({"depth"}), ("depth/data_depth_annotated/{split}", "depth/raw")),
}
LAYOUT = {
    "object": "  object/training/image_2/NNNNNN.png, object/training/label_2/NNNNNN.txt    (det)\n"
              "  object/ImageSets/{train,val}.txt   (det, optional: the split; else every 5th frame is val)",
    "semantics": "  semantics/training/image_2/NNNNNN_10.png, semantics/training/semantic/NNNNNN_10.png    (seg)",
    "depth": "  depth/data_depth_annotated/{split}/<drive>/proj_depth/groundtruth/image_02/<frame>.png    (depth)\n"
             "  depth/raw/<date>/<drive>/image_02/data/<frame>.png   (<date>: the drive's first 10 characters)",
}
VAL_EVERY = 5  # without a split file, the frame at sorted position k is in val when k % 5 == 4
# Evaluation crops (rows, cols) as fractions of the ground truth's height and width, as
# monodepth2's evaluate_depth.py and BTS's eval.py apply them: Garg et al. (ECCV 2016) and
# Eigen et al. (NeurIPS 2014); depth outside is set to 0 (invalid).
DEPTH_CROPS = {
    "garg": ((0.40810811, 0.99189189), (0.03594771, 0.96405229)),
    "eigen": ((0.3324324, 0.91351351), (0.03594771, 0.96405229)),
}
MAX_LABEL_ID = max(lab.id for lab in CS_LABELS)  # 33: the semantic PNGs hold Cityscapes label ids
# shared by every frame without boxes (never written: a sample copies boxes only when there are some)
EMPTY = {"boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int64), "crowd": np.zeros(0, bool)}


@dataclass(frozen=True)
class Frame:
    """One image and its label file; for object frames the boxes (N, 4) float32 xyxy pixels (as in
    label_2, not yet clipped), classes (N,) int64 and crowd (N,) bool, read at construction."""
    name: str
    image: Path
    label: Path
    tasks: frozenset[str]
    boxes: np.ndarray = field(default_factory=lambda: EMPTY["boxes"])
    classes: np.ndarray = field(default_factory=lambda: EMPTY["classes"])
    crowd: np.ndarray = field(default_factory=lambda: EMPTY["crowd"])


class KittiDataset(FrameDataset):
    """Frames of one split carrying any of `tasks` (module docstring). Bad labels raise a
    DatasetError naming the file and line (on_bad_label="error") or are skipped and counted in
    `skipped` ("skip"). `size` None is evaluation: native pixels cropped to a common size and
    `depth_crop` ("garg" | "eigen") applied; else frames are resized to `size` (H, W)."""

    def __init__(self, root: str | Path, split: str = "train", tasks: tuple[str, ...] = ("det", "seg", "depth"),
                 seg_classes: int = 19, class_map: dict[str, str | None] | None = None,
                 on_bad_label: str = "error", depth_crop: str | None = None, size: tuple[int, int] | None = None,
                 hflip: float = 0.0, color_jitter: float = 0.0, min_box_size: float = 2.0):
        super().__init__(on_bad_label)
        self.root, self.split, self.tasks = Path(root), split, frozenset(tasks)
        supported = frozenset().union(*(carried for carried, _ in PARTS.values()))
        if self.tasks - supported:
            raise ValueError(f"KITTI has no labels for tasks {sorted(self.tasks - supported)}; "
                             f"it has {sorted(supported)}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if seg_classes not in SEG_LUT:
            raise ValueError(f"seg_classes must be one of {sorted(SEG_LUT)}, got {seg_classes}")
        if depth_crop not in (None, *DEPTH_CROPS):
            raise ValueError(f"depth_crop must be None or one of {sorted(DEPTH_CROPS)}, got {depth_crop!r}")
        self.seg_lut, self.depth_crop = SEG_LUT[seg_classes], depth_crop
        self.class_index = class_index(class_map or {})
        parts = [part for part, (carried, _) in PARTS.items() if self.tasks & carried]
        self._check_folders(parts)
        index = {"object": self._index_object, "semantics": self._index_semantics, "depth": self._index_depth}
        for part in parts:
            frames = index[part]()
            if not frames:
                raise DatasetError(f"no {split} frames in KITTI's {part} part under {self.root}\n" + LAYOUT[part])
            self.frames += frames
        self.window = None if size is not None else self._common_size()
        self._report_skipped("kitti")
        self.transforms = build_transforms(size, hflip, color_jitter, min_box_size)

    def __getitem__(self, index: int) -> dict:
        """The frame's sample; with on_bad_label="skip" a frame whose files cannot be read is
        replaced by the next readable frame of its part (same tasks, so `tasks_of` stays true),
        and the sample lists the frames passed over in `unreadable`: it travels with the batch out
        of a DataLoader worker, and the trainer counts it."""
        tasks, unreadable = self.frames[index].tasks, []
        for j in chain(range(index, len(self)), range(index)):
            if self.frames[j].tasks != tasks:
                continue
            try:
                sample = self._sample(self.frames[j])
            except DatasetError as err:
                if self.on_bad_label == "error":
                    raise
                unreadable.append(self.frames[j].name)
                warnings.warn(f"{err}; skipped (data.on_bad_label=skip), using the next frame")
                continue
            if unreadable:
                sample["unreadable"] = unreadable
            return sample
        raise DatasetError(f"no readable KITTI frame for tasks {sorted(tasks)} under {self.root}")

    def _sample(self, frame: Frame) -> dict:
        image = read_rgb(frame.image)
        h, w = image.shape[:2]
        rows, cols = self._crop(h, w)
        image = image[rows, cols]
        sample: dict = {"image": tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)),
                        "frame": frame.name, "has": set(frame.tasks)}
        if frame.tasks & {"seg", "edges"}:
            labels = self._label_png(frame, (h, w))
            if labels.max(initial=0) > MAX_LABEL_ID:
                raise DatasetError(f"{frame.label}: value {int(labels.max())} is not a Cityscapes label id "
                                   f"(0..{MAX_LABEL_ID}); is it a semantic_rgb or instance PNG?")
            sample["semantic"] = tv_tensors.Mask(torch.from_numpy(self.seg_lut[labels[rows, cols]]))
        if "depth" in frame.tasks:
            depth = np.ascontiguousarray(self._depth(frame, (h, w))[rows, cols])
            sample["depth"] = tv_tensors.Mask(torch.from_numpy(depth))
        boxes, classes, crowd = no_boxes()
        if len(frame.boxes):
            boxes = torch.from_numpy(frame.boxes - np.float32([cols.start, rows.start] * 2))
            # label_2 boxes of truncated objects may reach past the border
            boxes[:, 0::2].clamp_(0, image.shape[1])
            boxes[:, 1::2].clamp_(0, image.shape[0])
            classes, crowd = torch.from_numpy(frame.classes), torch.from_numpy(frame.crowd)
        return transform_sample(self.transforms, sample, boxes, classes, crowd, "det" in frame.tasks)

    def _crop(self, h: int, w: int) -> tuple[slice, slice]:
        """Rows and columns kept of an (h, w) frame: all of them in training, else the common
        window's bottom rows and centre columns."""
        if self.window is None:
            return slice(0, h), slice(0, w)
        wh, ww = self.window
        left = (w - ww) // 2
        return slice(h - wh, h), slice(left, left + ww)

    def _label_png(self, frame: Frame, shape: tuple[int, int]) -> np.ndarray:
        return read_label_png(frame.label, shape)

    def _depth(self, frame: Frame, shape: tuple[int, int]) -> np.ndarray:
        """Depth (H, W) float32 metres = PNG value / 256, 0 = no measurement; outside the
        evaluation crop 0 as well."""
        raw = self._label_png(frame, shape)
        if raw.dtype not in (np.uint16, np.int32):  # Pillow reads 16-bit PNGs as uint16 or int32
            raise DatasetError(f"{frame.label}: expected a 16-bit PNG (depth * 256), got {raw.dtype}")
        depth = raw.astype(np.float32) / 256.0  # exact: values < 2^16, a power-of-two divisor
        if self.depth_crop is not None:
            (top, bottom), (left, right) = DEPTH_CROPS[self.depth_crop]
            h, w = shape
            keep = np.zeros(shape, bool)
            keep[int(top * h):int(bottom * h), int(left * w):int(right * w)] = True
            depth[~keep] = 0.0
        return depth

    # --- index: which frames exist, and the object boxes, read once at construction -------------
    def _index_object(self) -> list[Frame]:
        """Object frames of the split: object/ImageSets/<split>.txt when that folder exists, else
        the hold-out of VAL_EVERY; each needs its image and its label_2 file."""
        base = self.root / "object" / "training"
        images, labels = _stems(base / "image_2", ".png"), _stems(base / "label_2", ".txt")
        sets = self.root / "object" / "ImageSets"
        if sets.is_dir():
            listed = sets / f"{self.split}.txt"
            if not listed.is_file():
                raise DatasetError(f"{sets} exists but has no {self.split}.txt (one 6-digit frame id a line)")
            entries = [(line.strip(), f"{listed}:{n}") for n, line in enumerate(listed.read_text().splitlines(), 1)
                       if line.strip()]
        else:
            entries = [(stem, str(base / "image_2" / f"{stem}.png")) for stem in _held_out(images, self.split)]
        frames = []
        for stem, where in entries:
            image, label = base / "image_2" / f"{stem}.png", base / "label_2" / f"{stem}.txt"
            if stem not in images:
                self._bad("missing image", f"{where}: image {image} does not exist")
            elif stem not in labels:
                self._bad("missing label file", f"{where}: label file {label} does not exist")
            elif (boxes := self._boxes(label)) is not None:
                frames.append(Frame(f"object/{stem}", image, label, frozenset({"det"}), *boxes))
        return frames

    def _boxes(self, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """A label_2 file -> (boxes, classes, crowd); None (the frame is left out) if a line is bad,
        since a frame with an object missing would teach that object as background. DontCare and
        types mapped to null become crowd boxes of every class: COCO eval matches crowd boxes per
        class, and KITTI's evaluation ignores any detection in a DontCare region."""
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            self._bad("unreadable label file", f"cannot read {path}: {err}")
            return None
        rows: list[tuple[tuple[float, ...], int, bool]] = []
        good = True
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = parse_label_line(line)
            except ValueError as err:
                self._bad("bad label line", f"{path}:{n}: {err}: {line.strip()!r}")
                good = False
                continue
            target = self.class_index.get(obj.type)  # DontCare is not in the map: None
            if target is None:
                rows += [(obj.bbox, c, True) for c in range(len(DET_CLASSES))]
            else:
                rows.append((obj.bbox, target, False))
        if not good:
            return None
        boxes, classes, crowd = zip(*rows) if rows else ([], [], [])
        return (np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64), np.array(crowd, bool))

    def _index_semantics(self) -> list[Frame]:
        """The 200 training frames of KITTI semantics, split by the hold-out of VAL_EVERY."""
        base = self.root / "semantics" / "training"
        images, labels = _stems(base / "image_2", ".png"), _stems(base / "semantic", ".png")
        frames = []
        for stem in _held_out(images, self.split):
            image, label = base / "image_2" / f"{stem}.png", base / "semantic" / f"{stem}.png"
            if stem in labels:
                frames.append(Frame(f"semantics/{stem}", image, label, self.tasks & PARTS["semantics"][0]))
            else:
                self._bad("missing label file", f"{image}: label file {label} does not exist")
        return frames

    def _index_depth(self) -> list[Frame]:
        """One frame per ground-truth PNG of image_02; its image is in the raw data."""
        annotated, raw = self.root / "depth" / "data_depth_annotated" / self.split, self.root / "depth" / "raw"
        frames = []
        for drive in sorted(entry.name for entry in os.scandir(annotated) if entry.is_dir()):
            truth = annotated / drive / "proj_depth" / "groundtruth" / "image_02"
            images = raw / drive[:10] / drive / "image_02" / "data"
            found = _stems(images, ".png")
            for stem in sorted(_stems(truth, ".png")):
                if stem in found:
                    frames.append(Frame(f"depth/{drive}/{stem}", images / f"{stem}.png", truth / f"{stem}.png",
                                        frozenset({"depth"})))
                else:
                    self._bad("missing image", f"{truth / f'{stem}.png'}: image {images / f'{stem}.png'} does not "
                                               "exist (download the drive's raw data, datasets/kitti/README.md)")
        return frames

    def _check_folders(self, parts: list[str]) -> None:
        missing = {part: [self.root / f.format(split=self.split) for f in PARTS[part][1]
                          if not (self.root / f.format(split=self.split)).is_dir()] for part in parts}
        missing = {part: folders for part, folders in missing.items() if folders}
        layout = "\n".join(LAYOUT[part] for part in parts).replace("{split}", self.split)
        if len(missing) == len(parts):
            raise DatasetError(f"no KITTI data for tasks {sorted(self.tasks)} under {self.root}; expected the "
                               f"official layout (datasets/kitti/README.md):\n{layout}")
        if missing:
            raise DatasetError("\n".join(f"tasks {sorted(self.tasks & PARTS[p][0])} need {', '.join(map(str, fs))}"
                                         for p, fs in missing.items()) + f"\nexpected:\n{layout}")

    def _common_size(self) -> tuple[int, int]:
        """(H, W) of the smallest frame, from the PNG headers; a frame whose header cannot be read
        is bad (and so surfaces before evaluation)."""
        sizes, kept = [], []
        for frame in self.frames:
            try:
                with Image.open(frame.image) as img:
                    sizes.append(img.size[::-1])
                kept.append(frame)
            except (OSError, ValueError, SyntaxError) as err:  # PIL's ways to say missing or corrupt
                self._bad("unreadable image", f"cannot read {frame.image} (corrupt or not an image): {err}")
        self.frames = kept
        if not kept:
            raise DatasetError(f"no readable KITTI {self.split} image under {self.root}")
        return min(h for h, _ in sizes), min(w for _, w in sizes)



@DATASETS.register("kitti")
def kitti(root: str | Path, split: str, tasks: tuple[str, ...], data, train: bool) -> KittiDataset:
    """KITTI (perception_mtl/data/__init__.py has the signature); evaluation at native pixels,
    cropped to the dataset's smallest frame size, with data.depth_crop."""
    common = dict(seg_classes=data.seg_classes, class_map=dict(data.class_map), on_bad_label=data.on_bad_label,
                  min_box_size=data.min_box_size)
    if train:
        return KittiDataset(root, split, tasks, size=tuple(data.size), hflip=data.hflip,
                            color_jitter=data.color_jitter, **common)
    return KittiDataset(root, split, tasks, depth_crop=data.depth_crop, **common)


def _stems(folder: Path, suffix: str) -> set[str]:
    """Stems of the `suffix` files in `folder` (one directory read, not a stat per frame); none if
    the folder does not exist."""
    if not folder.is_dir():
        return set()
    return {entry.name[:-len(suffix)] for entry in os.scandir(folder) if entry.name.endswith(suffix)}


def _held_out(stems: set[str], split: str) -> list[str]:
    """The split's stems in name order: every VAL_EVERY-th (positions 4, 9, ...) is val."""
    return [s for k, s in enumerate(sorted(stems)) if (k % VAL_EVERY == VAL_EVERY - 1) == (split == "val")]
