"""Reading the files of official dataset layouts, with errors that name the file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perception_mtl.core.errors import DatasetError


def read_png(path: Path) -> np.ndarray:
    """Read an image file as an array, naming the file if it is missing or corrupt."""
    try:
        with Image.open(path) as img:
            return np.array(img)
    except FileNotFoundError as err:
        raise DatasetError(f"missing file {path}") from err
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # PIL's ways to say corrupt
        raise DatasetError(f"cannot read {path} (corrupt or not an image): {err}") from err


def read_rgb(path: Path) -> np.ndarray:
    """-> (H, W, 3) uint8; an alpha channel is dropped, a grey or 2-D image is an error."""
    image = read_png(path)
    if image.ndim != 3 or image.shape[2] < 3:
        raise DatasetError(f"{path}: expected an RGB image, got shape {image.shape}")
    return image[..., :3]


def read_label_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """-> (H, W) array of a single-channel label PNG that must match its image's `shape` (H, W)."""
    array = read_png(path)
    if array.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel label image, got shape {array.shape}")
    if array.shape != shape:
        raise DatasetError(f"{path}: size {array.shape} differs from its image's {shape}")
    return array


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DatasetError(f"missing file {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot parse {path}: {err}") from err


def no_boxes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Empty boxes (0, 4), labels (0,) and iscrowd (0,) of a frame without objects."""
    return torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64), torch.zeros((0,), dtype=torch.bool)


def write_png(path: Path, array: np.ndarray) -> None:
    """Write `array` (H, W) uint8/uint16 or (H, W, 3) uint8 as a PNG, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
