"""Inference latency: the multi-head model vs the sum of the three single-task models of the same
backbone, PyTorch eager vs ONNX Runtime.

    python tools/bench_inference.py [--reps 30] [--batch-reps 5] [--threads 2] [key=value ...]

Builds the models of `configs/default.yaml` (plus overrides; weights do not change the timings,
so nothing is loaded): det+seg+depth on one backbone, and det, seg and depth each alone on the
same backbone. Times the raw outputs (the exported graph; post-processing is the same Python step
for every row and runs once per task either way): batch-1 latency median and p90 over --reps
calls, batch-8 throughput over --batch-reps calls, with --threads intra-op threads in both
runtimes (ONNX Runtime's threads do not spin between runs, so that the three sessions of the
single-task models do not take each other's cores). "3 single-task models" runs the three one
after another on the same images. Prints a
table and the ratios. Run it on an idle machine: another job on the same cores distorts every figure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402

TASKS = ("det", "seg", "depth")


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=30, help="batch-1 calls timed per row")
    p.add_argument("--batch-reps", type=int, default=5, help="batch-8 calls timed per row")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (torch and ONNX Runtime)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of configs/default.yaml")
    args = p.parse_args(argv)
    if min(args.reps, args.batch_reps, args.threads) < 1:
        p.exit(2, "error: --reps, --batch-reps and --threads must be >= 1\n")
    import torch

    from perception_mtl.engine.builders import build_model, build_tasks, load_config
    from perception_mtl.inference.bench import in_sequence, runners, time_runner

    torch.set_num_threads(args.threads)
    base = [*args.overrides, "model.weights=null", "model.pretrained=false", "wandb.mode=disabled"]
    cfg = load_config(None, [*base, f"tasks=[{','.join(TASKS)}]"])
    size = tuple(cfg.data.size)
    models = {}
    for name, tasks in (("multi-head", TASKS), *((t, (t,)) for t in TASKS)):
        task_cfg = load_config(None, [*base, f"tasks=[{','.join(tasks)}]"])
        models[name] = build_model(task_cfg, build_tasks(task_cfg))
    print(f"{cfg.model.backbone} at {size[0]}x{size[1]}, {args.threads} threads, {os.cpu_count()} CPUs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for runtime in ("torch", "onnx"):
            runs = runners(models, size, runtime, Path(folder), args.threads)
            runs["3 single-task models"] = in_sequence([runs[t] for t in TASKS])
            for name, run in runs.items():
                rows[name, runtime] = time_runner(run, size, args.reps, batch_reps=args.batch_reps)
    print(f"\n| model | runtime | batch-1 median ms | batch-1 p90 ms | batch-8 images/s |\n|---|---|---|---|---|")
    for (name, runtime), t in rows.items():
        print(f"| {name} | {runtime} | {t.median:.1f} | {t.p90:.1f} | {t.throughput:.1f} |")
    print()
    for runtime in ("torch", "onnx"):
        multi, three = rows["multi-head", runtime], rows["3 single-task models", runtime]
        print(f"{runtime}: multi-head / 3 single-task models: batch-1 median {multi.median / three.median:.2f}x, "
              f"batch-8 throughput {multi.throughput / three.throughput:.2f}x")
    for name in ("multi-head", "3 single-task models"):
        eager, onnx = rows[name, "torch"], rows[name, "onnx"]
        print(f"{name}: ONNX Runtime vs PyTorch eager: batch-1 median {eager.median / onnx.median:.2f}x faster, "
              f"batch-8 throughput {onnx.throughput / eager.throughput:.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
