"""Write a rendered `Frame` in the official Cityscapes on-disk format (plus scene attributes).

Layout (docs/ARCHITECTURE.md, "File contracts"), for `stem` = `{city}_{seq:06d}_{frame:06d}`:
  leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png      RGB uint8
  gtFine/{split}/{city}/{stem}_gtFine_labelIds.png        label ids, uint8
  gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png     labelId*1000+k (things), labelId (stuff), uint16
  gtFine/{split}/{city}/{stem}_gtFine_polygons.json       one polygon per visible region, far to near
  disparity/{split}/{city}/{stem}_disparity.png           p = d * 256 + 1, 0 = invalid, uint16
  camera/{split}/{city}/{stem}_camera.json                Cityscapes extrinsic/intrinsic fields
  scene/{split}/{city}/{stem}_scene.json                  weather, timeofday (our addition)
  normals/{split}/{city}/{stem}_normals.png               uint16 RGB = round((n + 1) / 2 * 65535) of the
                                                          camera-frame unit normal (x, y, z), 0 = none (our addition)
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import id2label

from perception_mtl.data.world.render import Frame


def depth_to_disparity_png(depth: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Metric depth (H, W), 0 = invalid -> Cityscapes disparity PNG values (H, W) uint16."""
    valid = depth > 0
    disparity = np.zeros(depth.shape, np.float64)
    disparity[valid] = baseline * fx / depth[valid]
    p = np.where(valid, np.round(disparity * 256.0) + 1.0, 0.0)
    return np.clip(p, 0, 65535).astype(np.uint16)


def normals_to_png(normals: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3), 0 = none -> PNG values (H, W, 3) uint16, 0 = none."""
    valid = np.any(normals != 0, axis=-1, keepdims=True)
    return np.where(valid, np.round((normals + 1.0) / 2.0 * 65535.0), 0).astype(np.uint16)


def _write_png(path: Path, array: np.ndarray) -> None:
    """Fast lossless PNG (uint8 or uint16, 1 or 3 channels); raises if the write fails."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def polygons(instances: np.ndarray, depth: np.ndarray) -> list[dict]:
    """Outer contours of each visible segment (instance id map (H, W)), ordered far to near,
    as Cityscapes `objects` entries; drawing them in order repaints the label image."""
    segments = []
    for value in np.unique(instances):
        mask = (instances == value).astype(np.uint8)
        seg_depth = depth[mask.astype(bool)]
        valid = seg_depth[seg_depth > 0]
        distance = float(np.median(valid)) if valid.size else np.inf
        label = id2label[int(value) // 1000 if value >= 1000 else int(value)].name
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            pts = cv2.approxPolyDP(contour, 0.7, True)[:, 0, :]
            if len(pts) >= 3:
                segments.append((distance, {"label": label, "polygon": pts.tolist()}))
    segments.sort(key=lambda s: -s[0])
    return [s[1] for s in segments]


def write_frame(frame: Frame, root: Path, split: str, city: str, stem: str, extra: dict) -> None:
    """Write every file of one frame under `root` (see the module docstring)."""
    paths = {
        "image": root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
        "labels": root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
        "instances": root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png",
        "polygons": root / "gtFine" / split / city / f"{stem}_gtFine_polygons.json",
        "disparity": root / "disparity" / split / city / f"{stem}_disparity.png",
        "camera": root / "camera" / split / city / f"{stem}_camera.json",
        "scene": root / "scene" / split / city / f"{stem}_scene.json",
        "normals": root / "normals" / split / city / f"{stem}_normals.png",
    }
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    cam = frame.camera
    h, w = frame.labels.shape
    _write_png(paths["image"], frame.image[..., ::-1])  # OpenCV stores BGR
    _write_png(paths["labels"], frame.labels)
    _write_png(paths["instances"], frame.instances.astype(np.uint16))
    _write_png(paths["disparity"], depth_to_disparity_png(frame.depth, cam.baseline, cam.fx))
    _write_png(paths["normals"], normals_to_png(frame.normals)[..., ::-1])  # OpenCV stores BGR
    poly = {"imgHeight": h, "imgWidth": w, "objects": polygons(frame.instances, frame.depth)}
    paths["polygons"].write_text(json.dumps(poly))
    paths["camera"].write_text(json.dumps(cam.to_cityscapes_json(), indent=2))
    scene = {"weather": frame.scene.weather, "timeofday": frame.scene.time_of_day,
             "visibility_m": round(frame.scene.visibility, 2), **extra}
    paths["scene"].write_text(json.dumps(scene, indent=2))
