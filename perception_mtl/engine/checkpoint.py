"""Atomic checkpoints (a temporary file in the same folder, fsync, then a rename) and their reading,
with errors that say what is wrong with the file and what to do."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from perception_mtl.core.atomic import atomic_write
from perception_mtl.core.errors import CheckpointError, writing


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` so that `path` is always either the old or the new complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(f"checkpoint {path}", path.parent, f"the previous {path.name} (if any) is intact: "):
        atomic_write(path, lambda f: torch.save(state, f))  # on failure the previous file is untouched


def _reason(path: Path, err: Exception) -> str:
    """Why torch.load failed, in one line: the exception's first sentence (torch's zip reader
    appends a paragraph of advice), its type when it has no message, and the file's size."""
    first = str(err).strip().split("\n")[0].split(". ")[0].strip()
    return f"{type(err).__name__}{': ' + first if first else ''}; the file has {path.stat().st_size} bytes"


def load_checkpoint(path: str | Path, advice: str = "rerun the training that writes it") -> dict:
    """The state dict saved by `save_checkpoint`; a CheckpointError naming the file, the reason
    and `advice` (what the caller's user should do) when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; {advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch.load's ways to fail: zip, unpickling, EOF errors
        raise CheckpointError(f"checkpoint {path} is unreadable ({_reason(path, err)});\n{advice}") from err


def saved_config(state: dict):
    """The checkpoint's config for evaluating or predicting here: `train.device` back to auto (a
    saved cuda:3 names a GPU of the host that trained, which this one may not have; key=value
    overrides such as train.device=cpu still go over it)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(state["config"])
    cfg.train.device = "auto"
    return cfg


def check_entries(path: str | Path, state: object, entries: dict[str, type | tuple[type, ...]], advice: str) -> None:
    """A CheckpointError naming `path`, what is missing or of another type and `advice`, unless
    `state` is a dict holding each of `entries` with its type."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a perception_mtl checkpoint (it holds a {type(state).__name__}); "
                              f"{advice}")
    missing = [key for key in entries if key not in state]
    wrong = [f"{key} is {type(state[key]).__name__}, not {' or '.join(k.__name__ for k in kinds)}"
             for key, kind in entries.items() if key in state
             and not isinstance(state[key], kinds := kind if isinstance(kind, tuple) else (kind,))]
    if missing or wrong:
        found = ", ".join(([f"it has no {', '.join(missing)}"] if missing else []) + wrong)
        raise CheckpointError(f"{path} is not a perception_mtl checkpoint ({found}); {advice}")


@contextlib.contextmanager
def restoring(path: str | Path, advice: str) -> Iterator[None]:
    """Around loading `path`'s entries into the objects they restore: a failure (a state dict of
    another model, optimizer or balancer; entries of another shape or type) becomes a
    CheckpointError naming the file, torch's or Python's reason in one line, and `advice`."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{path} does not fit this run ({type(err).__name__}: {reason});\n{advice}") from err
