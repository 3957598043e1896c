"""A benchmark's leaderboard as a W&B Table, logged to the results folder's one leaderboard run.

The run's id, its last step and a digest of what it logged live in
`<results>/wandb/leaderboard_run.json`, so that rebuilding the leaderboard never opens another W&B
run: the same table in the same mode logs nothing, a new table continues the run at its next step.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from perception_mtl.core.atomic import atomic_write_text
from perception_mtl.core.config import WandbConfig
from perception_mtl.tracking.wandb import WandbLogger, resolve_mode


def log_wandb_table(results_dir: Path, columns: list[str], data: list[list], spec: dict,
                    mode: str | None = None) -> bool:
    """Log `columns` and `data` (one list per row) as a W&B Table in the leaderboard run of
    `results_dir`, in the group of the suite `spec` and in its W&B project and entity; True when
    logged. The mode is `mode`, else WANDB_MODE, else the suite's `wandb.mode`, else
    `resolve_mode`'s default. Any W&B failure is a warning (WandbLogger switches itself off), never
    an exception."""
    suite_wandb = spec.get("wandb") or {}
    mode = resolve_mode(mode, suite_wandb.get("mode"))
    if mode == "disabled":
        return False
    record = results_dir / "wandb" / "leaderboard_run.json"
    last = json.loads(record.read_text()) if record.exists() else {}
    digest = hashlib.sha256(json.dumps([mode, columns, data], default=str).encode()).hexdigest()
    if last.get("digest") == digest:
        return False
    cfg = WandbConfig(mode=mode, group=spec.get("name", results_dir.name), tags=["leaderboard"],
                      **{k: suite_wandb[k] for k in ("project", "entity") if suite_wandb.get(k)})
    logger = WandbLogger(cfg, str(results_dir), config={"results_dir": str(results_dir), "job": "leaderboard"},
                         resume_id=last.get("id"))
    if logger.run is None:
        return False
    try:
        table = logger.wandb.Table(columns=columns, data=data)
    except Exception as err:  # noqa: BLE001 (W&B must never stop the analysis)
        warnings.warn(f"W&B leaderboard table not built ({type(err).__name__}: {err})")
        logger.finish()
        return False
    step = last.get("step", -1) + 1
    logger.log({"leaderboard": table}, step=step)
    logged = logger.run is not None
    logger.finish()
    if logged:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps({"id": logger.run_id, "step": step, "digest": digest}))
    return logged
