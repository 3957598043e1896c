"""What a model's shared part returns: the features its task-specific parts read.

A model splits its forward in two, `features = model.shared_features(images)` and
`outputs = model.task_outputs(features)`; the trainer passes `features` on to the gradient
probe and to `balancer.backward`. It is a value, as torchvision's detection models pass their
backbone's features to the heads: nothing about the last forward is stored on the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import torch


@dataclass(frozen=True)
class Features:
    """`levels` {key: tensor}, each (B, C, h, w) in the models (any shape in toy models): what
    the task-specific parameters read, and nothing else does.

    `shared=True`: every task reads every level, so the levels are one representation shared by
    all tasks (hard sharing: {stride: features}); representation-space balancers and the gradient
    probe work on it. `shared=False` (per-task networks: {(task, stride): features}, each read by
    its task's FPN only): the levels are only the cut through which torchjd's `mtl_backward`
    reaches the shared parameters.
    """

    levels: dict[Hashable, torch.Tensor]
    shared: bool

    def tensors(self) -> list[torch.Tensor]:
        """The levels in a fixed (sorted key) order."""
        return [self.levels[k] for k in sorted(self.levels)]
