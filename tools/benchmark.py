"""Run a benchmark suite: single-task baselines and one multi-task run per balancer and seed.

    python tools/benchmark.py --suite configs/benchmark/smoke.yaml [--out DIR]

Runs what is not finished yet (a finished run has result.json; an interrupted one resumes
from its last checkpoint), printing a line per run, then writes leaderboard.{md,csv,html},
plots and transfer_report.md into the results folder (default runs/benchmark/<suite name>); a
suite of experiments (configs/benchmark/controls.yaml) gets one such folder per experiment and
controls.md with the verdict of each expectation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.config import ConfigError  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, help="configs/benchmark/NAME.yaml")
    p.add_argument("--out", help="results folder (default: the suite's output_dir)")
    args = p.parse_args(argv)
    from perception_mtl.benchmark.runner import run_suite
    from perception_mtl.benchmark.suite import Suite

    try:
        suite = Suite.load(args.suite)
        out = run_suite(suite, Path(args.out) if args.out else None)
    except (ConfigError, DatasetError, ValueError) as err:  # ValueError includes analysis' ResultsError
        p.exit(2, f"error: {err}\n")
    if (out / "controls.md").exists():  # a suite of experiments with expectations: the verdicts
        print(f"\nresults in {out}: controls.md, and per experiment leaderboard.md, transfer_report.md")
        print((out / "controls.md").read_text())
        return
    print(f"\nresults in {out}: leaderboard.md, leaderboard.html, transfer_report.md")
    print((out / "leaderboard.md").read_text())


if __name__ == "__main__":
    main()
