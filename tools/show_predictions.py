"""Predictions beside the ground truth for chosen frames of a split, with error maps.

    python tools/show_predictions.py --checkpoint runs/default/best.pt [--split val] [--frames 0 1] [--out docs/predictions.png]

Per frame, one column per task of the checkpoint, each drawn by its task: the prediction, the
ground truth, and the errors of the tasks that draw them (segmentation: pixels of the wrong class;
depth: absolute relative error).
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
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--split", default="val")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 1], help="frame indices in the split")
    p.add_argument("--out", default="docs/predictions.png")
    p.add_argument("--score-thresh", type=float, default=0.4, help="draw predicted boxes scoring at least this")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. data.root=...)")
    args = p.parse_args(argv)
    from perception_mtl.engine.checkpoint_eval import open_checkpoint
    from perception_mtl.inference.compare import comparison_figure
    from perception_mtl.inference.predictor import Predictor

    opened = open_checkpoint(args.checkpoint, args.split, None, args.overrides)
    loader, names = next(iter(opened.loaders.values()))
    bad = [i for i in args.frames if not 0 <= i < len(loader.dataset)]
    if bad:
        p.exit(2, f"error: frames {bad} out of range: the {args.split} split has {len(loader.dataset)} frames\n")
    predictor = Predictor.from_checkpoint(args.checkpoint, overrides=args.overrides)
    batch = loader.collate_fn([loader.dataset[i] for i in args.frames])
    tasks = {name: task for name, task in predictor.tasks.items() if name in names}
    fig = comparison_figure(batch, predictor(batch["image"]), tasks, args.score_thresh)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
