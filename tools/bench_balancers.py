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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from perception_mtl.balancing import BALANCERS  # noqa: E402
from perception_mtl.benchmark.balancer_cost import (compare_gramians, make_trainer, peak_memory, step_table,  # noqa: E402
                                                    time_steps, variants)
from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402


@exits_2_on_bad_input
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed rounds per method")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", help="comma-separated; default: every registered balancer")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method child processes")
    p.add_argument("--gramian", action="store_true", help="Jacobian vs autogram's Gramian for UPGrad (see above)")
    p.add_argument("overrides", nargs="*", help="config key=value (default: configs/default.yaml)")
    args = p.parse_args()
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
        times = time_steps(trainer, runs, args.steps, args.warmup)
    memory = {} if args.no_memory else {v: peak_memory(v, args.overrides) for v in tqdm(runs, desc="memory")}
    device = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    print(f"\nOne training step, {cfg.model.backbone} at {list(cfg.data.size)}, batch {cfg.train.batch_size}, "
          f"tasks {list(cfg.tasks)}, {device}; median of {args.steps} after {args.warmup} warm-up rounds.\n")
    print(step_table(runs, times, memory))


if __name__ == "__main__":
    main()
