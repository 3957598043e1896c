"""Wall-clock readings for the bench tools that are right on a GPU: CUDA runs kernels
asynchronously, so a timer read without waiting for them measures the launches, not the work."""
from __future__ import annotations

import time

import torch


def now(device: torch.device | str) -> float:
    """time.perf_counter() once the kernels queued on `device` have finished (a no-op wait off CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
