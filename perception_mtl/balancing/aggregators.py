"""Gradient-space methods: torchjd's aggregators (not rewritten), in two spaces.

`space="parameter"` (the papers' setting): `torchjd.autojac.mtl_backward` computes one gradient
per task on every shared parameter (the Jacobian, T rows) and `jac_to_grad` writes the
aggregated direction into `.grad`; task-specific parameters get their own loss's gradient.
`space="representation"`: the Jacobian is taken on the shared features instead (one backward
through each head), aggregated there, and pushed through the backbone in a single backward
(MGDA-UB, Sener & Koltun 2018; LibMTL's `rep_grad`). Much cheaper, an approximation (labelled as
a variant, see `balancer_variant`), except for MGDA, where it is the paper's own MGDA-UB.

Methods (paper; torchjd class; the builder's keyword defaults are the paper's or its official
code's settings):
  pcgrad       Yu et al., NeurIPS 2020                       PCGrad
  mgda         Sener & Koltun, NeurIPS 2018 (Desideri)       MGDA
  cagrad       Liu et al., NeurIPS 2021                      CAGrad(c=0.4)
  nashmtl      Navon et al., ICML 2022                       NashMTL(update_weights_every=1, optim_niter=20)
  imtl_g       Liu et al., ICLR 2021                         IMTLG
  aligned_mtl  Senushkin et al., CVPR 2023                   AlignedMTL(scale_mode="min", the paper's sigma_min)
  upgrad       Quinton & Rey, 2024 (torchjd's authors)       UPGrad
  dualproj     Lopez-Paz & Ranzato, NeurIPS 2017 (GEM)       DualProj
  config       Liu et al., ICLR 2025 (ConFIG)                ConFIG
  fairgrad     Ban & Ji, ICML 2024                           FairGrad(alpha=1, the official code's default)
  gradvac      Wang et al., ICLR 2021                        GradVac(beta=0.01, the paper's EMA rate)
  excessmtl    He et al., ICML 2024                          ExcessMTL(robust_step_size=0.01); parameter space only
  pcd          "Not All Objectives Are Born Equal", TMLR 2026 PCD(tau=0.02, beta=0.999); `primary` task
  cr_mogm      Zhou et al., NeurIPS 2022                     CRMOGMWeighting(<base>'s weighting, alpha=0.9)
(GradDrop is in graddrop.py.) Every class is built through scale.py, so that no absolute threshold
makes a method depend on the scale of the losses.

`max_norm` (nashmtl, fairgrad): as in their official code, the gradient of the shared parameters
is clipped to this norm after the weighted backward (torch's clip_grad_norm_); torchjd's own
clipping of the aggregated direction is off. Under DDP the shared gradients are averaged over
ranks first, so the clip acts on the global batch's gradient.

The weights logged are those the aggregator used (times the clip factor where `max_norm` clips);
ConFIG has none, so its log holds each task's projection <d, g_i> / |g_i|^2 of the direction d.
A batch where only some tasks are labelled gets its own aggregator instance for that subset of
tasks (stateful methods keep one state per subset; all of it is checkpointed).
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torchjd.aggregation import (IMTLG, MGDA, PCD, Aggregator, AlignedMTL, CAGrad, ConFIG, CRMOGMWeighting, DualProj,
                                 ExcessMTL, FairGradWeighting, GradVac, GramianWeightedAggregator, NashMTL, PCGrad,
                                 UPGrad, WeightedAggregator)
from torchjd.autojac import jac_to_grad, mtl_backward

from perception_mtl.core import distributed
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.gradients import backward_through_shared, task_gradients
from perception_mtl.balancing.registry import BALANCERS, REPRESENTATION, variants
from perception_mtl.balancing.scale import UnitScale, scale_safe
from perception_mtl.balancing.stateful import capture, is_stateful, restore
from perception_mtl.models.features import Features

SPACES = ("parameter", "representation")


def _nashmtl(n: int, update_weights_every: int = 1, optim_niter: int = 20) -> Aggregator:
    """Nash-MTL without torchjd's clip of the direction (`max_norm` clips the shared gradient)."""
    nash = NashMTL(n, max_norm=0.0, update_weights_every=update_weights_every, optim_niter=optim_niter)
    return WeightedAggregator(UnitScale(nash.weighting, exponent=-1.0, gramian=False))


def _fairgrad(n: int, alpha: float = 1.0) -> Aggregator:
    """FairGrad, solved on the unit-trace Gramian (its weights scale as trace^(-alpha/(1+alpha)))."""
    weighting = FairGradWeighting(alpha)
    return GramianWeightedAggregator(UnitScale(weighting, exponent=-alpha / (1 + alpha), gramian=True))


def _cr_mogm(n: int, base: str = "mgda", alpha: float = 0.9) -> Aggregator:
    """CR-MOGM smooths the weights of a Gramian weighting `base` with an EMA of rate `alpha`."""
    if base not in CR_MOGM_BASES:
        raise ValueError(f"cr_mogm base={base!r}; choose from {CR_MOGM_BASES}")
    return GramianWeightedAggregator(CRMOGMWeighting(METHODS[base].build(n).gramian_weighting, alpha=alpha))


@dataclass(frozen=True)
class Method:
    """A torchjd method: `build(n_tasks, **hyperparameters)` makes a fresh aggregator."""
    build: Callable[..., Aggregator]
    spaces: tuple[str, ...] = SPACES  # the first is the default
    max_norm: float | None = None  # clip the shared gradient to it (official code); None: no such option
    min_tasks: int = 1  # with fewer tasks in a batch, that task's own gradient
    primary: bool = False  # has a `primary` option: that task's row comes first
    labels: dict = field(default_factory=lambda: {"space": {"representation": REPRESENTATION}})
    deviation: str = ""  # how the method departs from its paper whatever the options


METHODS: dict[str, Method] = {
    "pcgrad": Method(lambda n: PCGrad()),
    # torchjd's Frank-Wolfe stops at epsilon 1e-3, 0.5% above the minimum norm with weights off by 0.03
    # (docs/LIBMTL.md); at 1e-6 it reaches the official solver's point, for about 3 ms a step at T = 3
    "mgda": Method(lambda n, epsilon=1e-6, max_iters=10_000: MGDA(epsilon, max_iters),
                   labels={"space": {"representation": "MGDA-UB (representation space)"}}),
    "cagrad": Method(lambda n, c=0.4: scale_safe(CAGrad, c=c)),
    "nashmtl": Method(_nashmtl, max_norm=1.0, min_tasks=2),
    "imtl_g": Method(lambda n: IMTLG()),
    "aligned_mtl": Method(lambda n, scale_mode="min": AlignedMTL(scale_mode=scale_mode)),
    "upgrad": Method(lambda n: scale_safe(UPGrad)),
    "dualproj": Method(lambda n: scale_safe(DualProj)),
    "config": Method(lambda n: ConFIG()),
    "fairgrad": Method(_fairgrad, max_norm=1.0),
    "gradvac": Method(lambda n, beta=0.01: scale_safe(GradVac, beta=beta)),
    "excessmtl": Method(lambda n, robust_step_size=0.01: ExcessMTL(robust_step_size), spaces=("parameter",)),
    "pcd": Method(lambda n, tau=0.02, beta=0.999: scale_safe(PCD, tau=tau, beta=beta), primary=True),
    "cr_mogm": Method(_cr_mogm, deviation="constant alpha (paper: rises as the learning rate decays)"),
}
CR_MOGM_BASES = ["aligned_mtl", "cagrad", "dualproj", "fairgrad", "imtl_g", "mgda", "pcgrad", "upgrad"]


class AggregatorBalancer(Balancer):
    """Aggregates the per-task gradients in parameter or representation space with `aggregator`
    (one instance for every batch) or with the one `aggregator(n_tasks)` builds for each subset of
    tasks present in a batch."""

    def __init__(self, tasks: list[str], aggregator: Aggregator | Callable[[int], Aggregator],
                 space: str = "parameter", parallel_chunk_size: int | None = None, max_norm: float | None = None,
                 min_tasks: int = 1, primary: str | None = None):
        super().__init__(tasks)
        if primary is not None and primary not in tasks:
            raise ValueError(f"primary={primary!r} is not among the tasks {tasks}")
        make = (lambda n: aggregator) if isinstance(aggregator, Aggregator) else aggregator
        self.make, self.space, self.chunk = make, space, parallel_chunk_size
        self.max_norm, self.min_tasks, self.primary = max_norm, min_tasks, primary
        self.aggregators: dict[tuple[str, ...], Aggregator] = {tuple(tasks): make(len(tasks))}
        self.pending: dict[tuple[str, ...], list[dict]] = {}  # restored states not yet used
        self.averaged: list[nn.Parameter] = []  # shared parameters whose gradient is already global

    def _for(self, present: list[str]) -> Aggregator:
        key = tuple(present)
        if key not in self.aggregators:
            self.aggregators[key] = self.make(len(present))
            if key in self.pending:
                restore(self.aggregators[key], self.pending.pop(key))
        return self.aggregators[key]

    def _ordered(self, losses: Losses) -> Losses:
        """`primary` first (PCD's primary objective), the others in their order."""
        if self.primary not in losses:
            return losses
        return {self.primary: losses[self.primary], **{t: v for t, v in losses.items() if t != self.primary}}

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

    def _parameter_step(self, aggregator: Aggregator, losses: Losses, features: Features,
                        model: nn.Module) -> torch.Tensor:
        """Jacobian on the shared parameters (all-reduced under DDP, reached through `features`),
        aggregated into `.grad`."""
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        mtl_backward(list(losses.values()), features.tensors(),
                     tasks_params=[list(model.task_parameters(t)) for t in losses],
                     shared_params=shared, parallel_chunk_size=self.chunk)
        distributed.all_reduce_mean_many(p.jac for p in shared)  # the global batch's Jacobian: the ranks' mean
        self.averaged = shared
        if isinstance(aggregator, WeightedAggregator):
            return jac_to_grad(shared, aggregator)
        jacs = [p.jac.flatten(1) for p in shared]
        jac_to_grad(shared, aggregator, retain_jac=True)
        gram = sum(j @ p.grad.flatten() for j, p in zip(jacs, shared))
        weights = gram / sum((j * j).sum(dim=1) for j in jacs).clamp_min(1e-20)
        for p in shared:
            del p.jac
        return weights

    def _clip(self, model: nn.Module) -> float:
        """Clip the shared parameters' (global) gradient to `max_norm`; returns the factor applied."""
        shared = [p for p in model.shared_parameters() if p.grad is not None]
        done = {id(p) for p in self.averaged}  # parameter space: already the global gradient
        distributed.all_reduce_mean_many(p.grad for p in shared if id(p) not in done)
        self.averaged = shared
        norm = float(torch.nn.utils.clip_grad_norm_(shared, self.max_norm))
        return min(1.0, self.max_norm / (norm + 1e-6))

    def averaged_parameters(self) -> list[nn.Parameter]:
        return self.averaged

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        distributed.require_same_tasks(list(losses), self.tasks)
        self.averaged = []
        losses = self._ordered(losses)
        if len(losses) < self.min_tasks:
            next(iter(losses.values())).backward()
            weights = torch.ones(len(losses))
        elif self.space == "representation":
            jac, own = task_gradients(losses, features, model)
            direction, weights = self._representation_direction(self._for(list(losses)), jac)
            backward_through_shared(model, features, direction, own, {t: 1.0 for t in losses})
        else:
            weights = self._parameter_step(self._for(list(losses)), losses, features, model)
        if self.max_norm:
            weights = weights * self._clip(model)
        return {"weights": dict(zip(losses, weights.tolist()))}


class StatefulAggregatorBalancer(AggregatorBalancer):
    """An AggregatorBalancer whose torchjd aggregator keeps state across steps (Nash-MTL's warm
    start, GradVac's and PCD's moving averages, ExcessMTL's sums, CR-MOGM's weights): the state of
    every subset's aggregator is checkpointed."""

    def get_extra_state(self) -> dict:
        return {"aggregators": {**self.pending, **{k: capture(a) for k, a in self.aggregators.items()}}}

    def set_extra_state(self, state: dict) -> None:
        self.aggregators, self.pending = {}, dict(state["aggregators"])


def _factory(name: str, method: Method) -> Callable[..., AggregatorBalancer]:
    hparams = {k: p.default for k, p in list(inspect.signature(method.build).parameters.items())[1:]}
    own = {"space": method.spaces[0], "parallel_chunk_size": None}
    own.update({"max_norm": method.max_norm} if method.max_norm is not None else {})
    own.update({"primary": None} if method.primary else {})
    defaults = {**own, **hparams}

    def build(tasks: list[str], **params) -> AggregatorBalancer:
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"{name} got unknown parameter(s) {unknown}; valid: {sorted(defaults)}")
        chosen = {**defaults, **params}
        if chosen["space"] not in method.spaces:
            raise ValueError(f"{name} space={chosen['space']!r}; choose from {list(method.spaces)}")
        make = functools.partial(method.build, **{k: chosen[k] for k in hparams})
        kind = StatefulAggregatorBalancer if is_stateful(make(len(tasks))) else AggregatorBalancer
        return kind(tasks, make, chosen["space"], chosen["parallel_chunk_size"], chosen.get("max_norm"),
                    method.min_tasks, chosen.get("primary"))

    build.__signature__ = inspect.Signature(
        [inspect.Parameter("tasks", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()])
    build.__doc__ = f"torchjd's {name}, defaults {defaults}"
    build.options, build.spaces = list(defaults), method.spaces
    return variants(method.deviation, **method.labels)(build)


for _name, _method in METHODS.items():
    BALANCERS.register(_name)(_factory(_name, _method))
