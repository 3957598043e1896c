"""The records of a results folder as every report sees them: each tuned group reduced to the grid
point kept on val (`tuning.py`), then the metrics of the split reported (held-out test when every
run has it, else val)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perception_mtl.analysis.results import delta_metrics, load_results, suite_spec
from perception_mtl.analysis.tuning import resolve_tuning


@dataclass
class Reported:
    records: list[dict]  # every kind but "tune"; `metrics` on `split`
    spec: dict  # the suite (suite.yaml of the folder), {} when absent
    chosen: dict[str, list[str]]  # the delta-m metrics per task
    split: str
    notes: list[str]


def reported(results_dir: str | Path) -> Reported:
    """Load `results_dir` (ResultsError names a corrupt file) and prepare its records."""
    records = load_results(results_dir)
    spec = suite_spec(results_dir)
    chosen = delta_metrics(spec, records)
    records, tuning_notes = resolve_tuning(records, chosen)  # on val, before the reported split
    records, split, split_notes = on_reported_split(records)
    return Reported(records, spec, chosen, split, split_notes + tuning_notes)


def on_reported_split(records: list[dict]) -> tuple[list[dict], str, list[str]]:
    """The records as the analysis reports them -> (records, split, notes). When every record was
    evaluated on the same held-out split, `metrics` become those (the val ones move to
    `val_metrics`); otherwise the val metrics stay, with a note when only some runs have test ones."""
    splits = {(r.get("test") or {}).get("split") for r in records}
    if len(splits) == 1 and None not in splits:
        return [{**r, "metrics": r["test"]["metrics"], "val_metrics": r["metrics"]} for r in records], splits.pop(), []
    if splits == {None}:
        return records, "val", []
    lacking = sorted({r["run"] for r in records if not r.get("test")})
    return records, "val", [f"only some runs were evaluated on a held-out split ({sorted(splits - {None})}; none for "
                            f"{', '.join(lacking) or 'no run'}): every number here is on val. Rerun the suite to "
                            "evaluate the rest"]


def split_words(split: str) -> str:
    """How a report names the split its numbers come from."""
    if split == "val":
        return "metrics on the val split, the split that also selects the checkpoints"
    return f"metrics on the held-out {split} split; checkpoints selected on val"
