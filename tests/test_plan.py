"""Plans that depend on results (benchmark/plan.py), run end to end through the runner with a planted
training function: sequential seeds stop decided methods early and grow undecided ones to `max`;
`tune_seeds` tunes every method on its first seeds and runs only the kept point at the others."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from perception_mtl.benchmark.launch import job as job_module
from perception_mtl.benchmark.record import write_record
from perception_mtl.benchmark.runner import run_suite
from perception_mtl.benchmark.suite import Suite

OFFSET = {"equal": 0.0, "uncertainty": 0.05, "upgrad": 0.0, "rlw": 0.0}  # planted mIoU gain over equal
NOISE = {"equal": 0.0, "uncertainty": 0.001, "upgrad": 0.0005, "rlw": 0.03}  # method-own noise per seed


def planted(suite, run, results_dir: Path) -> dict:
    """A run's result.json without training: seg mIoU 0.5 x (1 + a seed effect shared by every run of
    that seed) + the method's planted gain and noise (val prefers optim.lr=0.002); depth fixed."""
    shared = np.random.default_rng(run.seed).normal(0, 0.04)
    own = np.random.default_rng([run.seed, len(run.method), len(run.label)]).normal(0, NOISE.get(run.method, 0))
    lr = next((float(o.split("=")[1]) for o in run.overrides if o.startswith("optim.lr=")), 0.002)
    gain = 0.0 if run.kind == "stl" else OFFSET[run.method] + own - 0.02 * (lr != 0.002)
    metrics = {"seg/mIoU": 0.5 * (1 + shared) + gain, "depth/abs_rel": 0.2}
    record = {"run": run.label, "kind": run.kind, "method": run.method, "seed": run.seed, "tasks": run.tasks,
              "metrics": {k: v for k, v in metrics.items() if k.split("/")[0] in run.tasks},
              "directions": {"seg/mIoU": True, "depth/abs_rel": False}, "params": 1, "train_time_s": 1.0,
              "latency_ms": 1.0, "steps": 10, "sweep": run.sweep, **({"tune": run.tune} if run.tune else {}),
              "config_digest": f"{run.label}:{run.overrides}"}
    out = results_dir / run.folder
    out.mkdir(parents=True, exist_ok=True)
    write_record(out, record)
    return record


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(job_module, "train_run", planted)


def _suite(tmp_path: Path, seeds: str, methods: str, extra: str = "") -> Suite:
    path = tmp_path / "plan.yaml"
    path.write_text(f"""name: plan
config: {{model.backbone: test_resnet, model.weights: null}}
wandb: {{mode: disabled}}
tasks: [seg, depth]
seeds: {seeds}
methods: {methods}
delta_metrics: {{seg: [mIoU], depth: [abs_rel]}}
{extra}""")
    return Suite.load(path)


def _seeds(out: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for p in sorted(out.glob("runs/*/seed*/result.json")):
        found.setdefault(p.parent.parent.name, []).append(int(p.parent.name[4:]))
    return {k: sorted(v) for k, v in found.items()}


def test_sequential_seeds_stop_decided_methods_and_grow_undecided_ones(fake_training, tmp_path):
    suite = _suite(tmp_path, "{min: 3, max: 6, margin: 2}", "[equal, uncertainty, upgrad, rlw]")
    out = run_suite(suite, tmp_path / "out", ["launcher.backend=sequential"])
    seeds = _seeds(out)
    assert seeds["uncertainty"] == [0, 1, 2]  # 5 Δm points better at every seed: decided at the first look
    assert seeds["upgrad"] == [0, 1, 2]  # within ±2 of equal at every seed: equivalent at the first look
    assert seeds["rlw"] == list(range(6))  # noise of about ±3 Δm points: undecided up to max
    assert seeds["equal"] == seeds["stl-seg"] == seeds["stl-depth"] == list(range(6))
    rows = {r["run"]: r for r in csv.DictReader((out / "leaderboard.csv").open())}
    assert rows["uncertainty"]["verdict"].startswith("better")
    assert rows["upgrad"]["verdict"].startswith("equivalent")
    assert rows["rlw"]["verdict"].startswith("undecided")
    manifest = json.loads((out / "manifest.json").read_text())["runs"]
    assert len(manifest) == 2 * 3 + 4 * 6  # the runs the plan wanted, not every possible one (6 x 6)
    assert "power: pooled paired std" in (out / "leaderboard.md").read_text()


def test_every_method_gets_the_same_grid_on_its_first_seed_and_the_kept_point_runs_on(fake_training, tmp_path):
    suite = _suite(tmp_path, "[0, 1, 2]", "[equal, uncertainty]",
                   "tune: {optim.lr: [0.001, 0.002, 0.004]}\ntune_seeds: 1\n")
    out = run_suite(suite, tmp_path / "out", ["launcher.backend=sequential"])
    seeds = _seeds(out)
    for method in ("equal", "uncertainty"):
        assert seeds[f"{method}:optim.lr=0.001"] == seeds[f"{method}:optim.lr=0.004"] == [0]
        assert seeds[f"{method}:optim.lr=0.002"] == [0, 1, 2]  # kept on val, then run at every seed
    rows = {r["run"]: r for r in csv.DictReader((out / "leaderboard.csv").open())}
    assert rows["equal"]["tuned"] == rows["uncertainty"]["tuned"] == "optim.lr x3 at 1 seed(s)"
    assert rows["equal"]["chosen"] == rows["uncertainty"]["chosen"] == "optim.lr=0.002"
    assert rows["equal"]["seeds"] == "3" and not math.isnan(float(rows["uncertainty"]["delta_m_vs_equal_mean"]))
