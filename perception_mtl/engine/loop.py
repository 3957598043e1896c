"""The training loop and the base of its hooks (detectron2's `TrainerBase` and `HookBase`).

`TrainLoop.run_step`: forward -> task losses -> balancer.backward -> sync -> clip -> step. What hangs
off the loop (gradient probes, logging, evaluation with best.pt and early stopping, checkpoints,
plots) is a `Hook` (the concrete ones: engine/hooks.py; `engine/trainer.Trainer` is the loop with
the default ones). A hook gets the loop as a weak reference (`self.trainer`) when registered, keeps
its own state (saved in last.pt under its name) and is called, in list order, at:
  before_train()                                once, before the first step of this call to fit()
  before_step(batch)                            each step, once its batch is on the device
  before_backward(losses, features, batch)      each step, with the task losses' graph alive: may
                                                return statistics of that graph (gradient probe, TAG)
  after_step(batch, stats)                      each step, after the optimizer step and `step += 1`
  after_train()                                 once, after the last step
A run is exactly resumable: model, optimizer, schedule, balancer, hooks, RNG and data position are saved.
"""
from __future__ import annotations

import time
import weakref
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from perception_mtl.core import distributed
from perception_mtl.engine.builders import build_balancer, build_data, build_model, build_tasks
from perception_mtl.engine import rng
from perception_mtl.engine.checkpoint import check_entries, load_checkpoint, restoring, save_checkpoint
from perception_mtl.engine.optimizer import build_optimizer
from perception_mtl.engine.train_batches import TrainBatches
from perception_mtl.engine.nonfinite import NonFiniteGradientError, NonFiniteLossError, nonfinite_gradients
from perception_mtl.engine.schedule import TaskSchedule
from perception_mtl.models.features import Features
from perception_mtl.tracking.local import LocalLogger
from perception_mtl.tracking.wandb import WandbLogger

Losses = dict[str, torch.Tensor]


class Hook:
    """A no-op at every point; subclasses override what they need. `self.trainer` is the loop (a weak
    reference, set by `TrainLoop.register`)."""

    trainer: "TrainLoop"

    def attach(self) -> None:
        """Called once `self.trainer` is set, before a resume restores `load_state_dict`."""

    def before_train(self) -> None:
        pass

    def before_step(self, batch: dict) -> None:
        pass

    def before_backward(self, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        return {}

    def after_step(self, batch: dict, stats: dict[str, float]) -> None:
        pass

    def after_train(self) -> None:
        pass

    def stopped_tasks(self) -> set[str]:
        """Tasks this hook has taken out of training (early stopping)."""
        return set()

    def state_dict(self) -> dict:
        """What a resume needs of this hook (saved in last.pt under the hook's class name)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

RESUME_ADVICE = ("start the run afresh with --overwrite instead of --resume (in a benchmark suite: delete the "
                 "run's folder)")
RESUMED = {"model": dict, "optimizer": dict, "scheduler": dict, "balancer": dict, "step": int, "hooks": dict,
           "skipped": int, "unlabelled": int, "rng": dict}  # last.pt's entries a resume reads, and their types


class TrainLoop:
    """A run's parts (built from `cfg`), its loop and its resumable state; `hooks` do the rest.

    Public API for hooks and tools: `batches()`, `run_step(batch)`, `forward_losses(batch)`,
    `losses(batch)`, `active_tasks()`, `reset_optimizer()`, `log(metrics)`, `state_dict()`,
    `fit()`, and the parts `cfg, model, tasks, balancer, optimizer, scheduler, train_set, val, wandb`."""

    def __init__(self, cfg: DictConfig, hooks: list[Hook]):
        self.cfg = cfg
        self.hooks: list[Hook] = []
        self.run_dir = Path(cfg.output_dir)
        distributed.env_from_slurm()  # launched by `srun --ntasks=N`: torchrun's variables from SLURM's
        self.device = distributed.resolve_device(cfg.train.device)
        distributed.init_from_env(self.device)  # launched by torchrun: join the process group
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.tasks = build_tasks(cfg)
        self.model = build_model(cfg, self.tasks).to(self.device)
        distributed.broadcast_module(self.model)
        self.schedule = TaskSchedule(cfg.train.schedule, cfg.train.seed)
        self.balancer = build_balancer(cfg).to(self.device)  # its parameters join the model's in the optimizer
        self.reset_optimizer()
        data = build_data(cfg)
        self.train_set, self.val = data.train, data.val
        self.train_batches = TrainBatches(data.train, data.frame_weights, cfg, self.device, self.run_dir)
        self.step, self.skipped, self.wandb_id = 0, 0, None
        self.metrics: dict[str, float] = {}  # the last evaluation's (set by the evaluation hook)
        self.clipped = 0  # steps whose gradient norm exceeded optim.clip_grad (the clip bound)
        self.unlabelled = 0  # steps whose batch had no label of an active task
        self.unreadable = 0  # frames passed over because their files could not be read (all ranks)
        self.train_time, self._clock = 0.0, time.perf_counter()  # seconds in fit(), summed over resumes
        self.local = LocalLogger(self.run_dir)
        for hook in hooks:
            self.register(hook)
        distributed.barrier()  # a restarted group reads last.pt only once every rank is up
        if cfg.resume and (self.run_dir / "last.pt").exists():
            last = self.run_dir / "last.pt"
            state = load_checkpoint(last, RESUME_ADVICE)
            check_entries(last, state, RESUMED, RESUME_ADVICE)
            with restoring(last, RESUME_ADVICE):  # entries that do not fit this run's model, optimizer, ...
                self._restore(state)
        if distributed.is_main():  # the logs continue from the step the run starts at: none twice
            self.local.truncate_after(self.step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            OmegaConf.save(cfg, self.run_dir / "config.yaml")
        self.wandb = WandbLogger(cfg.wandb, str(self.run_dir), OmegaConf.to_container(cfg, resolve=True),
                                 resume_id=self.wandb_id)
        self.wandb_id = self.wandb.run_id

    def register(self, hook: Hook) -> None:
        """Append `hook`, giving it the loop as a weak reference (no reference cycle keeps a run alive)."""
        hook.trainer = weakref.proxy(self)
        hook.attach()
        self.hooks.append(hook)

    def reset_optimizer(self) -> None:
        """A fresh AdamW and its warm-up + cosine schedule (`engine/optimizer.py`), after the model's or
        the balancer's parameters changed."""
        self.optimizer, self.scheduler = build_optimizer(self.model, self.balancer, self.cfg.optim, self.cfg.train.steps)

    # --- the loop -------------------------------------------------------------------------
    def batches(self) -> Iterator[dict]:
        """Training batches on the device from step `self.step` on (`engine/train_batches.py`: a new
        loader from the step reached when a data worker died)."""
        return self.train_batches(lambda: self.step)

    def fit(self) -> dict[str, float]:
        """Train to `train.steps`, calling the hooks at their points; -> the last evaluation's metrics."""
        self.model.train()
        self._clock = time.perf_counter()
        for hook in self.hooks:
            hook.before_train()
        batches = self.batches()
        while self.step < self.cfg.train.steps:
            batch = next(batches)
            self.unreadable += int(distributed.all_reduce_sum(torch.tensor(len(batch.get("unreadable", ())))))
            for hook in self.hooks:
                hook.before_step(batch)
            stats = self.run_step(batch)
            self.step += 1
            for hook in self.hooks:
                hook.after_step(batch, stats)
        for hook in self.hooks:
            hook.after_train()
        self.wandb.finish()
        return self.metrics

    def active_tasks(self) -> list[str]:
        """The tasks trained at this step: not stopped by a hook (early stopping), then chosen by the schedule."""
        stopped = set().union(*(hook.stopped_tasks() for hook in self.hooks))
        candidates = [t for t in self.tasks if t not in stopped]
        return self.schedule.active(self.step, candidates)

    def forward_losses(self, batch: dict, tasks: list[str] | None = None) -> tuple[Features, dict[str, torch.Tensor]]:
        """Forward -> (the model's shared features, the loss of each task (of `tasks`, default all)
        labelled in the batch, times its `train.loss_scale` factor (default 1))."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.train.amp):
            features = self.model.shared_features(batch["image"])
            outputs = self.model.task_outputs(features)
        losses: dict[str, torch.Tensor] = {}
        for t, task in self.tasks.items():
            wanted = tasks is None or t in tasks
            parts = task.loss(self.model.heads[t], outputs[t], batch) if wanted and t in batch["has"] else {}
            if parts:
                losses[t] = sum(parts.values()) * self.cfg.train.loss_scale.get(t, 1.0)
        return features, losses

    def losses(self, batch: dict, tasks: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The task losses of `forward_losses` alone."""
        return self.forward_losses(batch, tasks)[1]

    def run_step(self, batch: dict) -> dict[str, float]:
        """One optimisation step: losses, guard, balancer backward, sync, guard, clip, step;
        returns scalars to log (with what the hooks measured on the graph)."""
        active = self.active_tasks()
        features, losses = self.forward_losses(batch, active)
        coupling = self.model.coupling_losses(features)  # soft sharing's penalty: not a task loss
        self.optimizer.zero_grad(set_to_none=True)
        if (skipped := self._guard_losses(losses, coupling)) is not None:
            return skipped
        stats = {f"train/loss/{t}": float(v.detach()) for t, v in losses.items()}
        stats.update({f"train/coupling/{k}": float(v.detach()) for k, v in coupling.items()})
        if coupling:  # first, keeping the graph the balancer's backward then frees
            sum(coupling.values()).backward(retain_graph=True)
        for hook in self.hooks:
            stats.update(hook.before_backward(losses, features, batch))
        result = self.balancer.backward(losses, features, self.model)
        distributed.average_gradients((p for group in self.optimizer.param_groups for p in group["params"]),
                                      self.balancer.averaged_parameters())  # those not averaged yet
        if (skipped := self._guard_gradients(losses)) is not None:
            return skipped
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.clipped += bool(grad_norm > self.cfg.optim.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        self._after_update(batch, active, losses)
        stats.update({f"train/weight/{t}": float(w) for t, w in result.pop("weights").items()})
        stats.update({f"train/{k}": float(v) for k, v in result.items()})
        stats["train/grad_norm"] = float(grad_norm)
        return stats

    def _guard_losses(self, losses: dict[str, torch.Tensor], coupling: dict[str, torch.Tensor]) -> dict | None:
        """None to go on; {} when the step is skipped (a non-finite loss under train.nonfinite=skip,
        or no active task labelled in the batch on any rank); raises under train.nonfinite=stop."""
        named = {**{t: losses.get(t, torch.zeros((), device=self.device)) for t in self.tasks}, **coupling}  # same order on every rank
        flags = distributed.any_rank(~torch.isfinite(torch.stack([v.detach().float() for v in named.values()])))
        bad = [t for t, f in zip(named, flags.tolist()) if f]
        if bad:
            return self._skip_or_stop(NonFiniteLossError(
                f"non-finite loss for task(s) {bad} at step {self.step + 1}; "
                "lower optim.lr, or set train.nonfinite=skip to skip such steps"))
        if not distributed.any_rank(torch.tensor([bool(losses)])).item():
            # No active task is labelled in this batch on any rank (data.drop_labels, data.mix):
            # nothing to learn; the step passes so that the schedule stays on time.
            self.unlabelled += 1
            self.optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
            self.scheduler.step()
            return {}
        return None

    def _guard_gradients(self, losses: dict[str, torch.Tensor]) -> dict | None:
        """None to go on; {} (skipped) or a raise when a gradient is not finite."""
        bad = nonfinite_gradients(self.model, list(losses))
        if not bad:
            return None
        self.optimizer.zero_grad(set_to_none=True)
        return self._skip_or_stop(NonFiniteGradientError(
            f"non-finite gradient ({', '.join(bad)}) at step {self.step + 1}, before the optimizer step; "
            "lower optim.lr, check the inputs, or set train.nonfinite=skip to skip such steps"))

    def _after_update(self, batch: dict, active: list[str], losses: dict[str, torch.Tensor]) -> None:
        """The task schedule sees the losses, the balancer its post-step hook (FAMO's second
        forward), and every rank gets the same BatchNorm statistics."""
        self.schedule.observe(distributed.global_values(losses, list(self.tasks)))  # same on every rank
        with torch.no_grad():
            self.balancer.after_step(lambda: self.losses(batch, active))
        distributed.average_buffers(self.model)  # one set of BatchNorm statistics on every rank

    def _skip_or_stop(self, err: NonFiniteLossError) -> dict[str, float]:
        """`train.nonfinite=stop`: raise `err`; `skip`: count the step and move the schedule on."""
        if self.cfg.train.nonfinite == "stop":
            raise err
        self.skipped += 1
        self.optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
        self.scheduler.step()
        distributed.average_buffers(self.model)
        return {}

    # --- logging and state (used by the hooks) -------------------------------------------
    def log(self, metrics: dict[str, float]) -> None:
        if distributed.is_main():
            self.local.log(metrics, self.step)
        self.wandb.log(metrics, self.step)

    def state_dict(self) -> dict:
        """Everything a resume needs, every hook's state included; a collective (every rank's RNG)."""
        now = time.perf_counter()
        self.train_time, self._clock = self.train_time + now - self._clock, now
        rng_states = rng.run_state(self.device)  # a collective: every rank's own generators
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "balancer": self.balancer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "hooks": {type(h).__name__: h.state_dict() for h in self.hooks},
                "step": self.step, "skipped": self.skipped, "clipped": self.clipped,
                "unlabelled": self.unlabelled, "unreadable": self.unreadable, "rng": rng_states,
                "train_time": self.train_time,
                "wandb_id": self.wandb_id, "config": self.state_config()}

    def state_config(self) -> dict:
        """The run's config as checkpoints store it (plain containers, interpolations resolved)."""
        return OmegaConf.to_container(self.cfg, resolve=True)

    def save(self, name: str, state: dict) -> None:
        """Write `state` to `run_dir/name` on the main rank; no rank runs ahead of a checkpoint it may
        have to resume from."""
        if distributed.is_main():
            save_checkpoint(self.run_dir / name, state)
        distributed.barrier()

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
        self.schedule.load_state_dict(state["schedule"])
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(type(hook).__name__, {}))
        self.step, self.skipped = state["step"], state["skipped"]
        self.clipped = state.get("clipped", 0)  # checkpoints before the count: none seen
        self.unlabelled = state["unlabelled"]
        self.unreadable = state.get("unreadable", 0)  # checkpoints before the count: none seen
        self.train_time = state.get("train_time", 0.0)
        self.wandb_id = state.get("wandb_id")
        rng.restore(state["rng"], self.device)
