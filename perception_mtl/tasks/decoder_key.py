"""The `decoder` key of the dense tasks that offer a choice of head (seg, depth): a dense head by
name (models/heads/decoders.py), checked alike for each."""
from __future__ import annotations

from omegaconf import DictConfig

from perception_mtl.core.config import check_choice
from perception_mtl.core.errors import ConfigError
from perception_mtl.models.heads.decoders import DECODERS


def check_decoder(cfg: DictConfig, task: str) -> None:
    """A ConfigError unless `task.<task>.decoder` names a dense head the run can train."""
    decoder = cfg.task[task].decoder
    check_choice(f"task.{task}.decoder", decoder, list(DECODERS))
    if decoder == "deeplabv3plus" and cfg.train.batch_size < 2:
        raise ConfigError(f"task.{task}.decoder=deeplabv3plus needs train.batch_size >= 2 (BatchNorm after ASPP's "
                          f"image pooling), got {cfg.train.batch_size}; use another decoder or a larger batch")
