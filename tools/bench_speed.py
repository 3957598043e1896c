"""Where a training step's time goes, and how far it is from the model's own cost.

    python tools/bench_speed.py [--steps 20] [--eval-frames 96] [--vs key=value ...] [key=value ...]

Builds the run of `configs/default.yaml` (plus overrides), runs the trainer's own loop for 3 warm-up
and `--steps` timed steps with `engine/step_timer.StepTimer` as its one hook, and splits each step
into data wait, forward + losses (backbone, neck, each head), backward (balancer, gradient sync,
clip), and optimizer + after-step. The lower bound is the model's forward + backward of
the summed losses on one batch already in memory; the ratio step / bound says how much the
loop adds. Evaluation throughput is `evaluate_parts` over `--eval-frames` val frames, decoding
and metrics included, as `tools/evaluate.py` runs it. With `--vs`, a second configuration (the
same overrides plus the `--vs` ones) is measured in the same process and the ratios printed.
Run it on an idle machine: another torch job on the same cores distorts every figure.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from perception_mtl.engine.clock import now  # noqa: E402
from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.data.files import DatasetError  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402
from perception_mtl.engine.evaluator import evaluate_parts  # noqa: E402
from perception_mtl.engine.step_timer import STEP_PARTS, StepTimer, lower_bound  # noqa: E402
from perception_mtl.engine.trainer import Trainer  # noqa: E402

WARMUP = 3  # steps left out of the medians


def eval_speed(trainer: Trainer, frames: int) -> float:
    """Images per second of evaluation over the first `frames` val frames."""
    from perception_mtl.data.build import val_loaders

    loaders = val_loaders(trainer.cfg, limit=frames)
    start = now(trainer.device)
    evaluate_parts(trainer.model, trainer.tasks, loaders, tuple(trainer.cfg.data.size), progress=False)
    return frames / (now(trainer.device) - start)


def measure(overrides: list[str], steps: int, eval_frames: int, out: Path) -> dict[str, float]:
    """Breakdown, bound and throughputs of the default config with `overrides`; prints the table."""
    cfg = load_config(None, [*overrides, "wandb.mode=disabled", f"output_dir={out}", f"train.steps={WARMUP + steps}"])
    clock = StepTimer(WARMUP)
    trainer = Trainer(cfg, hooks=[clock])  # the real loop and step, with only the timer as a hook
    trainer.fit()
    bound = lower_bound(trainer, clock.last_batch)
    forward_parts = [n for n in clock.parts if n == "backbone" or n == "neck" or n.startswith("head/")]
    main = list(STEP_PARTS)
    step = clock.step()
    print(f"\n== {' '.join(overrides) or 'default config'} (batch {cfg.train.batch_size}, {cfg.data.size[0]}x"
          f"{cfg.data.size[1]}, {torch.get_num_threads()} threads, {cfg.data.workers} data workers)")
    print(f"{'part':<22}{'median ms':>10}{'% of step':>11}")
    for name in main:
        print(f"{name:<22}{1e3 * clock.median(name):>10.1f}{100 * clock.median(name) / step:>10.1f}%")
        if name == "forward + losses":
            for part in forward_parts:
                print(f"  {part:<20}{1e3 * clock.median(part):>10.1f}{100 * clock.median(part) / step:>10.1f}%")
    train_ips = cfg.train.batch_size / step
    eval_ips = eval_speed(trainer, eval_frames)
    print(f"{'step':<22}{1e3 * step:>10.1f}   {train_ips:.2f} images/s")
    print(f"lower bound (forward + backward of a batch in memory) {1e3 * bound:.1f} ms; step / bound = {step / bound:.2f}")
    print(f"evaluation: {eval_ips:.2f} images/s over {eval_frames} val frames (decoding and metrics included)")
    return {"train_ips": train_ips, "eval_ips": eval_ips, "step": step, "bound": bound,
            "data": clock.median("data wait") / step}


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed training steps (after 3 warm-up steps)")
    p.add_argument("--eval-frames", type=int, default=96, help="val frames for the evaluation throughput")
    p.add_argument("--vs", nargs="+", default=None, metavar="KEY=VALUE",
                   help="measure a second configuration too (the overrides plus these) and print the ratios")
    p.add_argument("--out", default="runs/bench_speed", help="scratch run folder")
    p.add_argument("overrides", nargs="*", help="key=value overrides of configs/default.yaml")
    args = p.parse_args(argv)
    if args.steps < 1 or args.eval_frames < 1:
        p.error("--steps and --eval-frames must be >= 1")
    try:
        first = measure(args.overrides, args.steps, args.eval_frames, Path(args.out) / "a")
        second = measure([*args.overrides, *args.vs], args.steps, args.eval_frames, Path(args.out) / "b") \
            if args.vs else None
    except ConfigError as err:
        p.exit(2, f"config error: {err}\n")
    except DatasetError as err:
        p.exit(2, f"data error: {err}\n")
    if second:
        print(f"\n{' '.join(args.vs)} vs without, measured side by side:")
        print(f"  training images/s   {second['train_ips']:.2f} / {first['train_ips']:.2f} = "
              f"{second['train_ips'] / first['train_ips']:.2f}x")
        print(f"  evaluation images/s {second['eval_ips']:.2f} / {first['eval_ips']:.2f} = "
              f"{second['eval_ips'] / first['eval_ips']:.2f}x")


if __name__ == "__main__":
    main()
