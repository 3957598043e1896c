"""Cost of each sharing scheme against hard sharing, measured side by side in one process.

    python tools/bench_sharing.py [--steps 5] [--warmup 2] [--schemes hard,soft,cross_stitch] [key=value ...]

Builds the model of each scheme (configs/default.yaml plus overrides) on one real batch of the
embedded world and reports trainable parameters, the median time of the trainer's own step
(forward, losses, coupling, balancer.backward, optimizer step) and the median batch-1 inference
latency. Rounds go through the schemes in turn, so drift hits all alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from perception_mtl.benchmark.record import latency_ms  # noqa: E402
from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402
from perception_mtl.engine.clock import now  # noqa: E402
from perception_mtl.data.collate import collate, move_batch  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402
from perception_mtl.engine.trainer import Trainer  # noqa: E402
from perception_mtl.models import SHARING  # noqa: E402


@exits_2_on_bad_input
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="timed rounds per scheme")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--schemes", default=",".join(SHARING), help=f"comma-separated, from {list(SHARING)}")
    p.add_argument("overrides", nargs="*", help="config key=value (default: configs/default.yaml)")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        p.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    schemes = args.schemes.split(",")
    if "hard" not in schemes or any(s not in SHARING for s in schemes):
        p.error(f"--schemes must include hard and come from {list(SHARING)}")
    with tempfile.TemporaryDirectory() as out:
        try:
            trainers = {s: Trainer(load_config(None, ["wandb.mode=disabled", f"output_dir={out}/{s}",
                                                      "train.log_every=1000000", *args.overrides,
                                                      f"model.sharing={s}"])) for s in schemes}
        except (ConfigError, DatasetError) as err:
            p.exit(2, f"error: {err}\n")
        cfg = trainers["hard"].cfg
        batch = move_batch(collate([trainers["hard"].train_set[i] for i in range(cfg.train.batch_size)]),
                           trainers["hard"].device)
        step: dict[str, list[float]] = {s: [] for s in schemes}
        latency: dict[str, list[float]] = {s: [] for s in schemes}
        with tqdm(total=(args.warmup + args.steps) * len(schemes), desc="timing", unit="step") as bar:
            for r in range(args.warmup + args.steps):
                for s, trainer in trainers.items():
                    trainer.model.train()
                    tic = now(trainer.device)
                    trainer.run_step(batch)
                    if r >= args.warmup:
                        step[s].append(now(trainer.device) - tic)
                        latency[s].append(latency_ms(trainer.model, tuple(cfg.data.size), repeats=5))
                    bar.update()
    device = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    print(f"\nSharing schemes, {cfg.model.backbone} at {list(cfg.data.size)}, batch {cfg.train.batch_size}, "
          f"tasks {list(cfg.tasks)}, balancer {cfg.balancer.name}, {device}; medians of {args.steps} rounds "
          f"after {args.warmup} warm-up.\n")
    print("| scheme | parameters (M) | x hard | train step (s) | x hard | latency, batch 1 (ms) | x hard |")
    print("|---|---|---|---|---|---|---|")
    base = {k: statistics.median(v["hard"]) for k, v in (("step", step), ("latency", latency))}
    n_hard = sum(p.numel() for p in trainers["hard"].model.parameters())
    for s, trainer in trainers.items():
        n = sum(p.numel() for p in trainer.model.parameters())
        st, la = statistics.median(step[s]), statistics.median(latency[s])
        print(f"| {s} | {n / 1e6:.2f} | {n / n_hard:.2f} | {st:.3f} | {st / base['step']:.2f} | {la:.1f} | "
              f"{la / base['latency']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
