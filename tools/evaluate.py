"""Evaluate a checkpoint on a split and optionally export predictions for outside evaluators.

    python tools/evaluate.py --checkpoint runs/default/best.pt [--split val] [--save-predictions DIR]

Prints and writes (next to the checkpoint, as eval_<split>.json) the same metric keys as training.
--save-predictions writes DIR/semantic/<frame>.png (Cityscapes label ids), DIR/depth/<frame>.png
(uint16 depth*256, 0 = none) and DIR/detections.json + DIR/detections_gt.json (COCO), with BDD100K's
10 classes also DIR/detections_bdd100k.json (BDD100K's format, for its toolkit's bdd100k.eval.run -t det).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--split", default="val")
    p.add_argument("--save-predictions", metavar="DIR", help="export predictions here")
    p.add_argument("--limit", type=int, help="evaluate only the first N frames")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. data.root=...)")
    args = p.parse_args(argv)
    from perception_mtl.engine.checkpoint_eval import evaluate_checkpoint, open_checkpoint

    opened = open_checkpoint(args.checkpoint, args.split, args.limit, args.overrides)
    cfg, state = opened.cfg, opened.state
    start = time.perf_counter()
    metrics = evaluate_checkpoint(opened, args.save_predictions)
    elapsed = time.perf_counter() - start
    n = opened.frames
    out = Path(args.checkpoint).with_name(f"eval_{args.split}.json")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": state["step"], **metrics}, indent=2))
    print(f"{args.split}: {n} frames in {elapsed:.1f} s ({n / elapsed:.1f} images/s, batch {cfg.train.batch_size})")
    for key, value in metrics.items():
        print(f"  {key:<16} {value:.4f}")
    print(f"wrote {out}" + (f" and predictions under {args.save_predictions}" if args.save_predictions else ""))


if __name__ == "__main__":
    main()
