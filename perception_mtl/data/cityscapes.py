"""Cityscapes in its official on-disk layout: real Cityscapes and the driving world alike.

A sample is a dict (docs/ARCHITECTURE.md, "Data flow"):
  image (3, H, W) float in [0, 1]; frame: str; has: set of task names with targets;
  seg:   semantic (H, W) int64, 255 = ignore (19 train ids or 7 categories);
  depth: depth (H, W) float32 metres along the optical axis, 0 = invalid;
  det:   boxes (N, 4) float32 xyxy pixels, labels (N,) int64 in DET_CLASSES, iscrowd (N,) bool;
  scene: scene (2,) int64 (weather, time of day), only where `scene/*_scene.json` exists;
  a task with an extra label folder (`Task.files`, data/targets.py, e.g. normals/): its key as
  its reader returns it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import name2label
from scipy import ndimage
from torch.utils.data import Dataset
from torchvision import tv_tensors

from perception_mtl.data.files import DatasetError, no_boxes, read_json, read_label_png, read_rgb
from perception_mtl.data.labels import DET_LUT, SEG_LUT
from perception_mtl.data.targets import LABEL_FILES
from perception_mtl.data.registry import DATASETS
from perception_mtl.data.transforms import build_transforms, transform_sample

WEATHERS = ("clear", "fog", "rain")
TIMES = ("day", "dusk", "night")
TASK_FILES = {  # task -> (top folder, file suffix); images live in leftImg8bit
    "seg": ("gtFine", "_gtFine_labelIds.png"),
    "det": ("gtFine", "_gtFine_instanceIds.png"),
    "edges": ("gtFine", "_gtFine_labelIds.png"),  # auxiliary: derived from the semantic labels
    "depth": ("disparity", "_disparity.png"),
    "scene": ("scene", "_scene.json"),
    "noise": ("leftImg8bit", "_leftImg8bit.png"),  # unrelated task: its target is a hash of the frame name
}
LAYOUT_HELP = """expected the Cityscapes layout under {root}:
  leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{split}/<city>/<...>_gtFine_labelIds.png, <...>_gtFine_instanceIds.png   (seg, det)
  disparity/{split}/<city>/<...>_disparity.png                                    (depth)
  camera/{split}/<city>/<...>_camera.json                                         (depth)
  scene/{split}/<city>/<...>_scene.json                                           (scene, optional)
  normals/{split}/<city>/<...>_normals.png                                        (normals, optional)
Make the embedded synthetic world in this layout with:
  python tools/make_synthetic.py --out {root} --train 3000 --val 500"""


class CityscapesDataset(Dataset):
    """Frames of one split; `tasks` selects which targets to load (see module docstring)."""

    def __init__(self, root: str | Path, split: str = "train", tasks: tuple[str, ...] = ("det", "seg", "depth"),
                 seg_classes: int = 19, size: tuple[int, int] | None = None, hflip: float = 0.0,
                 color_jitter: float = 0.0, min_box_size: float = 2.0, polygon_boxes: bool = False):
        self.root, self.split, self.tasks = Path(root), split, tuple(tasks)
        self.polygon_boxes = polygon_boxes
        known = {**{t: folder for t, (folder, _) in TASK_FILES.items()},
                 **{t: files.folder for t, files in LABEL_FILES.items()}}
        unknown = set(self.tasks) - set(known)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; valid: {sorted(known)}")
        if seg_classes not in SEG_LUT:
            raise ValueError(f"seg_classes must be one of {sorted(SEG_LUT)}, got {seg_classes}")
        self.seg_lut = SEG_LUT[seg_classes]
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise DatasetError(f"no folder {images}\n" + LAYOUT_HELP.format(root=self.root, split=split))
        self.images = sorted(images.glob("*/*_leftImg8bit.png"))
        if not self.images:
            raise DatasetError(f"no *_leftImg8bit.png under {images}\n" + LAYOUT_HELP.format(root=self.root, split=split))
        for task in self.tasks:
            folder = self.root / known[task] / split
            if not folder.is_dir():
                raise DatasetError(f"task '{task}' needs {folder}\n" + LAYOUT_HELP.format(root=self.root, split=split))
        self.transforms = build_transforms(size, hflip, color_jitter, min_box_size)

    def __len__(self) -> int:
        return len(self.images)

    def path(self, index: int, folder: str, suffix: str) -> Path:
        """Path of frame `index`'s file in `folder` (e.g. gtFine) with `suffix`."""
        return self.root / folder / self.split / self.images[index].parent.name / f"{self.frame(index)}{suffix}"

    def frame(self, index: int) -> str:
        """The frame's stem, `{city}_{seq}_{frame}`."""
        return self.images[index].name[: -len("_leftImg8bit.png")]

    def __getitem__(self, index: int) -> dict:
        image = read_rgb(self.images[index])
        h, w = image.shape[:2]
        sample: dict = {"image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                        "frame": self.frame(index), "has": set(self.tasks)}
        if "seg" in self.tasks or "edges" in self.tasks:
            labels = self._dense(index, "seg", (h, w))
            if labels.max(initial=0) >= len(self.seg_lut):
                raise DatasetError(f"{self.path(index, *TASK_FILES['seg'])}: label id {int(labels.max())} is not a "
                                   f"Cityscapes label id (0..{len(self.seg_lut) - 1}); is it a labelIds PNG?")
            sample["semantic"] = tv_tensors.Mask(torch.from_numpy(self.seg_lut[labels]))
        if "depth" in self.tasks:
            sample["depth"] = tv_tensors.Mask(torch.from_numpy(self._depth(index, (h, w))))
        boxes, classes, crowd = no_boxes()
        if "det" in self.tasks:
            boxes, classes, crowd = self._polygon_boxes(index, (h, w)) if self.polygon_boxes else self._boxes(index, (h, w))
        if "scene" in self.tasks:
            sample["scene"] = self._scene(index)
        for task in set(self.tasks) & set(LABEL_FILES):
            files = LABEL_FILES[task]
            sample[files.key] = files.read(self.path(index, files.folder, files.suffix), (h, w))
        return transform_sample(self.transforms, sample, boxes, classes, crowd, "det" in self.tasks)

    def tasks_of(self, index: int) -> set[str]:
        """Every frame carries every loaded task's labels (their folders are checked at start)."""
        return set(self.tasks)

    def _dense(self, index: int, task: str, shape: tuple[int, int]) -> np.ndarray:
        return read_label_png(self.path(index, *TASK_FILES[task]), shape)

    def _depth(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """Depth (H, W) float32 from disparity: d = (p - 1) / 256, depth = baseline * fx / d."""
        p = self._dense(index, "depth", shape).astype(np.float64)
        camera_path = self.path(index, "camera", "_camera.json")
        camera = read_json(camera_path)
        try:
            baseline, fx = float(camera["extrinsic"]["baseline"]), float(camera["intrinsic"]["fx"])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{camera_path}: missing extrinsic.baseline or intrinsic.fx") from err
        if not (0 < baseline < float("inf") and 0 < fx < float("inf")):
            raise DatasetError(f"{camera_path}: extrinsic.baseline ({baseline}) and intrinsic.fx ({fx}) must be "
                               "positive numbers")
        disparity = (p - 1.0) / 256.0
        valid = disparity > 0
        depth = np.zeros(shape, np.float32)
        depth[valid] = baseline * fx / disparity[valid]
        return depth

    def _boxes(self, index: int, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tight boxes around each instance's visible pixels; a class's crowd pixels (an
        instance class with id < 1000, as Cityscapes marks groups) become one crowd box."""
        ids = self._dense(index, "det", shape).astype(np.int64)
        label_of = np.where(ids >= 1000, ids // 1000, ids)
        is_det = DET_LUT[np.clip(label_of, 0, 255)] >= 0
        # crowd regions keep the bare label id; give them keys that cannot clash with instances
        keys = np.where(ids >= 1000, ids, -ids)[is_det]
        values, inverse = np.unique(keys, return_inverse=True)
        compact = np.zeros(shape, np.int32)
        compact[is_det] = inverse.reshape(-1) + 1
        boxes, classes, crowd = [], [], []
        for value, (rows, cols) in zip(values.tolist(), ndimage.find_objects(compact)):
            boxes.append([cols.start, rows.start, cols.stop, rows.stop])
            classes.append(DET_LUT[value // 1000 if value > 0 else -value])
            crowd.append(value < 0)
        if not boxes:
            return no_boxes()
        return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(classes, dtype=torch.int64),
                torch.tensor(crowd, dtype=torch.bool))

    def _polygon_boxes(self, index: int, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes around each object's annotated polygon in `*_gtFine_polygons.json`, read with the
        official toolkit's `Annotation`: the extent the annotator drew, which for an occluded
        object is larger than its visible pixels; "<class>group" objects are crowd boxes."""
        path = self.path(index, "gtFine", "_gtFine_polygons.json")
        annotation = Annotation()
        try:
            annotation.fromJsonFile(str(path))
        except FileNotFoundError as err:
            raise DatasetError(f"missing file {path} (data.polygon_boxes=true reads boxes from it)") from err
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise DatasetError(f"cannot parse {path}: {type(err).__name__}: {err}") from err
        boxes, classes, crowd = [], [], []
        for obj in annotation.objects:
            name = obj.label[:-len("group")] if obj.label.endswith("group") else obj.label
            if obj.deleted or name not in name2label or DET_LUT[name2label[name].id] < 0 or not obj.polygon:
                continue
            try:  # the toolkit keeps each point's coordinates as the JSON holds them
                xs, ys = [float(p.x) for p in obj.polygon], [float(p.y) for p in obj.polygon]
            except (TypeError, ValueError) as err:
                raise DatasetError(f"cannot parse {path}: a point of '{obj.label}' is not two numbers ({err})") from err
            # PIL fills a polygon's vertices, so its pixels end at max + 1 (exclusive), as instance boxes do
            box = [max(0, min(xs)), max(0, min(ys)), min(shape[1], max(xs) + 1), min(shape[0], max(ys) + 1)]
            if box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                classes.append(DET_LUT[name2label[name].id])
                crowd.append(obj.label.endswith("group"))
        if not boxes:
            return no_boxes()
        return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(classes, dtype=torch.int64),
                torch.tensor(crowd, dtype=torch.bool))

    def _scene(self, index: int) -> torch.Tensor:
        path = self.path(index, *TASK_FILES["scene"])
        attrs = read_json(path)
        try:
            return torch.tensor([WEATHERS.index(attrs["weather"]), TIMES.index(attrs["timeofday"])])
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{path}: needs weather in {WEATHERS} and timeofday in {TIMES}") from err


@DATASETS.register("cityscapes")
def cityscapes(root: str | Path, split: str, tasks: tuple[str, ...], data, train: bool) -> CityscapesDataset:
    """Cityscapes and the driving world (perception_mtl/data/__init__.py has the signature)."""
    if train:
        return CityscapesDataset(root, split, tasks, data.seg_classes, tuple(data.size), data.hflip,
                                 data.color_jitter, data.min_box_size, data.polygon_boxes)
    return CityscapesDataset(root, split, tasks, data.seg_classes, min_box_size=data.min_box_size,
                             polygon_boxes=data.polygon_boxes)
