"""The runs of a suite without a result yet: still to run, or failed every attempt.

Reads `manifest.json` (every run of the suite, written by the launcher, `benchmark/launch/dispatch.py`)
and each run folder's result.json and failed.json (run, seed, attempts, error, log).
"""
from __future__ import annotations

import json
from pathlib import Path


def missing_notes(results_dir: str | Path) -> list[str]:
    """Notes naming the suite's runs that have no result.json: the failed ones with their error and
    log, the others as not finished; [] when all are there or the folder has no manifest.json."""
    results_dir = Path(results_dir)
    manifest = results_dir / "manifest.json"
    if not manifest.exists():
        return []
    runs = json.loads(manifest.read_text())["runs"]
    failed, unfinished = [], []
    for run in runs:
        folder = results_dir / run["folder"]
        if (folder / "result.json").exists():
            continue
        if (folder / "failed.json").exists():
            info = json.loads((folder / "failed.json").read_text())
            failed.append(f"{run['run']} seed {run['seed']} (after {info['attempts']} attempt(s): {info['error']}; "
                          f"log {info['log']})")
        else:
            unfinished.append(f"{run['run']} seed {run['seed']}")
    notes = []
    if failed:
        notes.append(f"**FAILED** ({len(failed)} of {len(runs)} runs, left out of every row): {'; '.join(failed)}")
    if unfinished:
        notes.append(f"**not finished** ({len(unfinished)} of {len(runs)} runs, left out of every row): "
                     f"{', '.join(unfinished)}; rerun the suite to finish them")
    return notes
