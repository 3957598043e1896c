"""What one training step costs per balancer (`tools/bench_balancers.py`): the variants of each
method (one per space it runs in), the trainer's real step timed in turn on one batch, peak
memory of each in a fresh child process, and UPGrad's parameter-space gradient from torchjd's
Jacobian against autogram's Gramian.

The children run this module: `python -m perception_mtl.benchmark.balancer_cost --child VARIANT
[key=value ...]` (or `--child gradient:jacobian|autogram --steps N --warmup K`), printing one JSON line.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torchjd.aggregation import UPGrad, UPGradWeighting
from torchjd.autogram import Engine
from torchjd.autojac import jac_to_grad, mtl_backward
from tqdm import tqdm

from perception_mtl.balancing import balancer_spaces, build_balancer
from perception_mtl.balancing.scale import scale_safe
from perception_mtl.data.collate import collate, move_batch
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.clock import now
from perception_mtl.engine.trainer import Trainer

ORDER = ["loss", "representation", "parameter"]
CHILD = [sys.executable, "-m", "perception_mtl.benchmark.balancer_cost"]


def variants(methods: list[str]) -> list[str]:
    """Method names, with ':<space>' for methods that run in more than one space (representation
    first)."""
    out = []
    for name in methods:
        spaces = balancer_spaces(name.split(":")[0])
        if len(spaces) > 1 and ":" not in name:
            out += [f"{name}:{space}" for space in sorted(spaces, key=ORDER.index)]
        else:
            out.append(name)
    return out


def params_of(variant: str) -> tuple[str, dict]:
    name, _, option = variant.partition(":")
    if not option:
        return name, {}
    return name, {"update": option} if name == "famo" else {"space": option}


def make_trainer(overrides: list[str], out: str) -> Trainer:
    cfg = load_config(None, ["wandb.mode=disabled", f"output_dir={out}", "train.log_every=1000000",
                             *overrides])
    return Trainer(cfg)


def install(trainer: Trainer, variant: str, model_state: dict) -> None:
    """Fresh balancer, optimizer and schedule on the same initial weights."""
    name, params = params_of(variant)
    defaults = load_config(None, [f"balancer.name={name}"]).balancer.params
    trainer.model.load_state_dict(model_state)
    trainer.balancer = build_balancer(name, list(trainer.tasks), {**defaults, **params}).to(trainer.device)
    trainer.reset_optimizer()


def peak_memory(variant: str, overrides: list[str]) -> float:
    """Peak memory (MiB) of a child process that runs 2 steps of `variant`."""
    cmd = [*CHILD, "--child", variant, *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def first_batch(trainer: Trainer) -> dict:
    """The first `train.batch_size` training frames as one batch on the trainer's device."""
    return move_batch(collate([trainer.train_set[i] for i in range(trainer.cfg.train.batch_size)]), trainer.device)


def time_steps(trainer: Trainer, runs: list[str], steps: int, warmup: int) -> dict[str, list[float]]:
    """{variant: seconds of each timed `run_step`} on one batch: rounds go through the variants in
    turn (so drift hits all alike), each from the same initial weights; the first `warmup` rounds
    are not timed."""
    batch = first_batch(trainer)
    state = copy.deepcopy(trainer.model.state_dict())
    times: dict[str, list[float]] = {v: [] for v in runs}
    with tqdm(total=(warmup + steps) * len(runs), desc="timing", unit="step") as bar:
        for r in range(warmup + steps):
            for variant in runs:
                install(trainer, variant, state)
                tic = now(trainer.device)
                trainer.run_step(batch)
                if r >= warmup:
                    times[variant].append(now(trainer.device) - tic)
                bar.update()
    return times


def step_table(runs: list[str], times: dict[str, list[float]], memory: dict[str, float]) -> str:
    """The markdown table: median step and peak memory per variant, and their ratios to `equal`."""
    base = statistics.median(times["equal"])
    header = "| method | space | step (s) | x equal |" + (" peak memory (MiB) | x equal |" if memory else "")
    out = [header, "|" + "---|" * (header.count("|") - 1)]
    for variant in runs:
        name, params = params_of(variant)
        space = params.get("space", balancer_spaces(name)[0])
        if name == "famo":
            space = f"loss, {params.get('update', 'same_batch')}"
        med = statistics.median(times[variant])
        row = f"| {name} | {space} | {med:.3f} | {med / base:.2f} |"
        if memory:
            row += f" {memory[variant]:.0f} | {memory[variant] / memory['equal']:.2f} |"
        out.append(row)
    return "\n".join(out)


def child(variant: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(overrides, out)
        batch = first_batch(trainer)
        install(trainer, variant, copy.deepcopy(trainer.model.state_dict()))
        for _ in range(2):
            trainer.run_step(batch)
    print(json.dumps({"peak_mib": _peak_mib()}))


def shared_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's top-level modules that hold only shared parameters (backbone, shared neck)."""
    shared = {id(p) for p in model.shared_parameters()}
    return [m for m in model.children()
            if list(m.parameters()) and all(id(p) in shared for p in m.parameters())]


def gradient_child(mode: str, steps: int, warmup: int, overrides: list[str]) -> None:
    """Time `steps` rounds of forward + UPGrad's gradient on the shared parameters, computed from
    the Jacobian (`mode="jacobian"`) or autogram's Gramian (`mode="autogram"`); print the median
    and this process's peak memory."""
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(overrides, out)
        batch = first_batch(trainer)
        model = trainer.model
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        engine = Engine(*shared_modules(model), batch_dim=None) if mode == "autogram" else None
        times = []
        for r in range(warmup + steps):
            model.zero_grad(set_to_none=True)
            tic = now(trainer.device)
            features, losses = trainer.forward_losses(batch, trainer.active_tasks())
            if engine is None:
                mtl_backward(list(losses.values()), features.tensors(), shared_params=shared,
                             tasks_params=[list(model.task_parameters(t)) for t in losses])
                jac_to_grad(shared, scale_safe(UPGrad))
            else:
                stacked = torch.stack(list(losses.values()))
                stacked.backward(scale_safe(UPGradWeighting)(engine.compute_gramian(stacked)))
            if r >= warmup:
                times.append(now(trainer.device) - tic)
    print(json.dumps({"seconds": statistics.median(times), "peak_mib": _peak_mib()}))


def compare_gramians(steps: int, warmup: int, overrides: list[str]) -> None:
    """Print the Jacobian and autogram rows of `--gramian`."""
    rows = {}
    for mode in ("jacobian", "autogram"):
        cmd = [*CHILD, "--child", f"gradient:{mode}", "--steps", str(steps),
               "--warmup", str(warmup), *overrides]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    print("\n| UPGrad gradient, parameter space | forward + gradient (s) | x Jacobian | peak memory (MiB) "
          "| x Jacobian |")
    print("|---|---|---|---|---|")
    labels = {"jacobian": "mtl_backward + jac_to_grad", "autogram": "autogram Gramian + weighted backward"}
    for mode, label in labels.items():
        row, base = rows[mode], rows["jacobian"]
        print(f"| {label} | {row['seconds']:.3f} | {row['seconds'] / base['seconds']:.2f} | "
              f"{row['peak_mib']:.0f} | {row['peak_mib'] / base['peak_mib']:.2f} |")


def _peak_mib() -> float:
    """Peak memory of this process: CUDA's allocator peak, else VmHWM (Linux). Not ru_maxrss:
    Linux carries it across exec from the forking parent, which would hide the child's own peak."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    status = Path("/proc/self/status")
    if status.exists():
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS


if __name__ == "__main__":  # a child process of `peak_memory` or `compare_gramians`
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    cli = parser.parse_args()
    if cli.child.startswith("gradient:"):
        gradient_child(cli.child.partition(":")[2], cli.steps, cli.warmup, cli.overrides)
    else:
        child(cli.child, cli.overrides)
