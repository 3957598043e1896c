"""LibMTL 1.1.5 (PyPI, a test dependency) driven side by side with our balancers on one tiny model.

`import_libmtl` makes LibMTL 1.1.5 import under torch 2.x; `libmtl_model` builds LibMTL's own
hard-parameter-sharing model (its `HPS` architecture mixed with a weighting, as its Trainer does)
around copies of our model's layers; `run_pair` steps both from the same state and records, per step,
the shared-parameter gradients and the task weights. Two fixes of LibMTL 1.1.5 for torch 2.x, both
outside the weightings' maths:
- `LibMTL/model/resnet.py` imports `torchvision.models.utils.load_state_dict_from_url`, gone from
  torchvision: a stub module with `torch.hub`'s function stands in for it (no weights are loaded).
- `zero_grad_share_params` calls `encoder.zero_grad()`, which sets gradients to None on torch >= 2.0,
  and `_reset_grad` then writes into `None.data`: we zero them in place, as LibMTL's repository later
  did (`zero_grad(set_to_none=False)` in `LibMTL/architecture/abstract_arch.py`).
"""
from __future__ import annotations

import contextlib
import copy
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from perception_mtl.balancing import build_balancer

from helpers import SharedLinear, ThreeTasks

TASKS = ["a", "b", "c"]
LR = 1e-4  # LibMTL's default learning rate (Adam)


def import_libmtl() -> types.ModuleType:
    """LibMTL 1.1.5, importable under torchvision >= 0.13 (see the module docstring)."""
    if "torchvision.models.utils" not in sys.modules:
        stub = types.ModuleType("torchvision.models.utils")
        stub.load_state_dict_from_url = torch.hub.load_state_dict_from_url
        sys.modules["torchvision.models.utils"] = stub
    import LibMTL
    return LibMTL


class TorchShuffle:
    """Stands in for the `random` module of LibMTL's PCGrad and GradVac (`torch_shuffle`): `shuffle`
    draws its permutation with `torch.randperm`, as torchjd does, so that one seed fixes both orders."""

    @staticmethod
    def shuffle(items: list) -> None:
        items[:] = [items[i] for i in torch.randperm(len(items)).tolist()]


@contextlib.contextmanager
def torch_shuffle(weighting: type):
    """While inside, LibMTL's `weighting` shuffles its task orders with TorchShuffle."""
    module = sys.modules[weighting.__module__]
    saved, module.random = module.random, TorchShuffle
    try:
        yield
    finally:
        module.random = saved


def libmtl_model(weighting: type, model: SharedLinear, rep_grad: bool = False) -> nn.Module:
    """LibMTL's HPS model with `weighting`, holding copies of `model`'s shared layer (with its
    activation) and heads; `train_loss_buffer` (T, 64) and `epoch` as LibMTL's Trainer sets them."""
    lib = import_libmtl()
    encoder = copy.deepcopy(nn.Sequential(model.shared, model.activation))

    class Host(lib.architecture.HPS, weighting):
        def __init__(self):
            super().__init__(list(model.heads), lambda: encoder, nn.ModuleDict(copy.deepcopy(model.heads)),
                             rep_grad, False, torch.device("cpu"))
            self.x, self.y, self.scale = model.x, model.y, model.scale
            self.epoch, self.train_loss_buffer = 0, np.zeros((len(model.heads), 64))
            self.init_param()

        def zero_grad_share_params(self) -> None:
            self.encoder.zero_grad(set_to_none=False)

        def losses(self, through_rep: bool = True) -> torch.Tensor:
            """The task losses (T,), in LibMTL's form: one tensor. `through_rep=False` bypasses
            LibMTL's detached per-task copies of the representation (`rep_grad`), for a Jacobian."""
            out = self(self.x) if through_rep else {t: self.decoders[t](self.encoder(self.x)) for t in self.task_name}
            return torch.stack([self.scale[t] * ((out[t] - self.y[t]) ** 2).mean() for t in self.task_name])

    return Host()


def shared_grad(params) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in params])


def jacobian(losses, params: list[nn.Parameter]) -> torch.Tensor:
    """(T, D): each loss's gradient on `params` (the graph is kept)."""
    return torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])
                        for loss in losses])


@dataclass
class Record:
    """Per step: shared gradients (D,), Jacobians (T, D) and weights (T,) of ours and LibMTL's, and
    LibMTL's losses (T,)."""
    ours: list[torch.Tensor] = field(default_factory=list)
    lib: list[torch.Tensor] = field(default_factory=list)
    jac_ours: list[torch.Tensor] = field(default_factory=list)
    jac_lib: list[torch.Tensor] = field(default_factory=list)
    w_ours: list[np.ndarray] = field(default_factory=list)
    w_lib: list[np.ndarray | None] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)  # LibMTL's (T,)
    balancer: nn.Module | None = None  # ours and LibMTL's model, in their state after the last step
    host: nn.Module | None = None

    def cosine(self) -> np.ndarray:
        return np.array([float(a @ b / (a.norm() * b.norm())) for a, b in zip(self.ours, self.lib)])

    def rel(self, factor: float = 1.0) -> np.ndarray:
        """|factor * ours - LibMTL's| / |LibMTL's| per step."""
        return np.array([float((factor * a - b).norm() / b.norm()) for a, b in zip(self.ours, self.lib)])

    def effective(self, side: str) -> np.ndarray:
        """(steps, T): the w with J^T w = the shared gradient (least squares; J has full row rank)."""
        grads, jacs = (self.ours, self.jac_ours) if side == "ours" else (self.lib, self.jac_lib)
        return np.stack([torch.linalg.lstsq(j.T, g.unsqueeze(1)).solution.squeeze(1).numpy()
                         for g, j in zip(grads, jacs)])


def run_pair(name: str, params: dict, weighting: type, kwargs: dict, steps: int = 4, rep_grad: bool = False,
             first_epoch: int = 0, setup=None) -> Record:
    """`steps` steps of our balancer `name` and of LibMTL's `weighting` (called with `kwargs`) from
    the same model, batch and seeds, each with its own Adam (LibMTL's lr) over its model and balancer.
    `first_epoch` is LibMTL's epoch counter at the first step (one step per epoch: its loss buffer
    holds each step's losses); `setup(balancer, lib_model)` adjusts the initial state."""
    torch.manual_seed(0)
    model = ThreeTasks()
    lib = libmtl_model(weighting, model, rep_grad)
    balancer = build_balancer(name, TASKS, params)
    if setup:
        setup(balancer, lib)
    opt = torch.optim.Adam([*model.parameters(), *balancer.optimizer_parameters()], lr=LR)
    opt_lib = torch.optim.Adam(lib.parameters(), lr=LR)
    record = Record(balancer=balancer, host=lib)
    for step in range(steps):
        opt.zero_grad()
        features, losses = model.forward_losses()
        record.jac_ours.append(jacobian(losses.values(), list(model.shared_parameters())))
        torch.manual_seed(100 + step)
        weights = balancer.backward(losses, features, model)["weights"]
        record.ours.append(shared_grad(model.shared_parameters()))
        record.w_ours.append(np.array([weights[t] for t in TASKS]))

        opt_lib.zero_grad()
        lib.epoch = first_epoch + step
        record.jac_lib.append(jacobian(lib.losses(through_rep=False), list(lib.get_share_params())))
        lib_losses = lib.losses()
        torch.manual_seed(100 + step)
        w = lib.backward(lib_losses, **kwargs)
        record.lib.append(shared_grad(lib.get_share_params()))
        record.w_lib.append(None if w is None else np.asarray(w, dtype=np.float64))
        record.losses.append(lib_losses.detach().numpy())
        lib.train_loss_buffer[:, lib.epoch] = record.losses[-1]
        opt.step()
        opt_lib.step()
    return record
