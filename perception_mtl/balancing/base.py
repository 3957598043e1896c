"""The balancer interface (DESIGN.md section 2): it runs the backward pass itself.

`balancer.backward(losses, model)` receives the task losses of this step ({task: scalar},
only tasks with labels in the batch) and the model (for `shared_parameters()`,
`task_parameters(task)` and `shared_representation`), fills `.grad`, and returns
{"weights": {task: float}, ...more scalars to log}. It keeps its own state (saved through
`state_dict`, with non-tensor state in `get_extra_state`) and never reads trainer attributes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import nn

Losses = dict[str, torch.Tensor]


class Balancer(nn.Module, ABC):
    """Base class. Learnable balancer parameters that the trainer's optimizer should update are
    returned by `optimizer_parameters()` (by default all of this module's parameters)."""

    def __init__(self, tasks: list[str]):
        super().__init__()
        self.tasks = list(tasks)

    @abstractmethod
    def backward(self, losses: Losses, model: nn.Module) -> dict:
        ...

    def after_step(self, recompute: Callable[[], Losses]) -> None:
        """Called after the optimizer step; `recompute()` gives this batch's losses under the new
        weights (one extra forward, without grad). Only methods that need it call it (FAMO)."""

    def optimizer_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())
