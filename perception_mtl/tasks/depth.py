"""Monocular metric depth: log-depth output, scale-invariant log loss, standard metrics.

Loss: the scale-invariant log error of Eigen et al. (NeurIPS 2014) in the square-root form
with variance focus lambda (Lee et al. 2019, BTS): sqrt(mean(g^2) - lambda * mean(g)^2),
g = log(pred) - log(gt), over valid pixels only. lambda < 1 keeps a penalty on absolute scale,
so the prediction stays metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from omegaconf import DictConfig
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.files import write_png
from perception_mtl.data.targets import Target
from perception_mtl.core.errors import ConfigError
from perception_mtl.models.heads.decoders import build_dense_head
from perception_mtl.tasks.base import Exporter, Task, bounded, labelled
from perception_mtl.tasks.decoder_key import check_decoder
from perception_mtl.tasks.registry import TASKS
from perception_mtl.visualize import colorize_depth, show_depth

ABS_REL_MAX = 0.5  # the top of the error picture's colour bar
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


def depth_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The seven standard metrics (Eigen et al. 2014) over matching 1-D tensors, as (7,)."""
    ratio = torch.maximum(pred / gt, gt / pred)
    return torch.stack([
        ((pred - gt).abs() / gt).mean(),
        ((pred - gt) ** 2 / gt).mean(),
        ((pred - gt) ** 2).mean().sqrt(),
        ((pred.log() - gt.log()) ** 2).mean().sqrt(),
        (ratio < 1.25).double().mean(),
        (ratio < 1.25**2).double().mean(),
        (ratio < 1.25**3).double().mean(),
    ])


class DepthMetric(Metric):
    """Per-image metrics on pixels with min_depth < gt <= max_depth (prediction clamped to the
    same range), averaged over images, as in the KITTI/Eigen protocol."""

    full_state_update = False

    def __init__(self, min_depth: float, max_depth: float):
        super().__init__()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.add_state("sums", torch.zeros(len(METRICS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        for p, g in zip(pred.double(), gt.double()):
            valid = (g > self.min_depth) & (g <= self.max_depth)
            if valid.any():
                self.sums += depth_errors(p[valid].clamp(self.min_depth, self.max_depth), g[valid])
                self.images += 1

    def compute(self) -> dict[str, torch.Tensor]:
        mean = self.sums / self.images.clamp(min=1)
        return dict(zip(METRICS, mean))


@TASKS.register("depth")
class DepthTask(Task):
    name = "depth"
    primary = "abs_rel"
    key_metrics = ("abs_rel", "delta1")
    loss_form = "regression"
    targets = {"depth": Target(torch.float32, 0.0)}
    directions = {"abs_rel": False, "sq_rel": False, "rmse": False, "rmse_log": False,
                  "delta1": True, "delta2": True, "delta3": True}
    INIT_DEPTH = 10.0  # metres: the head's output 0 means this depth

    @dataclass
    class Config:
        max_depth: float = 80.0
        min_depth: float = bounded(0.5, lambda v: v > 0, "> 0 (the loss takes its log)")
        variance_focus: float = bounded(0.85, lambda v: 0 <= v <= 1, "in [0, 1]")  # lambda of the loss
        decoder: str = "light"  # dense head, as task.seg.decoder

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        check_decoder(cfg, cls.name)
        c = cfg.task.depth
        if not c.min_depth < c.max_depth:
            raise ConfigError(f"task.depth.min_depth={c.min_depth} must be below task.depth.max_depth={c.max_depth}")

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return build_dense_head(self.cfg.task.depth.decoder, channels, strides, 1, self.cfg.model.head_channels)

    def log_depth(self, output: torch.Tensor) -> torch.Tensor:
        """Raw head output (B, 1, H, W) -> log depth (B, H, W), clamped to a sane range."""
        c = self.cfg.task.depth
        return (output[:, 0].float() + math.log(self.INIT_DEPTH)).clamp(math.log(c.min_depth) - 1, math.log(1000.0))

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        gt = batch["depth"][has]
        valid = gt > self.cfg.task.depth.min_depth
        if not has.any() or not valid.any():
            return {}
        g = self.log_depth(output[has])[valid] - gt[valid].log()
        lam = self.cfg.task.depth.variance_focus
        return {"silog": (g.pow(2).mean() - lam * g.mean().pow(2)).clamp(min=1e-8).sqrt()}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """Depth in metres (B, H, W)."""
        log_depth = self.log_depth(output)[:, None]
        return F.interpolate(log_depth, size=out_size, mode="bilinear", align_corners=False)[:, 0].exp()

    def metric(self) -> Metric:
        c = self.cfg.task.depth
        return DepthMetric(c.min_depth, c.max_depth)

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], batch["depth"][has])

    def exporter(self, out: Path) -> Exporter:
        return DepthPngs(out)

    def picture(self, prediction: torch.Tensor) -> np.ndarray:
        return colorize_depth(prediction.numpy())

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """Depth colour-mapped up to task.depth.max_depth, with a colour bar in metres."""
        show_depth(ax, prediction.numpy(), self.cfg.task.depth.max_depth)
        ax.set_axis_off()
        ax.set_title("depth", fontsize=7)

    def error(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, truth: torch.Tensor) -> bool:
        """|pred - gt| / gt where the depth is valid (black elsewhere), with a colour bar."""
        c = self.cfg.task.depth
        err = abs_rel_map(prediction.numpy(), truth.numpy(), c.min_depth, c.max_depth)
        im = ax.imshow(err, cmap=plt.get_cmap("inferno").with_extremes(bad="black"), vmin=0, vmax=ABS_REL_MAX)
        bar = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        ax.set_axis_off()
        ax.set_title(f"depth abs rel error (mean {float(err.mean()):.3f})", fontsize=7)
        return True


def abs_rel_map(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> np.ma.MaskedArray:
    """|pred - gt| / gt (H, W) on pixels with min_depth < gt <= max_depth (others masked), the
    prediction clamped to that range as in the depth metric."""
    valid = (gt > min_depth) & (gt <= max_depth)
    err = np.abs(np.clip(pred, min_depth, max_depth) - gt) / np.where(valid, gt, 1.0)
    return np.ma.masked_where(~valid, err)


class DepthPngs(Exporter):
    """depth/<frame>.png: uint16 depth * 256, 0 = none (KITTI's depth format)."""

    def __init__(self, out: Path):
        self.out = out

    def add(self, batch: dict, i: int, frame: str, prediction: torch.Tensor) -> None:
        depth = (prediction.numpy() * 256.0).round().clip(1, 65535).astype(np.uint16)
        write_png(self.out / "depth" / f"{frame}.png", depth)
