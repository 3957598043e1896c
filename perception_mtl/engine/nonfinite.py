"""NaN/Inf guards of the training step: a non-finite loss is caught before the backward pass, a
non-finite gradient after it and before the optimizer step; `train.nonfinite` says whether the
step is skipped (and counted) or the run stops with one of these errors."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class NonFiniteLossError(RuntimeError):
    """A task loss (or a gradient, see the subclass) became NaN or Inf and `train.nonfinite=stop`."""


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or Inf after the balancer's backward and `train.nonfinite=stop`."""


def _finite(params: Iterable[nn.Parameter]) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)


def nonfinite_gradients(model: nn.Module, tasks: list[str]) -> list[str]:
    """Where `.grad` is NaN/Inf: the tasks whose own parameters (head, own neck) have such a
    gradient, and "the combined gradient on the shared parameters" when only those do (the
    balancer has already mixed the tasks there). Empty when every gradient is finite."""
    named = [t for t in tasks if not _finite(model.task_parameters(t))]
    if not named and not _finite(model.parameters()):
        named = ["the combined gradient on the shared parameters"]
    return named
