"""The always-on local record: JSONL of training scalars and of evaluations, plus plots."""
from __future__ import annotations

import json
from pathlib import Path

from perception_mtl.core.errors import writing


class LocalLogger:
    """`train.jsonl` (one line per logged step), `metrics.jsonl` (one line per evaluation)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        name = "metrics.jsonl" if any(k.startswith("val/") for k in metrics) else "train.jsonl"
        with writing(str(self.run_dir / name), self.run_dir, "last.pt is intact: "), \
                open(self.run_dir / name, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a resumed run logs them again) and lines cut short."""
        for name in ("train.jsonl", "metrics.jsonl"):
            path = self.run_dir / name
            if path.exists():
                lines = [ln for ln in path.read_text().splitlines()
                         if (logged := _step(ln)) is not None and logged <= step]
                path.write_text("".join(ln + "\n" for ln in lines))


def _step(line: str) -> int | None:
    """The step of a logged line; None for a line cut short (a full disk or a kill mid-write)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None
