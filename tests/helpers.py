"""Small builders shared by tests."""
from __future__ import annotations

from pathlib import Path

from perception_mtl.config import load_config

TINY_TRAIN = [
    "model.backbone=test_resnet", "model.weights=null", "data.size=[64,128]", "data.workers=0", "data.hflip=0.5",
    "train.batch_size=3", "train.log_every=1", "train.eval_every=1000", "train.checkpoint_every=1000",
    "optim.warmup_steps=2", "optim.lr=0.003", "wandb.mode=disabled", "task.det.topk_candidates=200",
]


def tiny_config(world: Path, out: Path, *extra: str):
    """A config for a few CPU steps on the tiny world with timm's `test_resnet`."""
    return load_config(None, TINY_TRAIN + [f"data.root={world}", f"output_dir={out}", *extra], defaults=None)
