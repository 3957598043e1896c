"""The hooks the default trainer runs (engine/trainer.py), in this order, which is the order of a
step's side effects: probe the graph, log, evaluate (keeping best.pt, stopping tasks early), save
last.pt; at the end restore early-stopped tasks, plot. Each keeps its own state; the base class and
the points it is called at are in engine/loop.py.
"""
from __future__ import annotations

import math
import time

from tqdm import tqdm

from perception_mtl.core import distributed
from perception_mtl.balancing.gradients import probe
from perception_mtl.engine.affinity import lookahead_affinity
from perception_mtl.engine.builders import selection_metric
from perception_mtl.engine.early_stopping import TaskEarlyStopping
from perception_mtl.engine.evaluator import evaluate_parts
from perception_mtl.engine.loop import Hook, Losses
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.models.features import Features
from perception_mtl.tracking.media import media_panels
from perception_mtl.tracking.plots import plot_run


def due(step: int, every: int, last: int | None = None) -> bool:
    """Whether `step` (1-based) is a multiple of `every` (0 = never), or the `last` step."""
    return bool(every) and step % every == 0 or step == last


class GradientProbe(Hook):
    """Per-task gradient norms, cosines and magnitude similarity at the log steps."""

    def before_backward(self, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        if len(losses) < 2 or not due(self.trainer.step + 1, self.trainer.cfg.train.log_every):
            return {}
        return {f"train/{k}": v for k, v in probe(losses, features, self.trainer.model).items()}


class AffinityProbe(Hook):
    """TAG's lookahead inter-task affinity every `train.affinity_every` steps."""

    def before_backward(self, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        if len(losses) < 2 or not due(self.trainer.step + 1, self.trainer.cfg.train.affinity_every):
            return {}
        active = list(losses)
        affinity = lookahead_affinity(self.trainer.model, losses, lambda: self.trainer.losses(batch, active),
                                      self.trainer.scheduler.get_last_lr()[0])
        return {f"train/{k}": v for k, v in affinity.items()}


class Logging(Hook):
    """Progress bar every step; training statistics (with throughput, lr and step counts) every
    `train.log_every` steps and at the last."""

    def before_train(self) -> None:
        self.bar = tqdm(total=self.trainer.cfg.train.steps, initial=self.trainer.step, desc="training", unit="step",
                        disable=not distributed.is_main())
        self.tic, self.seen = time.perf_counter(), 0

    def after_step(self, batch: dict, stats: dict[str, float]) -> None:
        self.seen += batch["image"].shape[0]
        self.bar.update()
        self.bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in stats.items() if "/loss/" in k})
        if due(self.trainer.step, self.trainer.cfg.train.log_every, self.trainer.cfg.train.steps):
            stats["train/images_per_s"] = self.seen / (time.perf_counter() - self.tic)
            stats["train/lr"] = self.trainer.scheduler.get_last_lr()[0]
            stats["train/skipped_steps"] = self.trainer.skipped
            stats["train/unlabelled_steps"] = self.trainer.unlabelled
            stats["train/unreadable_frames"] = self.trainer.unreadable
            self.trainer.log(stats)
            self.tic, self.seen = time.perf_counter(), 0

    def after_train(self) -> None:
        self.bar.close()


class Evaluation(Hook):
    """Evaluate every `train.eval_every` steps and at the last; keep best.pt (the best
    `train.best_metric`, or the first main task's primary metric, so far) and stop tasks early (`train.early_stopping`); at the end, bring
    back early-stopped tasks' best parameters and evaluate again. Its state: the best score and the
    early-stopping record."""

    def attach(self) -> None:
        t = self.trainer
        self.best = -math.inf
        self.key = selection_metric(t.cfg)  # the val metric that picks best.pt
        self.early_stopping = TaskEarlyStopping(t.tasks, t.cfg.train.early_stopping.patience,
                                                dict(t.cfg.train.early_stopping.metrics))

    def after_step(self, batch: dict, stats: dict[str, float]) -> None:
        if due(self.trainer.step, self.trainer.cfg.train.eval_every, self.trainer.cfg.train.steps):
            self.trainer.metrics = self.evaluate()

    def after_train(self) -> None:
        if self.early_stopping.stopped:
            self.early_stopping.restore_best(self.trainer.model)
            self.trainer.metrics = self.evaluate(final=True)

    def evaluate(self, final: bool = False) -> dict[str, float]:
        """Evaluate on val, log, keep best.pt; early-stop tasks (unless `final`: after the best
        parameters of stopped tasks came back)."""
        t = self.trainer
        results, first = evaluate_parts(t.model, t.tasks, t.val, tuple(t.cfg.data.size), keep_first=True)
        t.log({f"val/{k}": v for k, v in results.items()})
        if first is not None and t.cfg.wandb.images > 0:
            t.wandb.images("val/predictions", media_panels(*first, t.cfg.wandb.images, t.tasks), t.step)
        if self.early_stopping.enabled and not final:
            for task in self.early_stopping.update(results, t.model, t.step):
                tqdm.write(f"step {t.step}: task {task} stops early ({self.early_stopping.metric[task]} did not "
                           f"improve for {self.early_stopping.patience} evaluations); its best parameters return "
                           "at the end")
                t.log({f"train/event/stopped/{task}": float(t.step)})
        if self.key in results:
            k = MetricKey.parse(self.key)
            score = results[self.key] if t.tasks[k.task].directions[k.metric] else -results[self.key]
            if score > self.best:
                self.best = score
                t.save("best.pt", {"model": t.model.state_dict(), "step": t.step, "best": score,
                                   "config": t.state_config()})  # enough to evaluate or export it
        return results

    def stopped_tasks(self) -> set[str]:
        return set(self.early_stopping.stopped)

    def state_dict(self) -> dict:
        return {"best": self.best, "early_stopping": self.early_stopping.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state:  # a last.pt saved without this hook: nothing evaluated yet
            self.best = state["best"]
            self.early_stopping.load_state_dict(state["early_stopping"], self.trainer.model)


class Checkpointing(Hook):
    """Save last.pt (the loop's whole state) every `train.checkpoint_every` steps and at the last."""

    def after_step(self, batch: dict, stats: dict[str, float]) -> None:
        if due(self.trainer.step, self.trainer.cfg.train.checkpoint_every, self.trainer.cfg.train.steps):
            self.trainer.save("last.pt", self.trainer.state_dict())


class Plots(Hook):
    """Loss, weight and validation curves in the run folder at the end."""

    def after_train(self) -> None:
        if distributed.is_main():
            plot_run(self.trainer.run_dir)


def default_hooks() -> list[Hook]:
    """The default trainer's hooks, in the order of a step's side effects."""
    return [GradientProbe(), AffinityProbe(), Logging(), Evaluation(), Checkpointing(), Plots()]
