"""How each sample key holding a label is batched and dropped, and which extra label folders a
Cityscapes-layout root may carry: the data layer's view of the tasks' declarations.

Tasks declare these facts on their class (`Task.targets`, `Task.files`); registering a task
publishes them here, so collate, partial labels and loaders read them without importing tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class Target:
    """One sample key. `fill` set: stacked into (B, *shape), samples without it get `fill`;
    `fill` None: kept as a list of (N_i, *item_shape) tensors, samples without it get N_i = 0."""

    dtype: torch.dtype
    fill: float | None = None
    item_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class LabelFiles:
    """An extra Cityscapes-style label folder: `{folder}/{split}/{city}/{stem}{suffix}`, read into
    sample[key] by `read(path, (H, W))` -> tensor (a tv_tensor, so transforms move it with the image)."""

    folder: str
    suffix: str
    key: str
    read: Callable[[Path, tuple[int, int]], torch.Tensor]


TARGETS: dict[str, Target] = {}        # sample key -> Target
TASK_TARGETS: dict[str, tuple[str, ...]] = {}  # task -> the sample keys holding its labels
LABEL_FILES: dict[str, LabelFiles] = {}        # task -> its extra label folder
READS: dict[str, str] = {}  # task -> the task whose labels a loader loads for it (data/derived.py)


def publish(task: str, targets: dict[str, Target], files: LabelFiles | None, reads: str | None = None) -> None:
    """Record task `task`'s targets (a key two tasks share must be declared alike), files and
    the task whose labels it reads."""
    for key, target in targets.items():
        if TARGETS.setdefault(key, target) != target:
            raise ValueError(f"task '{task}' declares sample key '{key}' as {target}, "
                             f"another task as {TARGETS[key]}")
    TASK_TARGETS[task] = tuple(targets)
    if files is not None:
        LABEL_FILES[task] = files
    if reads is not None:
        READS[task] = reads


def target(key: str) -> Target:
    """The declaration of sample key `key`; a key no registered task declares is an error."""
    if key not in TARGETS:
        raise KeyError(f"sample key '{key}' is not declared by any registered task (Task.targets); "
                       f"declared: {', '.join(sorted(TARGETS))}")
    return TARGETS[key]


def empty_like(present: torch.Tensor | np.ndarray, key: str) -> torch.Tensor:
    """The value of `key` for a sample without it, shaped like a sample `present` that has it."""
    t = target(key)
    if t.fill is None:
        return torch.zeros((0, *t.item_shape), dtype=t.dtype)
    return torch.full(tuple(torch.as_tensor(present).shape), t.fill, dtype=t.dtype)
