"""Run a benchmark suite: single-task baselines and one multi-task run per balancer and seed.

    python tools/benchmark.py --suite configs/benchmark/smoke.yaml [--out DIR] [launcher.<key>=<value> ...]
    python tools/benchmark.py --suite configs/benchmark/smoke.yaml launcher.backend=local launcher.workers=2
    python tools/benchmark.py --suite configs/benchmark/full.yaml launcher.backend=submitit launcher.partition=gpu

Runs what is not finished yet (a finished run has result.json; an interrupted one resumes
from its last checkpoint), printing a line per run, then writes leaderboard.{md,csv,html},
plots and transfer_report.md into the results folder (default runs/benchmark/<suite name>); a
suite of experiments (configs/benchmark/controls.yaml) gets one such folder per experiment and
controls.md with the verdict of each expectation.

Launchers (the suite's `launcher:`, overridden by launcher.<key>=<value>; perception_mtl/benchmark/launch/):
sequential (one run at a time in this process), local (`workers` runs at once as child processes
with `threads` torch threads each), submitit (one job per run on SLURM, or local processes where
there is no SLURM). A failed or killed run is retried `retries` times from its last.pt, then
reported as failed (exit code 1, the reports name it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, help="configs/benchmark/NAME.yaml")
    p.add_argument("--out", help="results folder (default: the suite's output_dir)")
    p.add_argument("launch", nargs="*", metavar="launcher.KEY=VALUE",
                   help="launcher overrides, e.g. launcher.backend=local launcher.workers=2")
    args = p.parse_args(argv)
    from perception_mtl.benchmark.runner import RunsFailed, run_suite
    from perception_mtl.benchmark.suite import Suite

    suite = Suite.load(args.suite)
    try:
        out = run_suite(suite, Path(args.out) if args.out else None, args.launch)
    except RunsFailed as err:  # the reports of the other runs are written and name the failed ones
        p.exit(1, f"error: {err}\n")
    if (out / "controls.md").exists():  # a suite of experiments with expectations: the verdicts
        print(f"\nresults in {out}: controls.md, and per experiment leaderboard.md, transfer_report.md")
        print((out / "controls.md").read_text())
        return
    print(f"\nresults in {out}: leaderboard.md, leaderboard.html, transfer_report.md")
    print((out / "leaderboard.md").read_text())


if __name__ == "__main__":
    main()
