"""Predict with a trained checkpoint on your own images or video and write overlays.

    python tools/predict.py --checkpoint runs/default/best.pt --input PATH --out DIR [--raw] [--onnx F]

PATH is one image, a folder of JPG/PNG images of any size, or a video file (OpenCV). Writes
DIR/overlays/<frame>.png (one panel per task of the checkpoint, each drawn by its task: boxes with
class and score, segmentation blended over the image, depth with a colour bar in metres, normals,
edges, drivable area, centre heatmaps, ...), DIR/<video>_overlay.mp4 for a video, and with --raw
DIR/raw/ in the formats of `tools/evaluate.py --save-predictions`. Input size and normalisation
come from the checkpoint's config; no ground truth is needed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="last.pt or best.pt of a run")
    p.add_argument("--input", required=True, metavar="PATH", help="an image, a folder of images or a video")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--raw", action="store_true", help="also write raw predictions (evaluate.py's formats)")
    p.add_argument("--onnx", metavar="F", help="run this graph (tools/export.py of the same checkpoint) "
                   "with ONNX Runtime (.onnx) or torch.export (.pt2) instead of the PyTorch model")
    p.add_argument("--score-thresh", type=float, default=0.4,
                   help="draw scored outputs (boxes, centre peaks) scoring at least this")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the run's config (e.g. train.device=cpu)")
    args = p.parse_args(argv)
    if args.onnx is not None and not Path(args.onnx).is_file():
        p.exit(2, f"error: no graph at --onnx {args.onnx}; write one with tools/export.py\n")
    from perception_mtl.inference.frames import open_frames
    from perception_mtl.inference.predictor import Predictor
    from perception_mtl.inference.run import predict_frames, raw_writer

    start = time.perf_counter()
    source = open_frames(args.input)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.onnx, args.overrides)
    try:
        writer = raw_writer(predictor, args.out) if args.raw else None
    except ValueError as err:
        p.exit(2, f"error: --raw: {err}\n")
    result = predict_frames(predictor, source, args.out, writer, args.score_thresh)
    elapsed = time.perf_counter() - start
    print(f"{result['frames']} frames in {elapsed:.1f} s; overlays under {Path(args.out) / 'overlays'}"
          + (f", video {result['video']}" if result["video"] else "")
          + (f", raw predictions under {Path(args.out) / 'raw'}" if args.raw else ""))


if __name__ == "__main__":
    main()
