"""Per-task gradients on the shared representation, and the statistics logged from them.

The shared representation is what the task heads read: the `Features` a model's
`shared_features` returns when they are shared by every task (the FPN levels or the backbone
levels). A task's gradient with respect to it costs one backward pass through that task's head
only, so all of these are cheap next to a backbone backward: this is MGDA-UB's trick (Sener &
Koltun 2018) and LibMTL's `rep_grad`. The model exposes the representation as aliases that only
the heads read: where levels feed each other (backbone levels), a gradient on the levels
themselves would count the deeper paths twice.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from perception_mtl.models.features import Features


def representation(features: Features) -> list[torch.Tensor]:
    """The levels of a shared representation, in a fixed (stride) order; raises for features that
    are not shared by every task (per-task networks)."""
    if not features.shared:
        raise ValueError("representation-space methods need features shared by every task (model.sharing=hard); "
                         "these are per-task: use the parameter space")
    return features.tensors()


def _flatten(grads: tuple, feats: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-level gradients into one float vector (zeros where a level is unused)."""
    return torch.cat([(g if g is not None else torch.zeros_like(f)).reshape(-1).float()
                      for g, f in zip(grads, feats)])


def task_gradients(losses: dict[str, torch.Tensor], features: Features, model: nn.Module
                   ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor | None]]]:
    """Jacobian of the losses on the shared `features` and each task's gradient on its own parameters.

    Returns J (T, D) with one flattened feature gradient per task (order of `losses`) and
    {task: [grad or None per parameter of model.task_parameters(task)]}. The graph is retained.
    """
    feats = representation(features)
    rows, own = [], {}
    for t, loss in losses.items():
        params = list(model.task_parameters(t))
        grads = torch.autograd.grad(loss, [*feats, *params], retain_graph=True, allow_unused=True)
        rows.append(_flatten(grads[:len(feats)], feats))
        own[t] = list(grads[len(feats):])
    return torch.stack(rows), own


def backward_through_shared(model: nn.Module, features: Features, direction: torch.Tensor,
                            own: dict[str, list[torch.Tensor | None]], scale: dict[str, float]) -> None:
    """Write `scale[t] * own[t]` into each task's parameters and push `direction` (D,) through the
    shared part from `features`: one backward pass through the backbone whatever the number of tasks."""
    for t, grads in own.items():
        for p, g in zip(model.task_parameters(t), grads):
            if g is not None:
                g = scale[t] * g
                p.grad = g if p.grad is None else p.grad + g
    feats = representation(features)
    pieces = torch.split(direction, [f.numel() for f in feats])
    torch.autograd.backward(feats, [d.view_as(f).to(f.dtype) for d, f in zip(pieces, feats)])


def gradient_stats(tasks: list[str], gramian: torch.Tensor) -> dict[str, float]:
    """From the Gramian G = J J^T (T, T): per-task gradient norms, pairwise cosine similarity and
    gradient-magnitude similarity 2|g_i||g_j| / (|g_i|^2 + |g_j|^2) (Yu et al. 2020)."""
    sq = gramian.diagonal().clamp_min(0)
    norms = sq.sqrt()
    stats = {f"grad/norm/{t}": float(norms[i]) for i, t in enumerate(tasks)}
    for i, j in itertools.combinations(range(len(tasks)), 2):
        pair = f"{tasks[i]}-{tasks[j]}"
        denom = float(norms[i] * norms[j])
        stats[f"grad/cos/{pair}"] = float(gramian[i, j]) / denom if denom > 0 else 0.0
        total = float(sq[i] + sq[j])
        stats[f"grad/magsim/{pair}"] = 2 * denom / total if total > 0 else 1.0
    return stats


def probe(losses: dict[str, torch.Tensor], features: Features, model: nn.Module) -> dict[str, float]:
    """Gradient statistics of this step (the graph is kept): on the shared representation, or,
    where `features` are not shared (soft sharing, cross-stitch), on the model's shared parameters."""
    if features.shared:
        wrt = representation(features)
    else:
        wrt = [p for p in model.shared_parameters() if p.requires_grad]
    rows = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)
        rows.append(_flatten(grads, wrt))
    jac = torch.stack(rows)
    return gradient_stats(list(losses), jac @ jac.T)
