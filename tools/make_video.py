"""Make a short MP4 from a folder of images (sorted by name), e.g. world frames to try
tools/predict.py on a video.

    python tools/make_video.py --frames datasets/generated/world/leftImg8bit/val/valworld00 --limit 8 --fps 2 --out demo.mp4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.inference.frames import FrameError, open_frames, write_video  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", required=True, metavar="DIR", help="folder of JPG/PNG images of one size")
    p.add_argument("--out", required=True, help="the .mp4 to write")
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--limit", type=int, help="only the first N images")
    args = p.parse_args(argv)
    if args.fps <= 0 or (args.limit is not None and args.limit < 1):
        p.exit(2, "error: --fps and --limit must be positive\n")
    source = open_frames(args.frames)
    if not Path(args.frames).is_dir():
        p.exit(2, f"error: --frames {args.frames} is not a folder of images\n")
    source.images = source.images[:args.limit]
    sizes = {}

    def frames():
        for name, rgb in source:
            sizes.setdefault(rgb.shape, name)
            if len(sizes) > 1:
                raise FrameError(f"image {name} is {rgb.shape[1]}x{rgb.shape[0]}, unlike the first; a video "
                                 "needs images of one size")
            yield rgb

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    count = write_video(frames(), args.out, args.fps)
    print(f"wrote {args.out} ({count} frames at {args.fps:g} fps)")


if __name__ == "__main__":
    main()
