"""The balancer interface (docs/ARCHITECTURE.md, "Data flow"): it runs the backward pass itself.

`balancer.backward(losses, features, model)` receives the task losses of this step ({task:
scalar}, only tasks with labels in the batch), the `Features` of this step's forward (what
`model.shared_features` returned: the representation gradient methods work on, with `.shared`
saying whether every task reads it) and the model (for `shared_parameters()` and
`task_parameters(task)`), fills `.grad`, and returns {"weights": {task: float}, ...more scalars
to log}. It keeps its own state (saved through `state_dict`, with non-tensor state in
`get_extra_state`) and never reads trainer or model attributes set by a forward.

Under DDP (torchrun; `perception_mtl/core/distributed.py`) the trainer averages every `.grad`
over ranks after `backward`, so a balancer only has to (a) compute anything that depends on loss
values or gradients from the global batch, and (b) keep its state identical on every rank:
- static, equal, rlw: weights do not depend on this step's data (rlw draws them from the torch
  RNG, identical on every rank), so the averaged gradient is exactly the global one.
- uncertainty: s_i are ordinary parameters; their gradients are averaged like the model's.
- gls, dwa, famo, stch, imtl_l: the weights and the state (DWA's history, FAMO's logits and Adam,
  STCH's nadir point, IMTL-L's scale gradients) use the global losses (`distributed.global_values`,
  the mean of the local batch-mean losses).
- gradnorm: global losses for the training rates; the norms G_i come from the global Gramian
  (representation space) or the all-reduced gradients of the last shared layer (parameter space).
- torchjd aggregators: parameter space all-reduces the per-task Jacobians on the shared
  parameters before `jac_to_grad`; representation space computes the weights from the global
  Gramian (sum of local Gramians), or, for aggregators that need the matrix (ConFIG, NashMTL,
  GradDrop on parameters), from the all-gathered global Jacobian. `max_norm` (nashmtl, fairgrad)
  clips the shared gradient after averaging it over ranks.
- graddrop (representation): the per-element sums S_i are summed over ranks (one mask for the
  global batch). db_mtl: the per-task Jacobians are averaged over ranks before its EMA.
So N ranks with batch B take the same step as one process with batch N*B whenever each task loss
is a mean of per-sample losses (the equivalence test checks this for equal, uncertainty, gradnorm
and pcgrad).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import nn

from perception_mtl.models.features import Features

Losses = dict[str, torch.Tensor]


class Balancer(nn.Module, ABC):
    """Base class. Learnable balancer parameters that the trainer's optimizer should update are
    returned by `optimizer_parameters()` (by default all of this module's parameters)."""

    def __init__(self, tasks: list[str]):
        super().__init__()
        self.tasks = list(tasks)

    @abstractmethod
    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        ...

    def after_step(self, recompute: Callable[[], Losses]) -> None:
        """Called after the optimizer step; `recompute()` gives this batch's losses under the new
        weights (one extra forward, without grad). Only methods that need it call it (FAMO)."""

    def optimizer_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def averaged_parameters(self) -> list[nn.Parameter]:
        """Parameters whose `.grad` the last `backward` already averaged over ranks (gradient
        methods that all-reduce the Jacobian): the trainer does not all-reduce them again."""
        return []
