"""Gradient-space methods: torchjd's aggregators (not rewritten), in two spaces.

`space="parameter"` (the papers' setting): `torchjd.autojac.mtl_backward` computes one gradient
per task on every shared parameter (the Jacobian, T rows) and `jac_to_grad` writes the
aggregated direction into `.grad`; task-specific parameters get their own loss's gradient.
`space="representation"`: the Jacobian is taken on the shared features instead (one backward
through each head), aggregated there, and pushed through the backbone in a single backward
(MGDA-UB, Sener & Koltun 2018; LibMTL's `rep_grad`). Much cheaper, an approximation.

Methods (paper, torchjd class, defaults from the paper or its official code):
  pcgrad       Yu et al., NeurIPS 2020                     PCGrad
  mgda         Sener & Koltun, NeurIPS 2018 (Desideri)     MGDA
  cagrad       Liu et al., NeurIPS 2021                    CAGrad(c=0.4)
  nashmtl      Navon et al., ICML 2022                     NashMTL(max_norm=1, update_weights_every=1, optim_niter=20)
  imtl_g       Liu et al., ICLR 2021                       IMTLG
  aligned_mtl  Senushkin et al., CVPR 2023                 AlignedMTL
  upgrad       Quinton & Rey, 2024 (torchjd's authors)     UPGrad
  graddrop     Chen et al., NeurIPS 2020                   GradDrop
  dualproj     Lopez-Paz & Ranzato, NeurIPS 2017 (GEM)     DualProj
  config       Liu et al., ICLR 2025 (ConFIG)              ConFIG
The weights logged are those the aggregator used; GradDrop has none, so its log holds each
task's projection <d, g_i> / |g_i|^2 of the aggregated direction d.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn
from torchjd.aggregation import (CAGrad, ConFIG, DualProj, GradDrop, IMTLG, MGDA, NashMTL, PCGrad,
                                 UPGrad, AlignedMTL, Aggregator, GramianWeightedAggregator, WeightedAggregator)
from torchjd.autojac import jac_to_grad, mtl_backward

from perception_mtl.balancing import BALANCERS
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.gradients import backward_through_shared, representation, task_gradients
from perception_mtl.engine import distributed

METHODS: dict[str, tuple[type[Aggregator], dict]] = {
    "pcgrad": (PCGrad, {}),
    "mgda": (MGDA, {}),
    "cagrad": (CAGrad, {"c": 0.4}),
    "nashmtl": (NashMTL, {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20}),
    "imtl_g": (IMTLG, {}),
    "aligned_mtl": (AlignedMTL, {}),
    "upgrad": (UPGrad, {}),
    "graddrop": (GradDrop, {}),
    "dualproj": (DualProj, {}),
    "config": (ConFIG, {}),
}


class AggregatorBalancer(Balancer):
    """Aggregates the per-task gradients with `aggregator` in parameter or representation space."""

    def __init__(self, tasks: list[str], aggregator: Aggregator, space: str = "parameter",
                 parallel_chunk_size: int | None = None, resize: Callable[[int], Aggregator] | None = None):
        super().__init__(tasks)
        if space not in ("parameter", "representation"):
            raise ValueError(f"space={space!r}; choose from ['parameter', 'representation']")
        self.aggregator, self.space, self.chunk = aggregator, space, parallel_chunk_size
        # aggregators sized to the number of tasks (NashMTL) get one instance per subset of tasks
        # present in a batch (partial labels); their warm-start state is per subset, not checkpointed
        self.resize, self.subsets = resize, {}

    def _for(self, present: list[str]) -> Aggregator | None:
        """The aggregator for a batch with the tasks `present`; None for a sized aggregator and one
        task (Nash-MTL's bargaining problem needs two players; the direction is that task's gradient)."""
        if self.resize is None or len(present) == len(self.tasks):
            return self.aggregator
        if len(present) == 1:
            return None
        return self.subsets.setdefault(tuple(present), self.resize(len(present)))

    def _representation_direction(self, aggregator: Aggregator, jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local Jacobian J (T, D) on the shared features -> (direction on them (D,), weights (T,)),
        aggregated over the global batch under DDP: Gramian weightings take the global Gramian;
        other aggregators the all-gathered global Jacobian (see distributed.global_jacobian)."""
        if isinstance(aggregator, GramianWeightedAggregator) and distributed.active():
            weights = aggregator.gramian_weighting(distributed.global_gramian(jac))
            return weights @ jac, weights
        full, mine = distributed.global_jacobian(jac)
        if isinstance(aggregator, WeightedAggregator):
            weights = aggregator.weighting(full)
            direction = weights @ full
        else:
            direction = aggregator(full)
            weights = (full @ direction) / (full * full).sum(dim=1).clamp_min(1e-20)
        return direction[mine] * distributed.world_size(), weights

    def backward(self, losses: Losses, model: nn.Module) -> dict:
        distributed.require_same_tasks(list(losses), self.tasks)
        aggregator = self._for(list(losses))
        if aggregator is None:
            next(iter(losses.values())).backward()
            return {"weights": dict.fromkeys(losses, 1.0)}
        if self.space == "representation":
            jac, own = task_gradients(losses, model)
            direction, weights = self._representation_direction(aggregator, jac)
            backward_through_shared(model, direction, own, {t: 1.0 for t in losses})
        else:
            shared = [p for p in model.shared_parameters() if p.requires_grad]
            mtl_backward(list(losses.values()), representation(model),
                         tasks_params=[list(model.task_parameters(t)) for t in losses],
                         shared_params=shared, parallel_chunk_size=self.chunk)
            if distributed.active():  # the global batch's Jacobian: the mean of the ranks' Jacobians
                for p in shared:
                    distributed.all_reduce_mean(p.jac)
            if isinstance(aggregator, WeightedAggregator):
                weights = jac_to_grad(shared, aggregator)
            else:
                jacs = [p.jac.flatten(1) for p in shared]
                jac_to_grad(shared, aggregator, retain_jac=True)
                gram = sum(j @ p.grad.flatten() for j, p in zip(jacs, shared))
                weights = gram / sum((j * j).sum(dim=1) for j in jacs).clamp_min(1e-20)
                for p in shared:
                    del p.jac
        return {"weights": dict(zip(losses, weights.tolist()))}


def _factory(name: str, cls: type[Aggregator], defaults: dict):
    hparams = [p for p in inspect.signature(cls).parameters if p != "n_tasks"]

    def build(tasks: list[str], space: str = "parameter", parallel_chunk_size: int | None = None,
              **kwargs) -> AggregatorBalancer:
        unknown = sorted(set(kwargs) - set(hparams))
        if unknown:
            raise TypeError(f"{name} got unknown parameter(s) {unknown}; valid: "
                            f"{sorted(['space', 'parallel_chunk_size', *hparams])}")
        if "n_tasks" not in inspect.signature(cls).parameters:
            return AggregatorBalancer(tasks, cls(**{**defaults, **kwargs}), space, parallel_chunk_size)
        sized = lambda n: cls(**{**defaults, **kwargs, "n_tasks": n})  # noqa: E731
        return AggregatorBalancer(tasks, sized(len(tasks)), space, parallel_chunk_size, resize=sized)

    build.__doc__ = f"{cls.__name__} from torchjd, defaults {defaults}"
    build.options = ["space", "parallel_chunk_size", *hparams]
    return build


for _name, (_cls, _defaults) in METHODS.items():
    BALANCERS.register(_name)(_factory(_name, _cls, _defaults))
