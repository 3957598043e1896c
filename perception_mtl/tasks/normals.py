"""Surface normals: a unit vector per pixel in the camera frame (x right, y down, z forward).

Labels: `normals/{split}/{city}/{stem}_normals.png` (uint16 RGB, round((n + 1) / 2 * 65535),
0 = none), which the driving world writes exactly (every surface is an axis-aligned plane).
Loss: 1 - cosine similarity over labelled pixels. Metrics: the angular error in degrees, its mean
and median, and the share of pixels within 11.25, 22.5 and 30 degrees, as the NYUv2 literature
reports them (Eigen & Fergus 2015; Bansal et al. 2016).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import Metric
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from perception_mtl.data.files import DatasetError
from perception_mtl.data.targets import LabelFiles, Target
from perception_mtl.data.world.writer import normals_to_png
from perception_mtl.models.heads.dense import DenseHead
from perception_mtl.tasks.base import Exporter, Task, labelled
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import image_panel

THRESHOLDS = (11.25, 22.5, 30.0)  # degrees
BIN = 0.01  # degrees: the median is read from a histogram of this resolution (no per-pixel list)


class Normals(tv_tensors.TVTensor):
    """A (3, H, W) normal map: resized with nearest neighbour like a mask, mirrored with x
    negated. Not a `Mask`: v2's SanitizeBoundingBoxes filters a mask whose first dimension equals
    the number of boxes (per-instance masks), which a 3-channel map matches on 3-box frames."""


@TF.register_kernel(functional=TF.resize, tv_tensor_cls=Normals)
def _resize_normals(normals: Normals, size, interpolation=None, max_size=None, antialias=None) -> Normals:
    out = TF.resize_mask(normals.as_subclass(torch.Tensor), size, max_size=max_size)
    return tv_tensors.wrap(out, like=normals)


@TF.register_kernel(functional=TF.horizontal_flip, tv_tensor_cls=Normals)
def _flip_normals(normals: Normals) -> Normals:
    flipped = TF.horizontal_flip_mask(normals.as_subclass(torch.Tensor)).clone()
    flipped[0] = -flipped[0]
    return tv_tensors.wrap(flipped, like=normals)


def read_normals(path: Path, shape: tuple[int, int]) -> Normals:
    """Normal map (3, H, W) float32 from its PNG; pixels without a normal are 0."""
    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if png is None:
        raise DatasetError(f"missing or unreadable normals file {path}")
    if png.shape != (*shape, 3) or png.dtype != np.uint16:
        raise DatasetError(f"{path}: expected a uint16 RGB image of size {shape}, got {png.dtype} {png.shape}")
    rgb = png[..., ::-1].astype(np.float32)
    normals = np.where(rgb.any(-1, keepdims=True), rgb / 65535.0 * 2.0 - 1.0, 0.0)
    return Normals(torch.from_numpy(np.ascontiguousarray(normals.transpose(2, 0, 1), np.float32)))


def angular_error(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, gt (B, 3, H, W) -> (errors in degrees (N,) over labelled pixels, their mask (B, H, W))."""
    valid = gt.abs().sum(1) > 0
    cos = F.cosine_similarity(pred, gt, dim=1)[valid].clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos.double())), valid


class NormalsMetric(Metric):
    """Mean, median and within-threshold shares of the angular error over all labelled pixels."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("hist", torch.zeros(round(180 / BIN), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        errors, _ = angular_error(pred, gt)
        self.total += errors.sum()
        bins = (errors / BIN).long().clamp(max=len(self.hist) - 1)
        self.hist += torch.bincount(bins, minlength=len(self.hist))

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.hist.sum().clamp(min=1)
        cumulative = self.hist.cumsum(0)
        median = (torch.searchsorted(cumulative, (count + 1) // 2) + 0.5) * BIN
        within = {f"within_{t:g}": cumulative[round(t / BIN) - 1].double() / count for t in THRESHOLDS}
        return {"mean_err": self.total / count, "median_err": median.double(), **within}


@TASKS.register("normals")
class NormalsTask(Task):
    name = "normals"
    primary = "mean_err"
    key_metrics = ("mean_err", "within_11.25")
    loss_form = "regression"
    directions = {"mean_err": False, "median_err": False, **{f"within_{t:g}": True for t in THRESHOLDS}}
    targets = {"normals": Target(torch.float32, 0.0)}
    files = LabelFiles("normals", "_normals.png", "normals", read_normals)

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return DenseHead(channels, strides, 3, self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        gt = batch["normals"][has]
        valid = gt.abs().sum(1) > 0
        if not valid.any():
            return {}
        cos = F.cosine_similarity(output[has].float(), gt, dim=1, eps=1e-6)
        return {"cosine": (1.0 - cos[valid]).mean()}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Unit normals (B, 3, H, W)."""
        up = F.interpolate(output.float(), size=out_size, mode="bilinear", align_corners=False)
        return F.normalize(up, dim=1)

    def metric(self) -> Metric:
        return NormalsMetric()

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["normals"][has])

    def picture(self, prediction: torch.Tensor) -> np.ndarray:
        return ((prediction.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().astype(np.uint8)

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """The unit normals as colours, (n + 1) / 2 for (x, y, z) -> (R, G, B)."""
        image_panel(ax, self.picture(prediction), "normals (RGB = xyz)")

    def exporter(self, out: Path) -> Exporter:
        return NormalPngs(out)


class NormalPngs(Exporter):
    """normals/<frame>.png in the labels' own format (uint16 RGB)."""

    def __init__(self, out: Path):
        self.out = out

    def add(self, batch: dict, i: int, frame: str, prediction: torch.Tensor) -> None:
        path = self.out / "normals" / f"{frame}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        png = normals_to_png(prediction.permute(1, 2, 0).numpy())
        if not cv2.imwrite(str(path), np.ascontiguousarray(png[..., ::-1])):  # PIL has no 16-bit RGB; OpenCV is BGR
            raise OSError(f"could not write {path}")
