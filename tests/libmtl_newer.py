"""Nash-MTL, Aligned-MTL and DB-MTL as LibMTL's repository runs them (median-research-group/LibMTL at
commit 4336804, 2025-05-14; LibMTL 1.1.5 on PyPI predates all three), transcribed here from the
formulas of its files as weightings over LibMTL 1.1.5's own `AbsWeighting` (its per-task gradients
`_compute_grad` and its `_reset_grad`), so that they run in the same host as the 1.1.5 weightings
(tests/libmtl_host.py). The formulas, in our words; no code of those files is reused.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import least_squares

from libmtl_host import import_libmtl

AbsWeighting = import_libmtl().weighting.AbsWeighting


def nash_weights(gramian: np.ndarray) -> np.ndarray:
    """The alpha > 0 with alpha_i (G alpha)_i = 1 for every task (Nash bargaining solution)."""
    start = 1 / np.sqrt(np.diag(gramian))  # the solution when the gradients are orthogonal
    result = least_squares(lambda a: a * (gramian @ a) - 1, start, bounds=(0, np.inf), xtol=1e-15, ftol=1e-15,
                           gtol=1e-15)
    assert np.abs(result.fun).max() < 1e-6, result.fun  # solved, not merely stopped
    return result.x


class NashMTL(AbsWeighting):
    """LibMTL/weighting/Nash_MTL.py: G = J J^T of the shared parameters; alpha solves
    alpha_i (G alpha)_i = 1 (Navon et al. 2022); sum_i alpha_i L_i is backpropagated and the shared
    gradient clipped to `max_norm` (clip_grad_norm_). The file approaches alpha with up to `optim_niter`
    (20) sequential convex problems (ECOS) from the previous alpha on G / |G|_F; here it is solved to
    1e-6 of the fixed point. Returns alpha (before the clip), as the file does."""

    def backward(self, losses: torch.Tensor, **kwargs) -> np.ndarray:
        self._compute_grad_dim()
        grads = self._compute_grad(losses, mode="autograd")
        alpha = nash_weights((grads @ grads.T).double().numpy())
        (torch.from_numpy(alpha).float() * losses).sum().backward()
        if kwargs["max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(self.get_share_params(), kwargs["max_norm"])
        return alpha


class AlignedMTL(AbsWeighting):
    """LibMTL/weighting/Aligned_MTL.py (Senushkin et al. 2023, after SamsungLabs/MTL): eigenpairs
    (lambda, V) of G = J J^T above the rank tolerance max(lambda) * T * float32 eps, descending;
    B = sqrt(lambda_min) V diag(lambda^-1/2) V^T; alpha = the column sums of B; the shared gradient
    is sum_i alpha_i g_i. (The file's torch.symeig is gone from torch; torch.linalg.eigh is its
    replacement.)"""

    def backward(self, losses: torch.Tensor, **kwargs) -> np.ndarray:
        grads = self._get_grads(losses, mode="backward")
        lam, vec = torch.linalg.eigh(grads @ grads.T)
        keep = lam > lam.max() * len(lam) * torch.finfo(lam.dtype).eps
        order = torch.argsort(lam[keep], descending=True)
        lam, vec = lam[keep][order], vec[:, keep][:, order]
        balance = lam[-1].sqrt() * vec @ torch.diag(lam.rsqrt()) @ vec.T
        alpha = balance.sum(0)
        self._backward_new_grads(alpha, grads=grads)
        return alpha.detach().numpy()


class DBMTL(AbsWeighting):
    """LibMTL/weighting/DB_MTL.py (Lin et al. 2023): per-task gradients of log(L_i + 1e-8) on the
    shared parameters; a buffer h (zeros at first) takes h <- g + beta / t^beta_sigma (h - g) at step t;
    alpha_i = max_j |h_j| / (|h_i| + 1e-8); the shared gradient is sum_i alpha_i h_i. The file returns
    ones as the weights; alpha is kept in `self.alpha`."""

    def init_param(self) -> None:
        self.step, self.buffer, self.alpha = 0, None, None

    def backward(self, losses: torch.Tensor, **kwargs) -> np.ndarray:
        self.step += 1
        self._compute_grad_dim()
        grads = self._compute_grad(torch.log(losses + 1e-8), mode="backward")
        if self.buffer is None:
            self.buffer = torch.zeros_like(grads)
        rate = kwargs["DB_beta"] / self.step ** kwargs["DB_beta_sigma"]
        self.buffer = grads + rate * (self.buffer - grads)
        norms = self.buffer.norm(dim=1)
        self.alpha = norms.max() / (norms + 1e-8)
        self._reset_grad(self.alpha @ self.buffer)
        return np.ones(len(losses))
