"""The trainer users run: the training loop (engine/loop.py) with the default hooks (engine/hooks.py),
as detectron2's `DefaultTrainer` is its `TrainerBase` with `build_hooks`."""
from __future__ import annotations

from omegaconf import DictConfig

from perception_mtl.engine.hooks import default_hooks
from perception_mtl.engine.loop import Hook, TrainLoop


class Trainer(TrainLoop):
    """`Trainer(cfg).fit()` trains, evaluates, checkpoints and plots a run; `hooks` replaces the default ones."""

    def __init__(self, cfg: DictConfig, hooks: list[Hook] | None = None):
        super().__init__(cfg, default_hooks() if hooks is None else hooks)
