"""A deliberately unrelated task: regress a fixed random vector per image (`tasks=[...,noise]`).

The target of a frame is drawn from a generator seeded by a hash of the frame's name, so it is
fixed per image but carries no information about the image: the only way to lower the loss
is to memorise training frames. It exists to test the negative-transfer analysis, which
should flag it as harmful to the real tasks (Standley et al. 2020 call such tasks unrelated).
"""
from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from torchmetrics import MeanSquaredError, Metric

from perception_mtl.models.heads.scene import SceneHead
from perception_mtl.tasks.base import Task, labelled
from perception_mtl.tasks.registry import TASKS

DIM = 16


def noise_target(frames: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, DIM) standard-normal vectors on `device`, one per frame name, the same on every call."""
    values = np.stack([np.random.default_rng(zlib.crc32(f.encode())).standard_normal(DIM) for f in frames])
    return torch.from_numpy(values.astype(np.float32)).to(device)


@TASKS.register("noise")
class NoiseTask(Task):
    name = "noise"
    primary = "mse"
    loss_form = "regression"
    targets = {}
    directions = {"mse": False}

    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        return SceneHead(channels, strides, (DIM,), self.cfg.model.head_channels)

    def loss(self, head, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        has = labelled(batch, self.name)
        if not has.any():
            return {}
        target = noise_target([f for f, h in zip(batch["frame"], has.tolist()) if h], output.device)
        return {"mse": F.mse_loss(output[has].float(), target)}

    def predict(self, head, output: torch.Tensor, images, out_size) -> torch.Tensor:
        """The predicted vectors (B, DIM)."""
        return output.float()

    def metric(self) -> Metric:
        return _Mse()

    def truth(self, batch: dict, i: int) -> torch.Tensor | None:
        """The frame's fixed random vector (DIM,), from its name."""
        if not labelled(batch, self.name)[i]:
            return None
        return noise_target([batch["frame"][i]], torch.device("cpu"))[0]

    def draw(self, ax: Axes, image: np.ndarray, prediction: torch.Tensor, min_score: float) -> None:
        """The vector as bars (it says nothing about the image, so it is not drawn over it)."""
        ax.bar(range(DIM), prediction.numpy(), color="0.4")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.tick_params(labelsize=5)
        ax.set_title(f"noise: its {DIM}-vector", fontsize=7)

    def update(self, metric: Metric, predictions: torch.Tensor, batch: dict) -> None:
        has = labelled(batch, self.name)
        metric.update(predictions[has], noise_target([f for f, h in zip(batch["frame"], has.tolist()) if h],
                                                     predictions.device))


class _Mse(MeanSquaredError):
    """torchmetrics' MSE, reported under the key `mse`."""

    def compute(self) -> dict[str, torch.Tensor]:
        return {"mse": super().compute()}
