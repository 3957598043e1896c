"""KITTI's object label_2 text format (devkit_object/readme.txt) and its mapping to the shared
detection classes."""
from __future__ import annotations

import math
from typing import NamedTuple

from perception_mtl.data.labels import detection_index

# KITTI object type -> detection class (None: ignore region); data.class_map overrides entries.
# Van is a Cityscapes car ("car, jeep, SUV, van"), Tram a Cityscapes train ("train, tram"). A KITTI
# Cyclist box encloses the person and the bicycle and the class means the person riding (KITTI
# evaluates it with Pedestrian as a person class; parked bicycles are not labelled at all), so it
# is a rider: as bicycle it would teach that every bicycle carries a rider.
DEFAULT_CLASS_MAP: dict[str, str | None] = {
    "Car": "car", "Van": "car", "Truck": "truck", "Pedestrian": "person", "Person_sitting": "person",
    "Cyclist": "rider", "Tram": "train", "Misc": None,
}
KITTI_TYPES = (*DEFAULT_CLASS_MAP, "DontCare")  # DontCare: an unlabelled region, always ignored
FIELDS = ("type", "truncated", "occluded", "alpha", "left", "top", "right", "bottom", "height", "width",
          "length", "x", "y", "z", "rotation_y", "score")  # of a label_2 line, in order


class LabelLine(NamedTuple):
    """One object of a label_2 file, all its fields (devkit_object/readme.txt); `score` only in
    result files. bbox is (left, top, right, bottom) pixels; dimensions (h, w, l) and location
    (x, y, z) metres in camera coordinates; angles in radians."""
    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None


def parse_label_line(line: str) -> LabelLine:
    """A label_2 line -> LabelLine; ValueError saying what is wrong with it."""
    fields = line.split()
    if len(fields) not in (15, 16):
        raise ValueError(f"expected 15 fields (16 with a score), got {len(fields)}")
    if fields[0] not in KITTI_TYPES:
        raise ValueError(f"type {fields[0]!r} is not a KITTI object type ({', '.join(KITTI_TYPES)})")
    values = []
    for k, (name, text) in enumerate(zip(FIELDS[1:], fields[1:]), 2):
        try:
            values.append(int(text) if name == "occluded" else float(text))
        except ValueError:
            kind = "an integer" if name == "occluded" else "a number"
            raise ValueError(f"field {k} ({name}) {text!r} is not {kind}") from None
        if not math.isfinite(values[-1]):
            raise ValueError(f"field {k} ({name}) {text!r} is not finite")
    truncated, occluded, alpha, left, top, right, bottom, h, w, l, x, y, z, rotation_y, *score = values
    if right < left or bottom < top:
        raise ValueError(f"box (left {left}, top {top}, right {right}, bottom {bottom}) has negative size")
    return LabelLine(fields[0], truncated, occluded, alpha, (left, top, right, bottom), (h, w, l), (x, y, z),
                     rotation_y, score[0] if score else None)


def class_index(overrides: dict[str, str | None]) -> dict[str, int | None]:
    """KITTI type -> index in DET_CLASSES (None: ignore region), DEFAULT_CLASS_MAP with `overrides`."""
    return detection_index(DEFAULT_CLASS_MAP, overrides, "KITTI object types",
                           " (DontCare is always ignored). In data.mix, give each entry its own class_map")
