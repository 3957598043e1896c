"""What hangs off the training loop, as hooks (detectron2's `HookBase` pattern).

The trainer calls, in this order, every hook of `default_hooks` in list order:
  before_train(trainer)                     once, before the first step of this call to fit()
  before_backward(trainer, losses, features, batch)
                                            each step, with the task losses' graph alive (and the
                                            model's shared features, `models/features.py`): may add
                                            statistics of that graph (gradient probe, TAG affinity)
  after_step(trainer, batch, stats)         each step, after the optimizer step and `trainer.step += 1`
  after_train(trainer)                      once, after the last step
The order of `default_hooks` is the order of a step's side effects: log, evaluate (and keep
best.pt, stop tasks early), save last.pt; at the end restore early-stopped tasks, plot.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from perception_mtl import distributed
from perception_mtl.balancing.gradients import probe
from perception_mtl.engine.affinity import lookahead_affinity
from perception_mtl.models.features import Features
from perception_mtl.tracking.plots import plot_run

if TYPE_CHECKING:  # annotations only: the trainer imports this module
    from perception_mtl.engine.trainer import Trainer

Losses = dict[str, torch.Tensor]


class Hook:
    """A no-op at every point; subclasses override what they need."""

    def before_train(self, trainer: Trainer) -> None:
        pass

    def before_backward(self, trainer: Trainer, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        return {}

    def after_step(self, trainer: Trainer, batch: dict, stats: dict[str, float]) -> None:
        pass

    def after_train(self, trainer: Trainer) -> None:
        pass


def due(step: int, every: int, last: int | None = None) -> bool:
    """Whether `step` (1-based) is a multiple of `every` (0 = never), or the `last` step."""
    return bool(every) and step % every == 0 or step == last


class GradientProbe(Hook):
    """Per-task gradient norms, cosines and magnitude similarity at the log steps."""

    def before_backward(self, trainer: Trainer, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        if len(losses) < 2 or not due(trainer.step + 1, trainer.cfg.train.log_every):
            return {}
        return {f"train/{k}": v for k, v in probe(losses, features, trainer.model).items()}


class AffinityProbe(Hook):
    """TAG's lookahead inter-task affinity every `train.affinity_every` steps."""

    def before_backward(self, trainer: Trainer, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        if len(losses) < 2 or not due(trainer.step + 1, trainer.cfg.train.affinity_every):
            return {}
        active = list(losses)
        affinity = lookahead_affinity(trainer.model, losses, lambda: trainer.losses(batch, active),
                                      trainer.scheduler.get_last_lr()[0])
        return {f"train/{k}": v for k, v in affinity.items()}


class Logging(Hook):
    """Progress bar every step; training statistics (with throughput, lr and step counts) every
    `train.log_every` steps and at the last."""

    def before_train(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=trainer.cfg.train.steps, initial=trainer.step, desc="training", unit="step",
                        disable=not distributed.is_main())
        self.tic, self.seen = time.perf_counter(), 0

    def after_step(self, trainer: Trainer, batch: dict, stats: dict[str, float]) -> None:
        self.seen += batch["image"].shape[0]
        self.bar.update()
        self.bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in stats.items() if "/loss/" in k})
        if due(trainer.step, trainer.cfg.train.log_every, trainer.cfg.train.steps):
            stats["train/images_per_s"] = self.seen / (time.perf_counter() - self.tic)
            stats["train/lr"] = trainer.scheduler.get_last_lr()[0]
            stats["train/skipped_steps"] = trainer.skipped
            stats["train/unlabelled_steps"] = trainer.unlabelled
            stats["train/unreadable_frames"] = trainer.unreadable
            trainer.log(stats)
            self.tic, self.seen = time.perf_counter(), 0

    def after_train(self, trainer: Trainer) -> None:
        self.bar.close()


class Evaluation(Hook):
    """Evaluate every `train.eval_every` steps and at the last (keeping best.pt, stopping tasks
    early); at the end, bring back early-stopped tasks' best parameters and evaluate again."""

    def after_step(self, trainer: Trainer, batch: dict, stats: dict[str, float]) -> None:
        if due(trainer.step, trainer.cfg.train.eval_every, trainer.cfg.train.steps):
            trainer.metrics = trainer.evaluate_and_track()

    def after_train(self, trainer: Trainer) -> None:
        if trainer.early_stopping.stopped:
            trainer.early_stopping.restore_best(trainer.model)
            trainer.metrics = trainer.evaluate_and_track(final=True)


class Checkpointing(Hook):
    """Save last.pt every `train.checkpoint_every` steps and at the last."""

    def after_step(self, trainer: Trainer, batch: dict, stats: dict[str, float]) -> None:
        if due(trainer.step, trainer.cfg.train.checkpoint_every, trainer.cfg.train.steps):
            trainer.save("last.pt")


class Plots(Hook):
    """Loss, weight and validation curves in the run folder at the end."""

    def after_train(self, trainer: Trainer) -> None:
        if distributed.is_main():
            plot_run(trainer.run_dir)


def default_hooks() -> list[Hook]:
    return [GradientProbe(), AffinityProbe(), Logging(), Evaluation(), Checkpointing(), Plots()]
