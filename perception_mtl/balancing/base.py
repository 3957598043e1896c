"""The balancer interface (DESIGN.md section 2): it runs the backward pass itself.

`balancer.backward(losses, model)` receives the task losses of this step ({task: scalar},
only tasks with labels in the batch) and the model (for `shared_parameters()` and
`shared_representation`), fills `.grad`, and returns {"weights": {task: float}, ...stats}.
It keeps its own state (saved through `state_dict`) and never reads trainer attributes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Balancer(nn.Module, ABC):
    """Base class; learnable balancer parameters (if any) are this module's parameters."""

    def __init__(self, tasks: list[str]):
        super().__init__()
        self.tasks = list(tasks)

    @abstractmethod
    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module) -> dict:
        ...
