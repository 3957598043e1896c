"""Export a checkpoint's model (every head's raw outputs in one graph) and check it against PyTorch.

    python tools/export.py --checkpoint runs/default/best.pt --format onnx [--dynamic-batch] [--out F] [--check N]

--format onnx writes an ONNX graph (torch.onnx's torch.export-based exporter; ONNX Runtime runs
it), torch_export a torch.export program (.pt2). The graph's input is `images` (B, 3, H, W) float
in [0, 1] at the config's data.size (normalisation inside); its outputs are named
"det.cls_logits", "det.bbox_regression", "det.bbox_ctrness", "seg", "depth", ... Detection
decoding and NMS stay in Python, shared with PyTorch inference
(perception_mtl.engine.evaluator.predict_batch); tools/predict.py --onnx F runs the graph.
--check N runs graph and model on the first N frames of --split and prints the largest raw
output difference and both metric sets; exit code 1 when they differ by more than 1e-4 (raw) or
1e-3 (metrics).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.inference.graph_export import FORMATS, SUFFIX  # noqa: E402

RAW_TOL, METRIC_TOL = 1e-4, 1e-3


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--format", default="onnx", choices=FORMATS)
    p.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch dimension (else batch 1)")
    p.add_argument("--out", help="the file to write (default: next to the checkpoint, .onnx or .pt2)")
    p.add_argument("--check", type=int, metavar="N", help="compare with PyTorch on the first N frames of --split")
    p.add_argument("--split", default="val")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. data.root=...)")
    args = p.parse_args(argv)
    if args.check is not None and args.check < 1:
        p.exit(2, "error: --check needs a positive number of frames\n")
    from perception_mtl.engine.checkpoint_eval import open_checkpoint
    from perception_mtl.inference.graph_export import export_graph
    from perception_mtl.inference.parity import check_parity
    from perception_mtl.inference.predictor import load_model
    from perception_mtl.inference.runtime import ExportedModel

    cfg, tasks, model = load_model(args.checkpoint, args.overrides)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(SUFFIX[args.format])
    size = tuple(cfg.data.size)
    start = time.perf_counter()
    names = export_graph(model, size, out, args.format, args.dynamic_batch)
    batch = "B" if args.dynamic_batch else "1"
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s: images ({batch}, 3, {size[0]}, {size[1]}) -> "
          + ", ".join(names))
    if args.check is None:
        return
    # a fixed-batch graph takes one frame at a time
    overrides = [*args.overrides, *([] if args.dynamic_batch else ["train.batch_size=1"])]
    opened = open_checkpoint(args.checkpoint, args.split, args.check, overrides)
    loader, part_tasks = next(iter(opened.loaders.values()))  # the first dataset of a data.mix
    parity = check_parity(model, ExportedModel(out, model.heads), {t: tasks[t] for t in part_tasks}, loader, size)
    print(f"parity on {parity.frames} {args.split} frames (max |graph - torch|):")
    for name, diff in parity.raw.items():
        print(f"  raw {name:<22} {diff:.2e}")
    for key, diff in parity.metric_diff.items():
        print(f"  {key:<26} torch {parity.torch_metrics[key]:.6f}  graph {parity.graph_metrics[key]:.6f}  "
              f"diff {diff:.1e}")
    ok = parity.passes(RAW_TOL, METRIC_TOL)
    print(f"{'PASS' if ok else 'FAIL'}: raw within {RAW_TOL:g}, metrics within {METRIC_TOL:g}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
