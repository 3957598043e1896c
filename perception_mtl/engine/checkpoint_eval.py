"""Evaluate a saved checkpoint on a split: what `tools/evaluate.py` and the benchmark runner's
held-out test evaluation share.

`open_checkpoint` reads the checkpoint, its config (with key=value `overrides`), the split's
loaders and the device, raising ConfigError, DatasetError or CheckpointError before any model is
built; `evaluate_checkpoint` rebuilds the model from the config, loads the weights and returns
the same metric keys as training's evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from perception_mtl.data.build import val_loaders
from perception_mtl.core.distributed import resolve_device
from perception_mtl.engine.builders import build_model, build_tasks, load_config
from perception_mtl.engine.checkpoint import check_entries, load_checkpoint, restoring, saved_config
from perception_mtl.engine.evaluator import evaluate_parts


@dataclass
class OpenCheckpoint:
    state: dict
    cfg: DictConfig
    loaders: dict
    device: torch.device
    path: str | Path = ""  # the checkpoint file, named by errors
    advice: str = ""  # what to do when its weights do not fit

    @property
    def frames(self) -> int:
        return sum(len(loader.dataset) for loader, _ in self.loaders.values())


def open_checkpoint(checkpoint: str | Path, split: str = "val", limit: int | None = None,
                    overrides: list[str] | tuple[str, ...] = (),
                    advice: str = "evaluate the last.pt or best.pt of a run that finished writing it") -> OpenCheckpoint:
    """The checkpoint's state, its config with `overrides`, the loaders of `split` (first `limit`
    frames) and the device (`train.device=cpu` evaluates a GPU run on the CPU). A CheckpointError
    for a missing, unreadable or foreign file ends with `advice`."""
    state = load_checkpoint(checkpoint, advice)
    check_entries(checkpoint, state, {"model": dict, "config": dict, "step": int}, advice)
    with restoring(checkpoint, advice):  # a saved config that is no config
        base = saved_config(state)
    cfg = load_config(None, list(overrides), defaults=None, base=base)
    return OpenCheckpoint(state, cfg, val_loaders(cfg, split, limit), resolve_device(cfg.train.device), checkpoint,
                          advice)


def evaluate_checkpoint(opened: OpenCheckpoint, save_dir: str | Path | None = None,
                        progress: bool = True, per_frame: dict | None = None) -> dict[str, float]:
    """{"<task>/<metric>": value} of the checkpoint's model on its loaders; predictions exported
    to `save_dir` when given, per-frame tables into `per_frame` (`evaluator.evaluate`)."""
    cfg = opened.cfg
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks)
    with restoring(opened.path, opened.advice):
        model.load_state_dict(opened.state["model"])
    model.to(opened.device)
    with torch.inference_mode():
        metrics, _ = evaluate_parts(model, tasks, opened.loaders, tuple(cfg.data.size), save_dir, progress,
                                    per_frame=per_frame)
    return metrics
