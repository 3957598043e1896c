"""Negative-transfer analysis of a benchmark results folder.

    python tools/analyze_transfer.py RESULTS_DIR [--method equal]

Writes transfer_report.md with conflict curves and heatmaps, the lookahead affinity matrix and
a verdict per task pair; negative transfer is flagged on Holm-adjusted p-values over every test
of the report (see perception_mtl/analysis/transfer.py for the tests used). Changes are in %,
positive = worse (the sign of delta-m). When the folder has a leaderboard.html, it is rebuilt
so that the page embeds the new report.
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
    p.add_argument("results_dir")
    p.add_argument("--method", help="whose training signals to analyse (default: equal, else the first)")
    args = p.parse_args(argv)
    from perception_mtl.analysis.results import load_results
    from perception_mtl.analysis.transfer import write_transfer_report

    if not load_results(Path(args.results_dir)):
        p.exit(2, f"no results under {args.results_dir}; make them with "
                  "python tools/benchmark.py --suite configs/benchmark/smoke.yaml\n")
    report = write_transfer_report(args.results_dir, args.method)
    print(report.read_text())
    print(f"written: {report}")
    page = report.with_name("leaderboard.html")
    if page.exists():  # the page embeds the report: rebuild it (without a W&B run) so it shows this one
        from perception_mtl.analysis.leaderboard import write_leaderboard

        write_leaderboard(args.results_dir, wandb_mode="disabled")
        print(f"refreshed: {page} (it embeds the report)")


if __name__ == "__main__":
    main()
