"""Random-number state in checkpoints: one entry per rank, each with its CPU generators (torch,
numpy, python) and the generator of the one GPU that rank trains on.

Saving every rank's own state (not rank 0's for all) makes a resume exact on any host where the
run starts with as many processes: each rank restores its own CPU and GPU generators onto
whatever GPU it now has, so the number of GPUs visible does not matter. Where a resume cannot be
exact (another number of processes, a GPU run resumed on the CPU or the other way round), it
goes on and warns, saying why.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import torch

from perception_mtl.core import distributed


class InexactResumeWarning(UserWarning):
    """A resumed run's random draws will differ from those of an uninterrupted run."""


def process_state(device: torch.device) -> dict:
    """This process's generators: CPU ones, and `device`'s when it is a GPU."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "device": device.type}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def run_state(device: torch.device) -> dict:
    """{"ranks": [each rank's process_state, in rank order]}; a collective: every rank calls it."""
    return {"ranks": distributed.gather_objects([process_state(device)])}


def restore(saved: dict, device: torch.device) -> None:
    """Restore this rank's generators from `run_state`'s output (or from the single-process
    format of older checkpoints), warning when the resume cannot be exact."""
    ranks = saved["ranks"] if "ranks" in saved else [_old_format(saved, device)]
    world, rank = distributed.world_size(), distributed.rank()
    if len(ranks) != world:
        _warn(f"the checkpoint holds the random state of {len(ranks)} process(es), this run has {world}")
    own = ranks[rank % len(ranks)]
    torch.set_rng_state(own["torch"])
    np.random.set_state(own["numpy"])
    random.setstate(own["python"])
    if device.type == "cuda" and "cuda" in own:
        torch.cuda.set_rng_state(own["cuda"], device)
    elif device.type != own["device"]:
        _warn(f"the run trained on {own['device']} and resumes on {device.type}")


def _old_format(saved: dict, device: torch.device) -> dict:
    """A checkpoint from before per-rank states: rank 0's CPU state and every visible GPU's."""
    own = {**saved, "device": "cuda" if saved.get("cuda") else "cpu"}
    own.pop("cuda", None)
    gpus = saved.get("cuda") or []
    if device.type == "cuda" and device.index < len(gpus):
        own["cuda"] = gpus[device.index]
    elif device.type == "cuda" and gpus:
        _warn(f"the checkpoint holds the random state of {len(gpus)} GPU(s), this process trains on GPU "
              f"{device.index}")
    return own


def _warn(reason: str) -> None:
    warnings.warn(f"{reason}: the resume is not exact (its random draws, e.g. augmentation, dropout, "
                  "GradDrop, differ from those of an uninterrupted run)", InexactResumeWarning, stacklevel=3)
