"""A suite run's record, its result.json, as every launcher makes it (`launch/job.py`): train or
resume the run and write the record, evaluate its selected checkpoint once on the held-out split
into the record, read the record back. It sits below both the runner and the launchers, so neither
imports the other back.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from perception_mtl.analysis.frame_bootstrap import FILE as FRAMES_FILE
from perception_mtl.core.atomic import atomic_write_text
from perception_mtl.benchmark.suite import Run, Suite
from perception_mtl.engine.checkpoint_eval import evaluate_checkpoint, open_checkpoint
from perception_mtl.engine.trainer import Trainer
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.tasks import TASKS


def latency_ms(model: torch.nn.Module, size: tuple[int, int], repeats: int = 20) -> float:
    """Median forward time (ms) of one image at `size`, no grad, after 3 warm-up calls."""
    model.eval()
    device = next(model.parameters()).device
    image = torch.rand(1, 3, *size, device=device)
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            tic = time.perf_counter()
            model(image)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # kernels run asynchronously: time their end
            if i >= 3:
                times.append(1000 * (time.perf_counter() - tic))
    return statistics.median(times)


def config_digest(cfg) -> str:
    """A digest of what a run trains: its config without where it writes, how it logs, and its seed,
    so that two suite rows with the same digest at every seed are one configuration."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("output_dir", "resume", "wandb"):
        plain.pop(key, None)
    plain["train"] = {k: v for k, v in plain["train"].items() if k != "seed"}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_record(run_dir: Path, record: dict) -> None:
    """result.json, written atomically: a kill never leaves half a file."""
    atomic_write_text(run_dir / "result.json", json.dumps(record, indent=2))


def train_run(suite: Suite, run: Run, results_dir: Path) -> dict:
    """Train (or resume) one run and write its result.json; returns the record."""
    out = results_dir / run.folder
    cfg = suite.config(run, out)
    trainer = Trainer(cfg)
    metrics = trainer.fit()
    if not metrics:  # finished before this call, e.g. killed between the last save and result.json
        from perception_mtl.engine.evaluator import evaluate_parts
        metrics, _ = evaluate_parts(trainer.model, trainer.tasks, trainer.val, tuple(cfg.data.size))
    record = {
        "run": run.label, "kind": run.kind, "method": run.method, "seed": run.seed,
        "tasks": [t for t in cfg.tasks if t not in cfg.aux_tasks], "aux_tasks": list(cfg.aux_tasks),
        "metrics": metrics, "sweep": run.sweep, **({"tune": run.tune} if run.tune else {}),
        "balancer": {"name": cfg.balancer.name, "params": OmegaConf.to_container(cfg.balancer.params, resolve=True)},
        "directions": {k: trainer.tasks[(m := MetricKey.parse(k)).task].directions[m.metric] for k in metrics},
        "params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "train_time_s": trainer.train_time,
        "latency_ms": latency_ms(trainer.model, tuple(cfg.data.size)),
        "steps": trainer.step,
        "clipped_steps": trainer.clipped,  # steps where optim.clip_grad bound the global gradient norm
        "config_digest": config_digest(cfg),
    }
    write_record(out, record)
    return record


def selected_checkpoint(run_dir: Path) -> Path:
    """The checkpoint training selected on val: best.pt (best `train.best_metric`), else last.pt."""
    return run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"


def evaluate_on_test(run_dir: Path, record: dict, test: dict) -> dict:
    """Evaluate the run's selected checkpoint on the held-out split once; returns the record with
    its "test" entry (split, limit, checkpoint, step, frames, metrics), also written to result.json;
    the tasks' per-frame tables (detection's matches, for a frame bootstrap) go to test_frames.json."""
    checkpoint = selected_checkpoint(run_dir)
    opened = open_checkpoint(checkpoint, test["split"], test["limit"])
    tables: dict = {}
    metrics = evaluate_checkpoint(opened, progress=False, per_frame=tables)
    if tables:
        atomic_write_text(run_dir / FRAMES_FILE, json.dumps(tables))
    record = {**record, "test": {**test, "checkpoint": checkpoint.name, "step": opened.state["step"],
                                 "frames": opened.frames, "metrics": metrics}}
    write_record(run_dir, record)
    return record


def read_record(run_dir: Path) -> dict | None:
    """The run's result.json, or None when absent or unreadable (which means: train again)."""
    try:
        return json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


def has_test(record: dict, test: dict) -> bool:
    """Whether the record already holds the evaluation on `test`'s split and limit."""
    done = record.get("test") or {}
    return (done.get("split"), done.get("limit")) == (test["split"], test["limit"])


def headline(metrics: dict[str, float]) -> str:
    """The key metrics (`Task.key_metrics`) of a run's results, for its progress line."""
    return ", ".join(f"{key} {value:.3f}" for key, value in metrics.items()
                     if (k := MetricKey.parse(key)).metric in TASKS.get(k.task).dashboard_metrics())
