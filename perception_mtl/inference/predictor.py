"""A trained checkpoint as a function from frames of any size to predictions at that size.

Input size and the task settings come from the checkpoint's config (normalisation is inside the
model); the raw outputs come from the PyTorch model or from an exported graph (`runtime.py`), and
`perception_mtl.engine.evaluator.predict_batch` resizes, runs and post-processes them either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from perception_mtl.core.distributed import resolve_device
from perception_mtl.engine.builders import build_model, build_tasks, load_config
from perception_mtl.engine.checkpoint import load_checkpoint, saved_config
from perception_mtl.engine.evaluator import predict_batch
from perception_mtl.inference.runtime import ExportedModel
from perception_mtl.tasks.base import Task


def load_model(checkpoint: str | Path,
               overrides: list[str] | tuple[str, ...] = ()) -> tuple[DictConfig, dict[str, Task], nn.Module]:
    """(config with `overrides`, tasks, model with the checkpoint's weights in eval mode, on the CPU)."""
    state = load_checkpoint(checkpoint, "predict with the last.pt or best.pt of a run that finished writing it")
    cfg = load_config(None, list(overrides), defaults=None, base=saved_config(state))
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks)
    model.load_state_dict(state["model"])
    return cfg, tasks, model.eval()


@dataclass
class Predictor:
    cfg: DictConfig
    tasks: dict[str, Task]
    model: nn.Module  # the PyTorch model or an ExportedModel

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, graph: str | Path | None = None,
                        overrides: list[str] | tuple[str, ...] = (), threads: int | None = None) -> "Predictor":
        """The checkpoint's model, or with `graph` (.onnx or .pt2 exported from it) that graph."""
        cfg, tasks, model = load_model(checkpoint, overrides)
        if graph is not None:
            return cls(cfg, tasks, ExportedModel(graph, model.heads, threads))
        return cls(cfg, tasks, model.to(resolve_device(cfg.train.device)))

    @property
    def size(self) -> tuple[int, int]:
        """The model's input size (H, W)."""
        return tuple(self.cfg.data.size)

    def __call__(self, images: torch.Tensor) -> dict:
        """images (B, 3, H, W) float in [0, 1], any H, W -> {task: predictions at (H, W)}: det a list
        of {boxes (D, 4) xyxy pixels, scores (D,), labels (D,)}, seg (B, H, W) train ids, depth
        (B, H, W) metres."""
        with torch.inference_mode():
            return predict_batch(self.model, self.tasks, images, self.size)

    def frame(self, rgb: np.ndarray) -> dict:
        """One RGB frame (H, W, 3) uint8 -> {task: its predictions, without the batch dimension}."""
        images = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255.0
        return {t: p[0] for t, p in self(images).items()}
