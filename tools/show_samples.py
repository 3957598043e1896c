"""Save a gallery of dataset frames with their ground truth, one column per task of the config,
each drawn by its task.

    python tools/show_samples.py --root datasets/generated/world --out docs/gallery.png [key=value ...]
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
    p.add_argument("--root", default="datasets/generated/world", help="Cityscapes-layout root")
    p.add_argument("--split", default="val")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 1, 2, 3], help="frame indices")
    p.add_argument("--out", default="docs/gallery.png")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. tasks=[det,seg,depth,normals]")
    args = p.parse_args(argv)
    from perception_mtl.data.build import val_loaders
    from perception_mtl.engine.builders import build_tasks, load_config
    from perception_mtl.inference.compare import truth_figure

    cfg = load_config(None, [f"data.root={args.root}", *args.overrides])
    loader, names = next(iter(val_loaders(cfg, args.split).values()))
    ds = loader.dataset
    bad = [i for i in args.frames if not 0 <= i < len(ds)]
    if bad:
        p.error(f"frames {bad} out of range: the split has {len(ds)} frames")
    tasks = {name: task for name, task in build_tasks(cfg).items() if name in names}
    fig = truth_figure(loader.collate_fn([ds[i] for i in args.frames]), tasks)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
