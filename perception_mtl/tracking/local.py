"""The always-on local record: JSONL of training scalars and of evaluations, plus plots."""
from __future__ import annotations

import json
from pathlib import Path


class LocalLogger:
    """`train.jsonl` (one line per logged step), `metrics.jsonl` (one line per evaluation)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        name = "metrics.jsonl" if any(k.startswith("val/") for k in metrics) else "train.jsonl"
        with open(self.run_dir / name, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a resumed run logs them again)."""
        for name in ("train.jsonl", "metrics.jsonl"):
            path = self.run_dir / name
            if path.exists():
                lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
                path.write_text("".join(ln + "\n" for ln in lines))
