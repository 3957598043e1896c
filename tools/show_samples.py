"""Save a gallery of dataset frames with their box, semantic and depth overlays.

    python tools/show_samples.py --root datasets/generated/world --out docs/gallery.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.data.cityscapes import CityscapesDataset  # noqa: E402
from perception_mtl.visualize import sample_figure  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="datasets/generated/world", help="Cityscapes-layout root")
    p.add_argument("--split", default="val")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 1, 2, 3], help="frame indices")
    p.add_argument("--out", default="docs/gallery.png")
    args = p.parse_args(argv)
    ds = CityscapesDataset(args.root, args.split, tasks=("det", "seg", "depth"))
    bad = [i for i in args.frames if not 0 <= i < len(ds)]
    if bad:
        p.error(f"frames {bad} out of range: the split has {len(ds)} frames")
    fig = sample_figure([ds[i] for i in args.frames])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
