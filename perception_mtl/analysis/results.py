"""Read a benchmark results folder: one record per finished run (`runs/<run>/seed<k>/result.json`).

A record is the result.json dict: run, kind ("mtl" | "stl" | "pair" | "tune"), method, seed, tasks, metrics
{"<task>/<metric>": value} (on val, at the end of training), directions {"<task>/<metric>":
higher is better}, params, train_time_s, latency_ms, steps; with the suite's `test`, also test
{split, limit, checkpoint, step, frames, metrics}: the selected checkpoint on the held-out split;
and dir, the run folder it was read from.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from perception_mtl.core.errors import ResultsError
from perception_mtl.core.metric_key import MetricKey

FIELDS = ("run", "kind", "method", "seed", "tasks", "metrics", "directions", "params", "train_time_s",
          "latency_ms", "steps")


def load_results(results_dir: str | Path) -> list[dict]:
    """Every finished run's record, sorted by run and seed; [] when there is none."""
    records = []
    for path in sorted(Path(results_dir).glob("runs/*/seed*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultsError(f"{path} is not readable JSON ({err}); delete it and re-run the suite "
                               "to redo that run") from err
        if not isinstance(record, dict):
            raise ResultsError(f"{path} holds a {type(record).__name__}, not a result object")
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise ResultsError(f"{path} lacks {missing}; delete it and re-run the suite to redo that run")
        records.append({**record, "dir": str(path.parent)})
    return sorted(records, key=lambda r: (r["run"], r["seed"]))


def suite_spec(results_dir: str | Path) -> dict:
    """The suite copied into the results folder (`suite.yaml`), or {} when absent."""
    path = Path(results_dir) / "suite.yaml"
    if not path.exists():
        return {}
    try:
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OSError, OmegaConfBaseException, ValueError) as err:
        raise ResultsError(f"{path} is not readable YAML ({err})") from err
    return spec if isinstance(spec, dict) else {}


def delta_metrics(spec: dict, records: list[dict]) -> dict[str, list[str]]:
    """{task: [metric, ...]} entering delta-m: the suite's `delta_metrics`, else every metric seen."""
    if spec.get("delta_metrics"):
        return {task: list(names) for task, names in spec["delta_metrics"].items()}
    chosen: dict[str, list[str]] = {}
    for record in records:
        for key in record["metrics"]:
            k = MetricKey.parse(key)
            if k.qualified_metric not in chosen.setdefault(k.task, []):
                chosen[k.task].append(k.qualified_metric)
    return chosen

