"""Uncertainty weighting: Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018.

Each task has a learnable s_i = log sigma_i^2 (initialised to 0) and contributes
  regression (Gaussian likelihood, eq. 5):        1/(2 sigma_i^2) L_i + log sigma_i = 0.5 exp(-s_i) L_i + 0.5 s_i
  classification (scaled softmax, eq. 10):        1/sigma_i^2 L_i + log sigma_i     =     exp(-s_i) L_i + 0.5 s_i
At the optimum of s_i, sigma_i^2 = L_i (regression) or 2 L_i (classification).

Why not torchjd's `UW`: it uses the regression form for every task; the paper uses the
classification form for segmentation. The s_i go into the trainer's optimizer (own group,
no weight decay). The total loss becomes negative once some L_i < 1 (the log sigma term):
that is expected, not a bug; compare the per-task losses, not the total.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.models.features import Features
from perception_mtl.tasks import TASKS

FORMS = {"regression": 0.5, "classification": 1.0}  # factor on exp(-s_i) L_i


def declared_forms(tasks: list[str]) -> dict[str, str]:
    """Each registered task's own `Task.loss_form` (segmentation, detection, edges:
    classification; depth: regression). Other names (toy losses) must be given a form."""
    return {t: TASKS.get(t).loss_form for t in tasks if t in TASKS}


@BALANCERS.register("uncertainty")
@variants()
class UncertaintyWeighting(Balancer):
    """`forms`: {task: "regression" | "classification"}, by default each task's declared form;
    tasks not named in a given `forms` take their declared one."""

    def __init__(self, tasks: list[str], forms: Mapping[str, str] | None = None):
        super().__init__(tasks)
        forms = {**declared_forms(tasks), **(forms or {})}
        if missing := [t for t in tasks if t not in forms]:
            raise ValueError(f"uncertainty weighting needs a loss form for {missing} (not registered tasks): "
                             f"pass forms={{task: {' | '.join(sorted(FORMS))}}}")
        for t, form in forms.items():
            if form not in FORMS:
                raise ValueError(f"uncertainty form for {t!r} is {form!r}; choose from {sorted(FORMS)}")
        self.factor = {t: FORMS[forms[t]] for t in tasks}
        self.log_var = nn.Parameter(torch.zeros(len(tasks)))

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        total, weights, stats = 0.0, {}, {}
        for t, loss in losses.items():
            s = self.log_var[self.tasks.index(t)]
            weight = self.factor[t] * torch.exp(-s)
            total = total + weight * loss + 0.5 * s
            weights[t] = float(weight.detach())
            stats[f"uncertainty/sigma2/{t}"] = float(torch.exp(s.detach()))
        total.backward()
        return {"weights": weights, **stats}
