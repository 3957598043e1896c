"""The per-seed data behind a leaderboard, in long format (`per_seed.csv`), so that anyone can redo
its statistics: one line per run, seed and reported metric, with the run's per-task Δm at that
seed and its difference to the reference run at the same seed (blank where undefined)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

COLUMNS = ("run", "kind", "seed", "metric", "value", "delta_m", "delta_m_minus_reference", "config_digest",
           "clipped_steps", "steps")


def per_seed_rows(records: list[dict], rows: list[dict]) -> list[list]:
    """The long-format lines of `records` (as reported), Δm from the leaderboard `rows`."""
    by_label = {row["run"]: row for row in rows}
    reference = next((row for row in rows if row.get("reference")), None)
    lines = []
    for record in sorted(records, key=lambda r: (r["run"], r["seed"])):
        row = by_label.get(record["run"], {})
        seed = record["seed"]
        delta = row.get("delta_m_seeds", {}).get(seed, math.nan)
        ref = reference["delta_m_seeds"].get(seed, math.nan) if reference else math.nan
        versus = delta - ref if row is not reference else 0.0
        for metric, value in sorted(record["metrics"].items()):
            lines.append([record["run"], record["kind"], seed, metric, value, _blank(delta), _blank(versus),
                          record.get("config_digest", ""), record.get("clipped_steps", ""), record["steps"]])
    return lines


def _blank(value: float) -> float | str:
    return "" if math.isnan(value) else value


def write_per_seed(records: list[dict], rows: list[dict], path: Path) -> Path:
    """Write per_seed.csv; returns its path."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(per_seed_rows(records, rows))
    return path
