"""Cost of one training step per balancer, against `equal`, side by side in one process.

    python tools/bench_balancers.py [--steps 5] [--warmup 2] [--methods a,b] [--no-memory] [key=value ...]
    python tools/bench_balancers.py --gramian [--steps 5] [--warmup 2] [key=value ...]

Builds the default model (configs/default.yaml plus overrides) on one real batch of the
embedded world and times the trainer's own step (forward, losses, balancer.backward, clip,
optimizer step, after_step) for every method; gradient methods in both spaces. Rounds go
through the methods in turn (so drift hits all alike) and the table shows medians and the
ratio to `equal`. Peak memory: each method runs 2 steps in a fresh child process and reports
its peak resident memory (CPU, VmHWM) or peak allocated memory (CUDA).

`--gramian`: the parameter-space gradient of a Gramian weighting (UPGrad) two ways, each in its
own child process (time: median over the rounds of forward + gradient; peak memory): torchjd's
`mtl_backward` + `jac_to_grad` (the Jacobian on the shared parameters, what the balancers use) and
`torchjd.autogram` (the Gramian accumulated layer by layer without the Jacobian, weights from it,
one backward of sum_i w_i L_i). The engine needs `batch_dim=None`: the backbones' BatchNorm mixes
the samples of a batch.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torchjd.aggregation import UPGrad, UPGradWeighting  # noqa: E402
from torchjd.autogram import Engine  # noqa: E402
from torchjd.autojac import jac_to_grad, mtl_backward  # noqa: E402
from tqdm import tqdm  # noqa: E402

from perception_mtl.balancing import BALANCERS, balancer_spaces, build_balancer  # noqa: E402
from perception_mtl.balancing.scale import scale_safe  # noqa: E402
from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402
from perception_mtl.engine.clock import now  # noqa: E402
from perception_mtl.data.collate import collate, move_batch  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402
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
    trainer.balancer = build_balancer(name, list(trainer.tasks), {**defaults, **params}).to(trainer.device)
    trainer.reset_optimizer()


def peak_memory(variant: str, overrides: list[str]) -> float:
    """Peak memory (MiB) of a child process that runs 2 steps of `variant`."""
    cmd = [sys.executable, __file__, "--child", variant, *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def child(variant: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(overrides, out)
        batch = move_batch(collate([trainer.train_set[i] for i in range(trainer.cfg.train.batch_size)]), trainer.device)
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
        batch = move_batch(collate([trainer.train_set[i] for i in range(trainer.cfg.train.batch_size)]), trainer.device)
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
        cmd = [sys.executable, __file__, "--child", f"gradient:{mode}", "--steps", str(steps),
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


@exits_2_on_bad_input
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed rounds per method")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", help="comma-separated; default: every registered balancer")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method child processes")
    p.add_argument("--gramian", action="store_true", help="Jacobian vs autogram's Gramian for UPGrad (see above)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config key=value (default: configs/default.yaml)")
    args = p.parse_args()
    if args.child and args.child.startswith("gradient:"):
        return gradient_child(args.child.partition(":")[2], args.steps, args.warmup, args.overrides)
    if args.child:
        return child(args.child, args.overrides)
    if args.steps < 1 or args.warmup < 0:
        p.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.gramian:
        return compare_gramians(args.steps, args.warmup, args.overrides)
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
        batch = move_batch(collate([trainer.train_set[i] for i in range(cfg.train.batch_size)]), trainer.device)
        state = copy.deepcopy(trainer.model.state_dict())
        times: dict[str, list[float]] = {v: [] for v in runs}
        rounds = args.warmup + args.steps
        with tqdm(total=rounds * len(runs), desc="timing", unit="step") as bar:
            for r in range(rounds):
                for variant in runs:
                    install(trainer, variant, state)
                    tic = now(trainer.device)
                    trainer.run_step(batch)
                    if r >= args.warmup:
                        times[variant].append(now(trainer.device) - tic)
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
