"""Evaluate a checkpoint on a split and optionally export predictions for outside evaluators.

    python tools/evaluate.py --checkpoint runs/default/best.pt [--split val] [--save-predictions DIR]

Prints and writes (next to the checkpoint, as eval_<split>.json) the same metric keys as training.
--save-predictions writes DIR/semantic/<frame>.png (Cityscapes label ids), DIR/depth/<frame>.png
(uint16 depth*256, 0 = none) and DIR/detections.json + DIR/detections_gt.json (COCO).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omegaconf import OmegaConf  # noqa: E402

from perception_mtl.config import ConfigError, load_config  # noqa: E402
from perception_mtl.data.cityscapes import DatasetError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--split", default="val")
    p.add_argument("--save-predictions", metavar="DIR", help="export predictions here")
    p.add_argument("--limit", type=int, help="evaluate only the first N frames")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. data.root=...)")
    args = p.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        p.exit(2, f"error: no checkpoint at {args.checkpoint}\n")
    import torch

    from perception_mtl.engine.checkpoint import load_checkpoint
    from perception_mtl.engine.distributed import resolve_device
    from perception_mtl.data.build import val_loaders
    from perception_mtl.engine.evaluator import evaluate_parts
    from perception_mtl.engine.trainer import build_tasks
    from perception_mtl.models import build_model

    try:
        state = load_checkpoint(args.checkpoint)
        cfg = load_config(None, list(args.overrides), defaults=None, base=OmegaConf.create(state["config"]))
        loaders = val_loaders(cfg, args.split, args.limit)
        device = resolve_device(cfg.train.device)  # train.device=cpu evaluates a GPU run on the CPU
    except (ConfigError, DatasetError, RuntimeError) as err:
        p.exit(2, f"error: {err}\n")
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks)
    model.load_state_dict(state["model"])
    model.to(device)
    start = time.perf_counter()
    with torch.inference_mode():
        metrics, _ = evaluate_parts(model, tasks, loaders, tuple(cfg.data.size), args.save_predictions,
                                    cfg.data.seg_classes)
    elapsed = time.perf_counter() - start
    n = sum(len(loader.dataset) for loader, _ in loaders.values())
    out = Path(args.checkpoint).with_name(f"eval_{args.split}.json")
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "step": state["step"], **metrics}, indent=2))
    print(f"{args.split}: {n} frames in {elapsed:.1f} s ({n / elapsed:.1f} images/s, batch {cfg.train.batch_size})")
    for key, value in metrics.items():
        print(f"  {key:<16} {value:.4f}")
    print(f"wrote {out}" + (f" and predictions under {args.save_predictions}" if args.save_predictions else ""))


if __name__ == "__main__":
    main()
