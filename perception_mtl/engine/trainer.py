"""The training loop: forward -> task losses -> balancer.backward -> clip -> step -> log.

Evaluation, checkpoints and logging hang off the loop at fixed step intervals. A run is
exactly resumable: model, optimizer, schedule, balancer, RNG and data position are saved.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from perception_mtl.balancing import build_balancer
from perception_mtl.balancing.gradients import probe
from perception_mtl.data.cityscapes import CityscapesDataset
from perception_mtl.data.collate import collate
from perception_mtl.data.sampling import SeededDataset, StepSampler
from perception_mtl.engine.affinity import lookahead_affinity
from perception_mtl.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from perception_mtl.engine.evaluator import evaluate
from perception_mtl.models.multitask import MultiTaskModel
from perception_mtl.tasks import TASKS
from perception_mtl.tracking.local import LocalLogger
from perception_mtl.tracking.media import media_panels
from perception_mtl.tracking.plots import plot_run
from perception_mtl.tracking.wandb import WandbLogger


class NonFiniteLossError(RuntimeError):
    """A task loss became NaN or Inf and `train.nonfinite=stop`."""


def build_tasks(cfg: DictConfig) -> dict:
    return {t: TASKS.get(t)(cfg) for t in cfg.tasks}


def val_loader(cfg: DictConfig, split: str = "val", limit: int | None = None) -> DataLoader:
    """Validation frames at their own resolution (the evaluator resizes the inputs)."""
    ds = CityscapesDataset(cfg.data.root, split, tuple(cfg.tasks), cfg.data.seg_classes,
                           min_box_size=cfg.data.min_box_size)
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    return DataLoader(ds, batch_size=cfg.train.batch_size, collate_fn=collate, num_workers=cfg.data.workers)


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.run_dir = Path(cfg.output_dir)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.tasks = build_tasks(cfg)
        self.model = MultiTaskModel(cfg, self.tasks)
        self.balancer = build_balancer(cfg.balancer.name, list(cfg.tasks),
                                       OmegaConf.to_container(cfg.balancer.params, resolve=True))
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.optim.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.train_set = CityscapesDataset(cfg.data.root, "train", tuple(cfg.tasks), cfg.data.seg_classes,
                                           tuple(cfg.data.size), cfg.data.hflip, cfg.data.color_jitter,
                                           cfg.data.min_box_size)
        if cfg.data.train_limit is not None:
            self.train_set = torch.utils.data.Subset(self.train_set, range(min(cfg.data.train_limit, len(self.train_set))))
        self.val = val_loader(cfg, limit=cfg.data.val_limit)
        self.step, self.best, self.skipped, self.wandb_id = 0, -math.inf, 0, None
        self.train_time, self._clock = 0.0, time.perf_counter()  # seconds in fit(), summed over resumes
        self.local = LocalLogger(self.run_dir)
        if cfg.resume and (self.run_dir / "last.pt").exists():
            self._restore(load_checkpoint(self.run_dir / "last.pt"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.run_dir / "config.yaml")
        self.wandb = WandbLogger(cfg.wandb, str(self.run_dir), OmegaConf.to_container(cfg, resolve=True),
                                 resume_id=self.wandb_id)
        self.wandb_id = self.wandb.run_id

    def _param_groups(self) -> list[dict]:
        o = self.cfg.optim
        groups = [{"params": list(self.model.parameters()), "weight_decay": o.weight_decay}]
        if self.balancer.optimizer_parameters():
            groups.append({"params": self.balancer.optimizer_parameters(), "weight_decay": 0.0})
        return groups

    def _lr_factor(self, step: int) -> float:
        """Linear warm-up, then cosine decay to `min_lr_ratio`."""
        o, total = self.cfg.optim, self.cfg.train.steps
        if step < o.warmup_steps:
            return (step + 1) / o.warmup_steps
        progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # --- the loop -------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        cfg = self.cfg.train
        loader = DataLoader(SeededDataset(self.train_set), batch_size=cfg.batch_size, collate_fn=collate,
                            sampler=StepSampler(len(self.train_set), cfg.batch_size, cfg.seed, self.step),
                            num_workers=self.cfg.data.workers)
        self.model.train()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step")
        self._clock = time.perf_counter()
        batches = iter(loader)
        tic, seen = time.perf_counter(), 0
        metrics: dict[str, float] = {}
        while self.step < cfg.steps:
            batch = next(batches)
            stats = self.train_step(batch)
            self.step += 1
            seen += batch["image"].shape[0]
            bar.update()
            bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in stats.items() if "/loss/" in k})
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                stats["train/images_per_s"] = seen / (time.perf_counter() - tic)
                stats["train/lr"] = self.scheduler.get_last_lr()[0]
                stats["train/skipped_steps"] = self.skipped
                self.log(stats)
                tic, seen = time.perf_counter(), 0
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                metrics = self.evaluate_and_track()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save("last.pt")
        bar.close()
        plot_run(self.run_dir)
        self.wandb.finish()
        return metrics

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Forward and the loss of each task labelled in the batch."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.train.amp):
            outputs = self.model(batch["image"])
        losses: dict[str, torch.Tensor] = {}
        for t, task in self.tasks.items():
            parts = task.loss(self.model.heads[t], outputs[t], batch) if t in batch["has"] else {}
            if parts:
                losses[t] = sum(parts.values())
        return losses

    def train_step(self, batch: dict) -> dict[str, float]:
        """One optimisation step; returns scalars to log (gradient statistics at log steps)."""
        losses = self.losses(batch)
        bad = [t for t, v in losses.items() if not torch.isfinite(v)]
        self.optimizer.zero_grad(set_to_none=True)
        if bad:
            if self.cfg.train.nonfinite == "stop":
                raise NonFiniteLossError(f"non-finite loss for task(s) {bad} at step {self.step + 1}; "
                                         "lower optim.lr, or set train.nonfinite=skip to skip such steps")
            self.skipped += 1
            self.scheduler.step()
            return {}
        stats = {f"train/loss/{t}": float(v.detach()) for t, v in losses.items()}
        if (self.step + 1) % self.cfg.train.log_every == 0 and len(losses) > 1:
            stats.update({f"train/{k}": v for k, v in probe(losses, self.model).items()})
        every = self.cfg.train.affinity_every
        if every and (self.step + 1) % every == 0 and len(losses) > 1:
            affinity = lookahead_affinity(self.model, losses, lambda: self.losses(batch),
                                          self.scheduler.get_last_lr()[0])
            stats.update({f"train/{k}": v for k, v in affinity.items()})
        result = self.balancer.backward(losses, self.model)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.balancer.after_step(lambda: self.losses(batch))
        stats.update({f"train/weight/{t}": float(w) for t, w in result.pop("weights").items()})
        stats.update({f"train/{k}": float(v) for k, v in result.items()})
        stats["train/grad_norm"] = float(grad_norm)
        return stats

    # --- hooks ----------------------------------------------------------------------------
    def log(self, metrics: dict[str, float]) -> None:
        self.local.log(metrics, self.step)
        self.wandb.log(metrics, self.step)

    def evaluate_and_track(self) -> dict[str, float]:
        results, first = evaluate(self.model, self.tasks, self.val, tuple(self.cfg.data.size),
                                  seg_classes=self.cfg.data.seg_classes, keep_first=True)
        self.log({f"val/{k}": v for k, v in results.items()})
        if first is not None and self.cfg.wandb.images > 0:
            self.wandb.images("val/predictions", media_panels(*first, self.cfg.wandb.images), self.step)
        key = self.cfg.train.best_metric
        if key in results:
            task, name = key.split("/", 1)
            score = results[key] if self.tasks[task].directions[name] else -results[key]
            if score > self.best:
                self.best = score
                self.save("best.pt")
        return results

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "balancer": self.balancer.state_dict(),
                "step": self.step, "best": self.best, "skipped": self.skipped, "rng": rng_state(),
                "train_time": self.train_time,
                "wandb_id": self.wandb_id, "config": OmegaConf.to_container(self.cfg, resolve=True)}

    def save(self, name: str) -> None:
        now = time.perf_counter()
        self.train_time, self._clock = self.train_time + now - self._clock, now
        save_checkpoint(self.run_dir / name, self.state())

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
        self.step, self.best, self.skipped = state["step"], state["best"], state["skipped"]
        self.train_time = state.get("train_time", 0.0)
        self.wandb_id = state.get("wandb_id")
        set_rng_state(state["rng"])
        self.local.truncate_after(self.step)
