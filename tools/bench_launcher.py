"""Wall time of one suite under several launchers, side by side, and whether their per-run
metrics are identical (same seeds -> same numbers).

    python tools/bench_launcher.py --suite configs/benchmark/quick.yaml --out runs/bench_launcher \\
        --launch "launcher.backend=sequential" "launcher.backend=sequential launcher.threads=1" \\
                 "launcher.backend=local launcher.workers=2 launcher.threads=1"
    # a reduced suite for a check: two methods, one seed, 20 steps
    python tools/bench_launcher.py --suite configs/benchmark/quick.yaml --out /tmp/bl --methods equal uncertainty \\
        --seeds 0 --steps 20 --launch "launcher.backend=sequential launcher.threads=1" \\
        "launcher.backend=local launcher.workers=2 launcher.threads=1"

Each launcher runs `tools/benchmark.py` on the suite (reduced as asked, written to OUT/suite.yaml)
into a fresh folder OUT/<k>, timed from start to the written leaderboard; the table gives the wall
time, the load average before and after (other processes on the cores make times noisy), and for
each launcher whether every run's result.json metrics (val and test) equal those of the first
launcher with the same threads per run (1 and 2 torch threads sum floats in different orders, so
they differ in the last digits). Writes OUT/bench_launcher.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perception_mtl.benchmark.suite_checks import method_label  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402


def reduced_suite(path: Path, methods: list[str] | None, seeds: list[int] | None, steps: int | None) -> dict:
    """The suite file's mapping with only `methods` (labels), `seeds` and `train.steps` where given."""
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if methods:
        labels = [method_label(m) for m in spec["methods"]]
        unknown = sorted(set(methods) - set(labels))
        if unknown:
            raise ConfigError(f"--methods {unknown} are not in {path}'s methods {labels}")
        spec["methods"] = [m for m, label in zip(spec["methods"], labels) if label in methods]
    if seeds:
        spec["seeds"] = seeds
    if steps:
        spec.setdefault("config", {})["train.steps"] = steps
    return spec


def outcomes(folder: Path) -> dict[str, dict]:
    """run folder -> {"metrics", "test"} of every result.json."""
    return {str(p.parent.relative_to(folder)): {k: json.loads(p.read_text()).get(k) for k in ("metrics", "test")}
            for p in sorted(folder.glob("runs/*/seed*/result.json"))}


def threads_of(launch: str) -> str:
    """The threads per run a launcher line sets ("" when left to the default)."""
    return next((w.split("=", 1)[1] for w in launch.split() if w.startswith("launcher.threads=")), "")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="emptied first")
    p.add_argument("--launch", nargs="+", required=True, help="one quoted line of launcher.<key>=<value> each")
    p.add_argument("--methods", nargs="+", help="keep only these method labels")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--steps", type=int, help="train.steps of every run")
    args = p.parse_args(argv)
    if not args.suite.is_file():
        p.exit(2, f"error: no suite file {args.suite}\n")
    try:
        spec = reduced_suite(args.suite, args.methods, args.seeds, args.steps)
    except ConfigError as err:
        p.exit(2, f"error: {err}\n")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    suite = args.out / "suite.yaml"
    OmegaConf.save(OmegaConf.create(spec), suite)
    rows, first_of = [], {}
    for k, launch in enumerate(args.launch):
        folder = args.out / str(k)
        before = os.getloadavg()[0]
        tic = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), "--suite", str(suite), "--out",
                               str(folder), *launch.split()], cwd=Path.cwd(), capture_output=True, text=True)
        wall = time.perf_counter() - tic
        (args.out / f"{k}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            sys.exit(f"{launch}: tools/benchmark.py exited {done.returncode}; see {args.out / f'{k}.log'}")
        results = outcomes(folder)
        reference = first_of.setdefault(threads_of(launch), (launch, results))
        same = "reference" if reference[0] == launch else ("yes" if results == reference[1] else "**no**")
        rows.append(f"| `{launch}` | {len(results)} | {wall / 60:.2f} | {before:.2f} | {os.getloadavg()[0]:.2f} | "
                    f"{same} ({reference[0] if same != 'reference' else 'first with these threads'}) |")
        print(rows[-1], flush=True)
    table = ["| launcher | runs | wall (min) | load before | load after | metrics identical to |",
             "|---|---|---|---|---|---|", *rows]
    (args.out / "bench_launcher.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
