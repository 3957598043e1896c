"""NaN/Inf guards of the training step: a non-finite loss is caught before the backward pass, a
non-finite gradient after it and before the optimizer step; `train.nonfinite` says whether the
step is skipped (and counted) or the run stops with one of these errors."""
from __future__ import annotations

import torch
from torch import nn


class NonFiniteLossError(RuntimeError):
    """A task loss (or a gradient, see the subclass) became NaN or Inf and `train.nonfinite=stop`."""


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or Inf after the balancer's backward and `train.nonfinite=stop`."""


def nonfinite_gradients(model: nn.Module, tasks: list[str]) -> list[str]:
    """Where `.grad` is NaN/Inf: the tasks whose own parameters (head, own neck) have such a
    gradient, and "the combined gradient on the shared parameters" when only those do (the
    balancer has already mixed the tasks there). Empty when every gradient is finite. One
    device-to-host copy per step: the per-parameter flags are stacked on the device first."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return []
    finite = torch.stack([torch.isfinite(p.grad).all() for p in params]).tolist()
    if all(finite):
        return []
    bad = {id(p) for p, ok in zip(params, finite) if not ok}
    named = [t for t in tasks if any(id(p) in bad for p in model.task_parameters(t))]
    return named or ["the combined gradient on the shared parameters"]
