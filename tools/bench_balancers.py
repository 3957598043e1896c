"""Cost of one training step per balancer, against `equal`, side by side in one process.

    python tools/bench_balancers.py [--steps 5] [--warmup 2] [--methods a,b] [--no-memory] [key=value ...]

Builds the default model (configs/default.yaml plus overrides) on one real batch of the
embedded world and times the trainer's own step (forward, losses, balancer.backward, clip,
optimizer step, after_step) for every method; gradient methods in both spaces. Rounds go
through the methods in turn (so drift hits all alike) and the table shows medians and the
ratio to `equal`. Peak memory: each method runs 2 steps in a fresh child process and reports
its peak resident memory (CPU, VmHWM) or peak allocated memory (CUDA).
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from perception_mtl.balancing import BALANCERS, balancer_spaces, build_balancer  # noqa: E402
from perception_mtl.config import ConfigError, load_config  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402
from perception_mtl.data.collate import collate  # noqa: E402
from perception_mtl.engine.trainer import Trainer  # noqa: E402

ORDER = ["loss", "representation", "parameter"]


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
    trainer.balancer = build_balancer(name, list(trainer.tasks), {**defaults, **params})
    trainer.optimizer = torch.optim.AdamW(trainer._param_groups(), lr=trainer.cfg.optim.lr)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, trainer._lr_factor)


def peak_memory(variant: str, overrides: list[str]) -> float:
    """Peak memory (MiB) of a child process that runs 2 steps of `variant`."""
    cmd = [sys.executable, __file__, "--child", variant, *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def child(variant: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(overrides, out)
        batch = collate([trainer.train_set[i] for i in range(trainer.cfg.train.batch_size)])
        install(trainer, variant, copy.deepcopy(trainer.model.state_dict()))
        for _ in range(2):
            trainer.train_step(batch)
    print(json.dumps({"peak_mib": _peak_mib()}))


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed rounds per method")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", help="comma-separated; default: every registered balancer")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method child processes")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config key=value (default: configs/default.yaml)")
    args = p.parse_args()
    if args.child:
        return child(args.child, args.overrides)
    if args.steps < 1 or args.warmup < 0:
        p.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    unknown = sorted(set(args.methods.split(",") if args.methods else []) - set(BALANCERS.names()))
    if unknown:
        p.error(f"--methods: unknown balancer(s) {unknown}; choose from {BALANCERS.names()}")
    try:
        load_config(None, list(args.overrides))
    except ConfigError as err:
        p.exit(2, f"config error: {err}\n")

    names = args.methods.split(",") if args.methods else ["equal"] + [n for n in BALANCERS.names() if n != "equal"]
    runs = variants(names if "equal" in names else ["equal", *names])
    if "famo" in names:
        runs.insert(runs.index("famo") + 1, "famo:next_batch")
    with tempfile.TemporaryDirectory() as out:
        try:
            trainer = make_trainer(args.overrides, out)
        except DatasetError as err:
            p.exit(2, f"data error: {err}\n")
        cfg = trainer.cfg
        batch = collate([trainer.train_set[i] for i in range(cfg.train.batch_size)])
        state = copy.deepcopy(trainer.model.state_dict())
        times: dict[str, list[float]] = {v: [] for v in runs}
        rounds = args.warmup + args.steps
        with tqdm(total=rounds * len(runs), desc="timing", unit="step") as bar:
            for r in range(rounds):
                for variant in runs:
                    install(trainer, variant, state)
                    tic = time.perf_counter()
                    trainer.train_step(batch)
                    if r >= args.warmup:
                        times[variant].append(time.perf_counter() - tic)
                    bar.update()
    memory = {} if args.no_memory else {v: peak_memory(v, args.overrides) for v in tqdm(runs, desc="memory")}

    base = statistics.median(times["equal"])
    device = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    print(f"\nOne training step, {cfg.model.backbone} at {list(cfg.data.size)}, batch {cfg.train.batch_size}, "
          f"tasks {list(cfg.tasks)}, {device}; median of {args.steps} after {args.warmup} warm-up rounds.\n")
    header = "| method | space | step (s) | x equal |" + (" peak memory (MiB) | x equal |" if memory else "")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for variant in runs:
        name, params = params_of(variant)
        space = params.get("space", balancer_spaces(name)[0])
        if name == "famo":
            space = f"loss, {params.get('update', 'same_batch')}"
        med = statistics.median(times[variant])
        row = f"| {name} | {space} | {med:.3f} | {med / base:.2f} |"
        if memory:
            row += f" {memory[variant]:.0f} | {memory[variant] / memory['equal']:.2f} |"
        print(row)


if __name__ == "__main__":
    main()
