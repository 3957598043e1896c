"""Train a multi-task model.

    python tools/train.py [--config FILE] [key=value ...]

Config: configs/default.yaml <- --config FILE <- key=value (e.g. train.steps=100
balancer.name=equal output_dir=runs/x). Writes config.yaml, train.jsonl, metrics.jsonl,
metrics.json, last.pt, best.pt and curve plots into output_dir. An output_dir that already
holds a run is refused: --resume (or resume=true) continues it from output_dir/last.pt,
--overwrite replaces it. Several processes or GPUs:
torchrun --nproc_per_node=N tools/train.py ... (train.batch_size is per process).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402
from perception_mtl.engine.builders import load_config  # noqa: E402
from perception_mtl.engine.run_folder import claim_run_folder  # noqa: E402


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="experiment YAML merged over configs/default.yaml")
    p.add_argument("--resume", action="store_true", help="continue from output_dir/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in output_dir")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + (["resume=true"] if args.resume else [])
    cfg = load_config(args.config, overrides)
    claim_run_folder(cfg.output_dir, cfg.resume, args.overwrite)
    from perception_mtl.core import distributed
    from perception_mtl.engine.trainer import Trainer

    trainer = Trainer(cfg)
    metrics = trainer.fit()
    main = distributed.is_main()
    distributed.shutdown()
    if not main:  # under torchrun, rank 0 reports
        return
    out = Path(cfg.output_dir) / "metrics.json"
    out.write_text(json.dumps({"step": trainer.step, **metrics}, indent=2))
    width = max(map(len, metrics), default=0)
    print(f"\nfinal metrics after {trainer.step} steps ({out}):")
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.4f}")


if __name__ == "__main__":
    main()
