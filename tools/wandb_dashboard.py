"""Build a W&B workspace for a project of benchmark runs.

    python tools/wandb_dashboard.py --project perception_mtl [--entity E] [--group SUITE]
        [--tasks det,seg,depth] [--name NAME] [--out FILE.json] [--online]

Sections: task losses, task weights, gradient conflict (cosine, magnitude similarity, norms,
TAG affinity), validation metrics, predictions, run comparison; runs grouped by balancer.name,
filtered to the W&B group SUITE when given. Always writes the view spec as JSON to --out; with
--online and an API key (WANDB_API_KEY or `wandb login`) it also saves the view to W&B.
Needs `pip install 'wandb-workspaces>=0.4.4,<0.5'`.
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
    p.add_argument("--project", required=True, help="W&B project of the runs")
    p.add_argument("--entity", help="W&B entity (default: the API key's default entity)")
    p.add_argument("--group", help="benchmark suite: show only runs of this W&B group")
    p.add_argument("--tasks", default="det,seg,depth", help="comma-separated tasks, in the runs' order")
    p.add_argument("--name", help="workspace name (default: 'perception_mtl <group>')")
    p.add_argument("--out", default="runs/wandb_workspace.json", help="where the spec JSON goes")
    p.add_argument("--online", action="store_true", help="also save the workspace to W&B")
    args = p.parse_args(argv)
    try:
        from perception_mtl.tracking.dashboard import build_workspace, save_or_export
    except ImportError as err:
        p.exit(2, f"{err}\n")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        p.error("--tasks names no task")
    name = args.name or f"perception_mtl {args.group or 'benchmark'}"
    workspace = build_workspace(args.project, args.entity, name, tasks, group=args.group)
    print(save_or_export(workspace, Path(args.out), online=args.online))


if __name__ == "__main__":
    main()
