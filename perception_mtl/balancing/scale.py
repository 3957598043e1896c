"""Scale-safe torchjd aggregators: the one place where their absolute thresholds are neutralised.

Most gradient methods are scale-invariant by definition: multiplying every task loss by c > 0
leaves their weights (or at least the weights' proportions) and the direction of the update
unchanged. Several torchjd classes break this with an absolute threshold, and late in training
real losses reach it (trace(G) of 2.6e-5 on the shared representation by step 15):

- CAGrad, and UPGrad / DualProj through their `QuadprogProjector`, normalise the Gramian by its
  trace and treat trace(G) < `norm_eps` (1e-4) as zero: CAGrad then returns zero weights (an exact
  zero gradient for the backbone), UPGrad and DualProj the plain mean (no projection at all).
  We pass `norm_eps = TINY`, the smallest normal float32: only a Gramian that float32 cannot
  represent counts as zero. (CAGrad also compares the norm of its combination, computed on the
  normalised Gramian, to `norm_eps` to zero its weights "on the Pareto front"; the official code
  never zeroes them, so the tiny value is closer to it. The QP's `reg_eps` acts after the
  normalisation, so it is relative and stays.)
- GradVac adds `eps` (1e-8) to products of gradient norms, PCD adds `eps` (1e-8) to its moving
  average of squared norms: with small gradients they dominate (cosines shrink toward 0, every
  gradient gets the same scale). We pass TINY, which only guards a division by zero.
- Nash-MTL's weights solve alpha_i (G alpha)_i = 1, so they scale as 1/|J| (the update J^T alpha
  does not); FairGrad's solve G w = w^(-1/alpha), so they scale as trace(G)^(-alpha/(1+alpha)).
  torchjd's solvers (ECOS warm-started at the previous alpha; scipy's least_squares from the
  uniform vector) miss these solutions when |J| is small. `UnitScale` solves the problem for
  J / |J|_F (trace 1) and rescales the weights by the known power: the same solution, at the
  solvers' preferred scale.

Checked and left alone (their thresholds are relative or do not bind at small scales): MGDA
(`epsilon` bounds the Frank-Wolfe step, a ratio), IMTL-G (pinv's relative cutoff; its 1e-12 on
sum(v) can only bind for huge gradients, v scaling as 1/|J|), Aligned-MTL (tolerance relative to
the largest eigenvalue), PCGrad, ConFIG and GradDrop (no threshold). ExcessMTL adds 1e-7 to its
accumulated squared gradients as the official code does, and its first step is scale-dependent
by design (it weights the raw excess-risk proxy).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchjd.aggregation import (CAGrad, CAGradWeighting, DualProj, DualProjWeighting, GradVac, GradVacWeighting,
                                 PCD, PCDWeighting, UPGrad, UPGradWeighting, Weighting)
from torchjd.linalg import QuadprogProjector

TINY = torch.finfo(torch.float32).tiny  # 1.2e-38: below it a float32 Gramian is denormal or zero


def _projector() -> dict:
    return {"projector": QuadprogProjector(norm_eps=TINY)}


SCALE_SAFE: dict[type, Callable[[], dict]] = {
    CAGrad: lambda: {"norm_eps": TINY}, CAGradWeighting: lambda: {"norm_eps": TINY},
    UPGrad: _projector, UPGradWeighting: _projector,
    DualProj: _projector, DualProjWeighting: _projector,
    GradVac: lambda: {"eps": TINY}, GradVacWeighting: lambda: {"eps": TINY},
    PCD: lambda: {"eps": TINY}, PCDWeighting: lambda: {"eps": TINY},
}


def scale_safe(cls: type, **kwargs):
    """`cls(**kwargs)` with the scale-safe thresholds of SCALE_SAFE (a fresh projector each call)."""
    return cls(**{**SCALE_SAFE.get(cls, dict)(), **kwargs})


class UnitScale(Weighting):
    """Applies `weighting` to its input at unit scale and multiplies the weights by s^exponent:
    s = |J|_F for a Jacobian J (T, D) (`gramian=False`), s = trace(G) = |J|_F^2 for a Gramian
    G (T, T). Exact for weightings whose weights scale as s^exponent. Returns weights (T,)."""

    def __init__(self, weighting: Weighting, exponent: float, gramian: bool):
        super().__init__()
        self.weighting, self.exponent, self.gramian = weighting, exponent, gramian

    def forward(self, stat: Tensor, /) -> Tensor:
        scale = stat.diagonal().sum() if self.gramian else stat.norm()
        if scale == 0:  # every task's gradient is 0: any weights give the same, zero, update
            return torch.zeros(stat.shape[0], dtype=stat.dtype, device=stat.device)
        if not scale > 0:
            return self.weighting(stat)
        return self.weighting(stat / scale) * scale ** self.exponent
