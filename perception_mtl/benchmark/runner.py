"""Run a suite: every (run, seed) not yet finished, then the leaderboard and transfer report.

A run is finished when its `result.json` exists and parses (the contract in
`analysis/results.py`; it is written to a temporary file and renamed, so a kill never leaves a
half-written one); an unfinished run resumes from its `last.pt`, so a killed suite loses at most
the steps since the last checkpoint and never redoes a finished run.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

from perception_mtl.benchmark.suite import Run, Suite
from perception_mtl.data.world.generate import WorldSpec, generate
from perception_mtl.engine.trainer import Trainer


def ensure_world(suite: Suite) -> None:
    """Render the suite's driving world into `data.root` when the suite asks and it is absent."""
    spec = suite.spec.get("world")
    root = Path((suite.spec.get("config") or {}).get("data.root", "datasets/generated/world"))
    if spec and not (root / "world.json").exists():
        print(f"rendering the suite's world into {root} ...", flush=True)
        world = WorldSpec(**spec)
        generate(root, world, workers=1 if world.train + world.val <= 200 else None, progress=True)


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


def train_run(suite: Suite, run: Run, results_dir: Path) -> dict:
    """Train (or resume) one run and write its result.json; returns the record."""
    out = results_dir / run.folder
    cfg = suite.config(run, out)
    trainer = Trainer(cfg)
    metrics = trainer.fit()
    if not metrics:  # finished before this call, e.g. killed between the last save and result.json
        from perception_mtl.engine.evaluator import evaluate_parts
        metrics, _ = evaluate_parts(trainer.model, trainer.tasks, trainer.val,
                                    tuple(cfg.data.size), seg_classes=cfg.data.seg_classes)
    record = {
        "run": run.label, "kind": run.kind, "method": run.method, "seed": run.seed,
        "tasks": [t for t in cfg.tasks if t not in cfg.aux_tasks], "aux_tasks": list(cfg.aux_tasks),
        "metrics": metrics, "sweep": run.sweep,
        "directions": {k: trainer.tasks[k.split("/")[0]].directions[k.split("/", 1)[1].split("@")[0]] for k in metrics},
        "params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "train_time_s": trainer.train_time,
        "latency_ms": latency_ms(trainer.model, tuple(cfg.data.size)),
        "steps": trainer.step,
    }
    tmp = out / ".result.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out / "result.json")
    return record


def finished(run_dir: Path) -> bool:
    """Whether `run_dir` holds a complete result.json (an unreadable one means: train again)."""
    try:
        json.loads((run_dir / "result.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def run_suite(suite: Suite, results_dir: Path | None = None) -> Path:
    """Run what is unfinished, then write the leaderboard and the transfer report."""
    results_dir = Path(results_dir or suite.output_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(suite.path, results_dir / "suite.yaml")
    ensure_world(suite)
    runs = suite.runs()
    for k, run in enumerate(runs, 1):
        done = finished(results_dir / run.folder)
        print(f"[{k}/{len(runs)}] {run.label} seed {run.seed}: {'done, skipped' if done else 'training'}", flush=True)
        if not done:
            tic = time.perf_counter()
            record = train_run(suite, run, results_dir)
            shown = ", ".join(f"{key} {value:.3f}" for key, value in record["metrics"].items()
                              if key.split("/")[1] in ("mAP50", "mIoU", "abs_rel", "delta1", "mse"))
            print(f"[{k}/{len(runs)}] {run.label} seed {run.seed}: {shown} ({time.perf_counter() - tic:.0f} s)",
                  flush=True)
    from perception_mtl.analysis.leaderboard import write_leaderboard
    from perception_mtl.analysis.transfer import write_transfer_report

    write_leaderboard(results_dir)
    write_transfer_report(results_dir)
    return results_dir
