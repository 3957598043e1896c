"""Checkpointing torchjd's stateful aggregators (GradVac, PCD, ExcessMTL, CR-MOGM, Nash-MTL).

Their state lives in buffers registered as None until the first call and in plain attributes
(step counters, state keys, Nash-MTL's warm start), which `state_dict` cannot restore into a
fresh instance. `capture` records both per submodule; `restore` writes them back, moving each
buffer to this process's device of the kind it was captured on (checkpoints load on the CPU).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchjd import Stateful
from torchjd.aggregation._nash_mtl import _NashMTLWeighting

# plain attributes that hold state: torchjd's state keys and counters, Nash-MTL's warm start
ATTRIBUTES = ("_state_key", "_n_steps", "step", "prvs_alpha", "normalization_factor")


def is_stateful(aggregator: nn.Module) -> bool:
    return any(isinstance(m, Stateful) for m in aggregator.modules())


def capture(aggregator: nn.Module) -> list[dict]:
    """Per submodule (in `modules()` order): its buffers, their devices, its stateful attributes."""
    return [{"buffers": {k: None if v is None else v.detach().clone() for k, v in m._buffers.items()},
             "devices": {k: str(v.device) for k, v in m._buffers.items() if v is not None},
             "attributes": {k: copy.deepcopy(vars(m)[k]) for k in ATTRIBUTES if k in vars(m)}}
            for m in aggregator.modules()]


def _device(name: str) -> torch.device:
    """A captured CUDA device -> this process's current GPU (under torchrun rank 0 saved its own
    cuda:0, and the host resumed on may have fewer GPUs); the CPU without CUDA."""
    device = torch.device(name)
    if device.type != "cuda":
        return device
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def restore(aggregator: nn.Module, state: list[dict]) -> None:
    """Write `capture`'s output back into a fresh aggregator built with the same settings."""
    for m, saved in zip(aggregator.modules(), state, strict=True):
        for k, v in saved["buffers"].items():
            m._buffers[k] = None if v is None else v.to(_device(saved["devices"][k]))
        for k, v in saved["attributes"].items():
            setattr(m, k, copy.deepcopy(v))
        if isinstance(m, _NashMTLWeighting) and m.step > 0:
            m._init_optim_problem()  # its cvxpy problem is built on the first call only
