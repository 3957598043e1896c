"""Frames to predict on: one image, a folder of JPG/PNG images (any sizes, sorted by name) or a
video file (decoded by OpenCV). Unreadable files raise `FrameError` naming the file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from perception_mtl.data.files import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class FrameError(DatasetError):
    """An input that cannot be read as frames; the message names the file (bad input: the CLIs
    exit with code 2, perception_mtl.cli)."""


def read_image(path: Path) -> np.ndarray:
    """RGB (H, W, 3) uint8 of an image file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise FrameError(f"cannot read image {path}: {err}") from err


@dataclass
class FrameSource:
    """What `open_frames` found: `images` (files) or a `video` file, its frame count and rate
    (10 fps for a container that states none; the rate only times the annotated video)."""

    path: Path
    images: list[Path]
    video: Path | None = None
    count: int = 0
    fps: float = 0.0

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        """(frame name, RGB (H, W, 3) uint8) in order: image file stems, or <video stem>_<index:06d>."""
        if self.video is None:
            for path in self.images:
                yield path.stem, read_image(path)
            return
        capture = cv2.VideoCapture(str(self.video))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{self.video.stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise FrameError(f"cannot decode any frame of video {self.video}")


def open_frames(path: str | Path) -> FrameSource:
    """The frames at `path`: an image, a folder of images, or a video. Raises FrameError for a
    missing path, an empty folder, an unknown suffix or a video OpenCV cannot open."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise FrameError(f"folder {path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        return FrameSource(path, images, count=len(images))
    if not path.is_file():
        raise FrameError(f"no such file or folder: {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return FrameSource(path, [path], count=1)
    if suffix in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise FrameError(f"cannot open video {path} (OpenCV could not decode it)")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = capture.get(cv2.CAP_PROP_FPS)
        finally:
            capture.release()
        return FrameSource(path, [], path, count, fps if fps > 0 else 10.0)
    raise FrameError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                     f"({', '.join(VIDEO_SUFFIXES)})")


def write_video(frames: Iterator[np.ndarray], path: str | Path, fps: float) -> int:
    """Write RGB (H, W, 3) uint8 frames of one size as an MP4 (OpenCV, mp4v); returns the count."""
    writer, count = None, 0
    for rgb in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (rgb.shape[1], rgb.shape[0]))
            if not writer.isOpened():
                raise FrameError(f"cannot write video {path} (OpenCV has no mp4v encoder here)")
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        count += 1
    if writer is not None:
        writer.release()
    return count
