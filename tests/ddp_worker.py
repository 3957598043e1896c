"""Run under torchrun by tests/test_distributed.py: train a few steps per balancer in one
process group and save each rank's final weights and validation metrics.

    torchrun --nproc_per_node=2 tests/ddp_worker.py WORLD OUT SPEC [SPEC ...]

SPEC is a balancer name, optionally `:space` (`pcgrad:representation`) and `+resume` (the run
fails after 2 of its 3 steps on every rank and a new Trainer resumes it from last.pt).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import tiny_config  # noqa: E402
from perception_mtl.core import distributed  # noqa: E402
from perception_mtl.engine.trainer import Trainer  # noqa: E402

# every task loss is a mean of per-sample losses and no layer mixes samples (LayerNorm/GroupNorm,
# no BatchNorm), so N ranks with batch B must take exactly the step of one process with N*B
DDP_EQUIVALENT = ["model.backbone=test_convnext", "model.weights=null", "tasks=[scene,noise]", "train.steps=3", "train.threads=1",
                  "train.best_metric=noise/mse", "train.checkpoint_every=2"]


class Crash(Exception):
    """Stands in for a failure of the whole process group."""


def spec_overrides(spec: str) -> list[str]:
    """`name[:space][+resume]` -> config overrides."""
    name, _, space = spec.removesuffix("+resume").partition(":")
    return [f"balancer.name={name}"] + ([f"balancer.params.space={space}"] if space else [])


def train(world: Path, out: Path, spec: str) -> Trainer:
    cfg = tiny_config(world, out / spec, *DDP_EQUIVALENT, *spec_overrides(spec), "train.batch_size=2")
    trainer = Trainer(cfg)
    if spec.endswith("+resume"):
        step = trainer.run_step

        def crash_at_third(batch: dict) -> dict:
            if trainer.step == 2:
                raise Crash
            return step(batch)

        trainer.run_step = crash_at_third
        try:
            trainer.fit()
        except Crash:
            cfg.resume = True
            trainer = Trainer(cfg)
            assert trainer.step == 2, trainer.step
    return trainer


def main(world: str, out: str, specs: list[str]) -> None:
    for spec in specs:
        trainer = train(Path(world), Path(out), spec)
        metrics = trainer.fit()
        torch.save({"model": trainer.model.state_dict(), "metrics": metrics},
                   Path(out) / f"{spec}-rank{distributed.rank()}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
