"""Cost of each dense decoder (`task.seg.decoder`) as the segmentation head of a run.

    python tools/bench_decoders.py [--batch 8] [--repeats 10] [key=value ...]

For the run of `configs/default.yaml` (plus overrides): each decoder's parameters, forward
GFLOPs per image (torch's FlopCounterMode) and the median milliseconds of its forward + backward
on a batch of neck features, the decoders timed in turn (round robin) so that a varying load on
the machine affects them alike. Accuracy needs training runs: see docs/TRAINING.md, Segmentation decoders.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402
from perception_mtl.models.backbone import Backbone  # noqa: E402
from perception_mtl.models.heads.decoders import DECODERS, build_dense_head  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="images per timed forward + backward")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds over the decoders (after 1 warm-up)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. data.size=[256,512])")
    args = parser.parse_args(argv)
    if args.batch < 2 or args.repeats < 1:
        raise ConfigError("--batch must be >= 2 (BatchNorm after ASPP's pooling) and --repeats >= 1")
    cfg = load_config(None, args.overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    m, (h, w) = cfg.model, cfg.data.size
    strides = Backbone.from_config(m).strides
    feats = {s: torch.randn(args.batch, m.neck_channels, h // s, w // s) for s in strides}
    heads = {d: build_dense_head(d, m.neck_channels, strides, cfg.data.seg_classes, m.head_channels) for d in DECODERS}
    times: dict[str, list[float]] = {d: [] for d in DECODERS}
    for _ in range(args.repeats + 1):  # the first round warms up
        for d, head in heads.items():
            start = time.perf_counter()
            head(feats).sum().backward()
            times[d].append(time.perf_counter() - start)
    print(f"{h}x{w}, {cfg.data.seg_classes} classes, neck {m.neck_channels} channels at strides {strides}, "
          f"batch {args.batch}")
    print("| decoder | parameters | GFLOPs / image (forward) | forward + backward, ms / batch |")
    print("|---|---|---|---|")
    for d, head in heads.items():
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            head.eval()({s: f[:1] for s, f in feats.items()})  # eval: BatchNorm after ASPP pooling needs 2 images
        params = sum(p.numel() for p in head.parameters())
        print(f"| {d} | {params / 1e6:.3f} M | {counter.get_total_flops() / 1e9:.2f} | "
              f"{1e3 * statistics.median(times[d][1:]):.1f} |")


if __name__ == "__main__":
    main()
