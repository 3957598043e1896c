"""Run folders never mix two runs: `tools/train.py` refuses an output_dir that already holds a run
unless told to continue it (--resume) or to replace it (--overwrite).

The benchmark runner does not call this: its runs always resume (`resume=true`) and a finished
run is skipped by its result.json.
"""
from __future__ import annotations

from pathlib import Path

from perception_mtl.core.config import ConfigError

MARKS = ("last.pt", "best.pt", "train.jsonl", "metrics.jsonl")  # a folder with any of these holds a run
RUN_FILES = (*MARKS, "config.yaml", "metrics.json")  # what --overwrite removes, with the globs below
RUN_GLOBS = ("curves_*.png", "eval_*.json", ".*.pt.*.tmp")


class RunFolderError(ConfigError):
    """output_dir already holds a run and the command said neither --resume nor --overwrite."""


def claim_run_folder(output_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Check that a run may write into `output_dir`; with `overwrite`, first delete the files of the
    run already there (RUN_FILES and RUN_GLOBS; other files and offline W&B runs under wandb/ stay).

    Every torchrun rank calls this before its trainer joins the process group, and the trainer
    writes into the folder only once every rank has joined, so the ranks cannot race."""
    folder = Path(output_dir)
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in output_dir and --overwrite replaces it: pass one")
    found = [name for name in MARKS if (folder / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise RunFolderError(f"{folder} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                             f"--overwrite to replace it, or output_dir=<another folder>")
    for path in [folder / name for name in RUN_FILES] + [p for g in RUN_GLOBS for p in folder.glob(g)]:
        path.unlink(missing_ok=True)
