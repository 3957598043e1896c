"""GPUs for a suite's runs: whether they train on one, which this machine shows, and one per
worker of the local backend (each child process sees only its own through CUDA_VISIBLE_DEVICES,
so that its `cuda` is that GPU and no two runs share one unless asked to)."""
from __future__ import annotations

import os

import torch


def suite_on_gpu(suite_spec: dict) -> bool:
    """Whether the suite's runs train on a GPU: its `train.device` is cuda or cuda:N, or auto (the
    default) with CUDA visible here."""
    device = str((suite_spec.get("config") or {}).get("train.device", "auto"))
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def visible_gpus() -> list[str]:
    """This process's GPUs, named as a child's CUDA_VISIBLE_DEVICES must name them (the parent's
    own list where it has one, else 0..count-1)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpu_slots(workers: int) -> list[str]:
    """One GPU per worker, round-robin over the visible ones (more workers than GPUs share)."""
    gpus = visible_gpus()
    return [gpus[k % len(gpus)] for k in range(workers)] if gpus else []
