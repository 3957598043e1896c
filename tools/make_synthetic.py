"""Render the embedded driving world in the Cityscapes layout.

    python tools/make_synthetic.py --out datasets/generated/world --train 3000 --val 500
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.data.world.generate import WorldSpec, generate  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataset root to write (Cityscapes layout)")
    p.add_argument("--train", type=int, default=3000, help="number of train frames")
    p.add_argument("--val", type=int, default=500, help="number of val frames")
    p.add_argument("--test", type=int, default=0, help="number of test frames")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) .. 1 (hard)")
    p.add_argument("--max-objects", type=int, default=15, help="things per frame are drawn from 0..N")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = p.parse_args(argv)
    if min(args.train, args.val, args.test) < 0 or args.height < 32 or args.width < 32:
        p.error("frame counts must be >= 0 and the image at least 32x32")
    if not 0.0 <= args.difficulty <= 1.0:
        p.error(f"--difficulty must be in [0, 1], got {args.difficulty}")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be >= 1 (or left out for all cores), got {args.workers}")
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        p.exit(2, f"error: cannot write {args.out} ({err.strerror or err}); choose a writable folder for --out\n")
    spec = WorldSpec(args.train, args.val, args.test, args.seed, args.height, args.width,
                     args.difficulty, args.max_objects)
    start = time.perf_counter()
    root = generate(args.out, spec, workers=args.workers)
    n = args.train + args.val + args.test
    elapsed = time.perf_counter() - start
    print(f"wrote {n} frames to {root} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.1f} frames/s)")


if __name__ == "__main__":
    main()
