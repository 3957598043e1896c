"""Model builders by sharing scheme (`model.sharing`): hard, soft, cross_stitch."""
from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from perception_mtl.tasks.base import Task

SHARING = ("hard", "soft", "cross_stitch")


def build_model(cfg: DictConfig, tasks: dict[str, Task]) -> nn.Module:
    """The multi-task model of `cfg.model.sharing` for `tasks`."""
    from perception_mtl.models.cross_stitch import CrossStitchModel
    from perception_mtl.models.multitask import MultiTaskModel
    from perception_mtl.models.soft_sharing import SoftSharingModel

    builders = {"hard": MultiTaskModel, "soft": SoftSharingModel, "cross_stitch": CrossStitchModel}
    return builders[cfg.model.sharing](cfg, tasks)
