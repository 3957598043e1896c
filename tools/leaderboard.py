"""Leaderboard of a benchmark results folder.

    python tools/leaderboard.py RESULTS_DIR [--wandb-mode offline|online|disabled]

Reads RESULTS_DIR/runs/*/seed*/result.json (written by tools/benchmark.py; their held-out test
metrics when every run has them), ranks the multi-task runs by delta-m per-task (LibMTL) with
ties where the paired 95% interval against the leader holds 0, shows delta-m flat (Nash-MTL,
FAMO), each run's paired difference to `equal`, per-seed rank ranges and Kendall's W.
Writes leaderboard.md, leaderboard.csv, leaderboard.html (sortable, self-contained),
pareto.png and delta_m.png into RESULTS_DIR and logs the table as a W&B Table (mode: the
flag, else WANDB_MODE, else the suite's wandb.mode, else online with a W&B API key, else offline).
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
    p.add_argument("results_dir", help="a benchmark output folder, e.g. runs/benchmark/smoke")
    p.add_argument("--wandb-mode", choices=["offline", "online", "disabled"],
                   help="default: WANDB_MODE, else the suite's wandb.mode, else online with an API key, else offline")
    args = p.parse_args(argv)
    from perception_mtl.analysis.leaderboard import write_leaderboard

    try:
        paths = write_leaderboard(args.results_dir, args.wandb_mode)
    except FileNotFoundError as err:  # no results: the message says how to make them
        p.exit(2, f"error: {err}\n")
    print(paths["md"].read_text())
    print("written:\n" + "\n".join(f"  {path}" for path in paths.values()))


if __name__ == "__main__":
    main()
