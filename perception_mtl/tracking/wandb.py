"""Weights & Biases backend: imported only when used, rank 0 only, never fatal.

Mode: `wandb.mode` online / offline / disabled; unset means WANDB_MODE, else online when an API
key is configured (WANDB_API_KEY or a netrc entry) and offline otherwise (`resolve_mode`). Any
W&B error becomes a warning and the backend switches itself off; training goes on.
"""
from __future__ import annotations

import netrc
import os
import warnings
from typing import Any

import numpy as np

from perception_mtl.core.distributed import is_main


def resolve_mode(mode: str | None, default: str | None = None) -> str:
    """The package's one W&B mode rule: `mode` (a run's `wandb.mode`, a tool's argument), else
    WANDB_MODE, else `default` (a suite's `wandb.mode`, for its leaderboard), else online when an
    API key is configured (WANDB_API_KEY or a netrc entry for api.wandb.ai), else offline."""
    if mode:
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if default:
        return default
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


class WandbLogger:
    """Thin wrapper over a wandb run; every call is guarded."""

    def __init__(self, cfg: Any, run_dir: str, config: dict, resume_id: str | None = None):
        self.run = None
        self.mode = resolve_mode(cfg.mode)
        if not is_main():  # under torchrun only rank 0 talks to W&B
            self.mode = "disabled"
            return
        try:
            import wandb

            self.wandb = wandb
            self.run = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags),
                                  config=config, dir=run_dir, mode=self.mode, id=resume_id,
                                  resume="allow" if resume_id else None,
                                  settings=wandb.Settings(console="off", x_disable_stats=True))
            self.run.define_metric("val/*", summary="max,last")
            self.run.define_metric("train/*", summary="last")
        except Exception as err:  # noqa: BLE001 (W&B must never stop a run)
            self._fail("init", err)

    @property
    def run_id(self) -> str | None:
        return getattr(self.run, "id", None)

    def _fail(self, what: str, err: Exception) -> None:
        warnings.warn(f"W&B {what} failed ({type(err).__name__}: {err}); continuing with local logs only "
                      "(train.jsonl, metrics.jsonl). Without network use wandb.mode=offline and `wandb sync` "
                      "later, or wandb.mode=disabled")
        self.run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("log", err)

    def images(self, key: str, panels: list[dict], step: int) -> None:
        """panels: dicts with image (H, W, 3) uint8 and optional masks/boxes in W&B's format."""
        if self.run is None:
            return
        try:
            imgs = [self.wandb.Image(np.asarray(p["image"]), masks=p.get("masks"), boxes=p.get("boxes"),
                                     caption=p.get("caption")) for p in panels]
            self.run.log({key: imgs}, step=step)
        except Exception as err:  # noqa: BLE001
            self._fail("image logging", err)

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as err:  # noqa: BLE001
            self._fail("finish", err)
