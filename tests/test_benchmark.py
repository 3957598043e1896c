"""The smoke suite end to end (CI's benchmark), resume-by-skipping, and the transfer analysis."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_mtl.analysis.frame_bootstrap import by_class, map50
from perception_mtl.analysis.transfer import transfer_tests, write_transfer_report
from perception_mtl.benchmark.suite import Suite
from perception_mtl.core.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    env = {**ENV, "WANDB_DIR": str(out), "WANDB_DATA_DIR": str(out), "WANDB_CACHE_DIR": str(out),
           "WANDB_CONFIG_DIR": str(out)}
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "--suite", str(ROOT / "configs/benchmark/smoke.yaml"),
           "--out", str(out)]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return out, first.stdout, again.stdout


def test_smoke_suite_writes_a_leaderboard_with_numbers(smoke):
    out, stdout, _ = smoke
    assert len(list(out.glob("runs/*/seed*/result.json"))) == 2 * (3 + 4 + 2)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "transfer_report.md"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    equal = next(r for r in rows if r["run"] == "equal")
    assert float(equal["seg/mIoU_mean"]) > 0 and equal["delta_m_per_task_mean"] != ""
    tuned = next(r for r in rows if r["run"] == "equal-tuned")
    assert tuned["tuned"] == "optim.lr x2" and tuned["chosen"] in ("optim.lr=0.001", "optim.lr=0.004")
    assert tuned["delta_m_vs_equal_lo"] != "" and equal["variant"] == "as published"
    record = json.loads((out / "runs/equal/seed0/result.json").read_text())
    assert record["params"] > 0 and record["latency_ms"] > 0 and record["train_time_s"] > 0
    test = record["test"]  # the checkpoint selected on val, evaluated once on the 12 held-out frames
    assert (test["split"], test["checkpoint"], test["frames"], test["step"]) == ("test", "best.pt", 12, 24)
    assert set(test["metrics"]) == set(record["metrics"]) and test["metrics"] != record["metrics"]
    table = json.loads((out / "runs/equal/seed0/test_frames.json").read_text())["det"]  # per-frame det matches
    assert len(table["frames"]) == 12
    assert map50(by_class(table), np.ones(12, dtype=np.int64)) == pytest.approx(test["metrics"]["det/mAP50"], abs=3e-8)
    assert "det mAP50 noise of uncertainty (2 seeds, 200 frame resamples)" in (out / "leaderboard.md").read_text()
    stl_det = json.loads((out / "runs/stl-det/seed0/result.json").read_text())
    assert stl_det["test"]["checkpoint"] == "best.pt"  # selected on its own primary metric, det/mAP50 (was last.pt: no seg/mIoU)
    tested = [json.loads((out / f"runs/equal/seed{k}/result.json").read_text())["test"] for k in (0, 1)]
    assert float(equal["seg/mIoU_mean"]) == pytest.approx(statistics.fmean(t["metrics"]["seg/mIoU"] for t in tested))
    assert "metrics on the held-out test split; checkpoints selected on val" in (out / "leaderboard.md").read_text()
    report = (out / "transfer_report.md").read_text()
    assert "All numbers: metrics on the held-out test split" in report
    assert "## Verdicts" in report and "Lookahead affinity" in report
    assert (out / "affinity.png").exists() and (out / "conflict_heatmap.png").exists()


def test_rerunning_a_suite_skips_finished_runs(smoke):
    _, _, again = smoke
    lines = [line for line in again.splitlines() if line.startswith("[")]
    assert len(lines) == 18 and all("done, skipped" in line for line in lines)


def test_a_suite_without_its_test_split_names_the_command_that_renders_one(tiny_world, tmp_path):
    from perception_mtl.benchmark.runner import run_suite
    from perception_mtl.data.files import DatasetError

    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nconfig: {{data.root: {tiny_world}, model.backbone: test_resnet, model.weights: null}}\n"
                     "tasks: [seg]\nseeds: [0]\nmethods: [equal]\ntest: {split: test, limit: 5}\n")
    with pytest.raises(DatasetError, match=r"split 'test' is missing .*make_synthetic.py --out .* --test 500"):
        run_suite(Suite.load(suite), tmp_path / "out")
    assert not (tmp_path / "out" / "runs").exists()  # before any training


def test_a_world_folder_unlike_the_suites_world_is_an_error(tmp_path):
    from perception_mtl.benchmark.runner import ensure_world

    (tmp_path / "world.json").write_text(json.dumps({"train": 24, "val": 12, "height": 64, "width": 128}))
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nworld: {{train: 24, val: 12, test: 12, height: 64, width: 128}}\n"
                     f"config: {{data.root: {tmp_path}, model.backbone: test_resnet, model.weights: null}}\n"
                     "tasks: [seg]\nseeds: [0]\nmethods: [equal]\n")
    with pytest.raises(ConfigError, match="'test': 0.*'test': 12.*delete"):
        ensure_world(Suite.load(suite))


@pytest.mark.parametrize("test, why", [("{split: val}", "not held out"), ("{limit: 0}", "must be a frame count"),
                                       ("{splits: test}", "keys \\['limit', 'split'\\]")])
def test_a_bad_test_setting_is_named(tmp_path, test, why):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ntasks: [seg]\nseeds: [0]\nmethods: [equal]\ntest: {test}\n")
    with pytest.raises(ConfigError, match=why):
        Suite.load(suite)


def test_the_reports_use_test_metrics_only_when_every_run_has_them():
    from perception_mtl.analysis.reported import on_reported_split

    val, test = {"seg/mIoU": 0.5}, {"seg/mIoU": 0.4}
    both = [{"run": "a", "metrics": val, "test": {"split": "test", "metrics": test}},
            {"run": "b", "metrics": val, "test": {"split": "test", "metrics": test}}]
    records, split, notes = on_reported_split(both)
    assert split == "test" and records[0]["metrics"] == test and records[0]["val_metrics"] == val and not notes
    records, split, notes = on_reported_split([both[0], {"run": "b", "metrics": val}])
    assert split == "val" and records[0]["metrics"] == val and "none for b" in notes[0]


def test_a_bad_suite_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks: [det]\nseeds: [0]\nmethods: [nope]\n")
    with pytest.raises(ConfigError, match="balancer.name='nope' is not valid"):
        Suite.load(bad)
    bad.write_text("name: bad\ntasks: [det]\nseeds: [0]\nmethods: [equal]\nsteps: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['steps'\]"):
        Suite.load(bad)


def _record(run: str, kind: str, tasks: list[str], seed: int, metrics: dict) -> dict:
    directions = {"seg/mIoU": True, "depth/abs_rel": False, "noise/mse": False}
    return {"run": run, "kind": kind, "method": "equal", "seed": seed, "tasks": tasks, "metrics": metrics,
            "directions": {k: v for k, v in directions.items() if k in metrics}, "params": 1,
            "train_time_s": 1.0, "latency_ms": 1.0, "steps": 1}


def test_transfer_flags_the_unrelated_task_and_not_the_related_one(tmp_path):
    """seg with an unrelated partner (noise) drops beyond seed noise; seg with depth does not."""
    records = []
    for seed, jitter in enumerate((-0.004, 0.0, 0.005)):
        records += [_record("stl-seg", "stl", ["seg"], seed, {"seg/mIoU": 0.50 + jitter}),
                    _record("stl-depth", "stl", ["depth"], seed, {"depth/abs_rel": 0.20 + jitter / 10}),
                    _record("seg+depth", "mtl", ["seg", "depth"], seed,
                            {"seg/mIoU": 0.502 - jitter, "depth/abs_rel": 0.199 + jitter / 10}),
                    _record("seg+noise", "mtl", ["seg", "noise"], seed, {"seg/mIoU": 0.44 + jitter, "noise/mse": 1.0})]
    for r in records:
        folder = tmp_path / "runs" / r["run"] / f"seed{r['seed']}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(r))
    changes, _ = transfer_tests(records)
    flags = {(c["method"], c["task"]): c["negative"] for c in changes}
    assert flags == {("seg+depth", "seg"): False, ("seg+depth", "depth"): False, ("seg+noise", "seg"): True}
    noise = next(c for c in changes if c["method"] == "seg+noise")
    assert noise["p_holm"] == pytest.approx(3 * noise["p"])  # the smallest of 3 p-values, times 3
    report = write_transfer_report(tmp_path, "seg+noise").read_text()
    assert "| seg+noise | seg | seg/mIoU | +11.99 |" in report and "**yes**" in report  # + = worse
    assert "Holm's step-down correction over all 3 tests" in report
    assert "sharing costs seg more than seed noise (Welch, Holm-adjusted p < 0.05)" in report


def test_a_tuned_method_trains_one_run_per_grid_point_and_seed(tmp_path):
    suite = tmp_path / "t.yaml"
    suite.write_text("name: t\ntasks: [seg, depth]\nseeds: [0, 1]\nbaselines: false\nmethods: [equal, {name: equal, "
                     "tune: {optim.lr: [0.001, 0.004], optim.weight_decay: [0.0, 0.01]}}]\n")
    loaded = Suite.load(suite)
    grid = [r for r in loaded.runs() if r.kind == "tune"]
    assert len(grid) == 2 * 4 and grid[0].label == "equal-tuned:optim.lr=0.001,optim.weight_decay=0.0"
    assert grid[0].tune == {"row": "equal-tuned", "point": "optim.lr=0.001,optim.weight_decay=0.0",
                            "budget": "optim.lr, optim.weight_decay x4"}
    cfg = loaded.config(grid[3], tmp_path)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.balancer.name) == (0.004, 0.01, "equal")
    suite.write_text("name: t\ntasks: [seg]\nseeds: [0]\nmethods: [{name: equal, tune: {optim.lr: 0.001}}]\n")
    with pytest.raises(ConfigError, match="non-empty lists of values"):
        Suite.load(suite)


def test_pairs_add_one_equal_run_per_task_pair_and_need_three_tasks(tmp_path):
    suite = tmp_path / "pairs.yaml"
    suite.write_text("name: p\ntasks: [det, seg, depth]\nseeds: [0]\nmethods: [pcgrad]\npairs: true\n")
    runs = Suite.load(suite).runs()
    pairs = [r for r in runs if r.kind == "pair"]
    assert [(r.label, r.tasks) for r in pairs] == [("pair-det+seg", ["det", "seg"]), ("pair-det+depth", ["det", "depth"]),
                                                   ("pair-seg+depth", ["seg", "depth"])]
    assert all(Suite.load(suite).config(r, tmp_path).balancer.name == "equal" for r in pairs)
    suite.write_text("name: p\ntasks: [seg, depth]\nseeds: [0]\nmethods: [equal]\npairs: true\n")
    with pytest.raises(ConfigError, match="pairs needs 3 or more tasks"):
        Suite.load(suite)


def test_pairwise_matrix_reports_who_helps_whom_and_stays_off_the_leaderboard(tmp_path):
    """Standley-style pairs: noise hurts seg beyond seed noise, depth helps seg; pair runs are not ranked."""
    from perception_mtl.analysis.leaderboard import write_leaderboard

    records = []
    for seed, jitter in enumerate((-0.004, 0.0, 0.005)):
        records += [_record("stl-seg", "stl", ["seg"], seed, {"seg/mIoU": 0.50 + jitter}),
                    _record("stl-depth", "stl", ["depth"], seed, {"depth/abs_rel": 0.20 + jitter / 10}),
                    _record("stl-noise", "stl", ["noise"], seed, {"noise/mse": 1.0 + jitter}),
                    _record("equal", "mtl", ["seg", "depth", "noise"], seed,
                            {"seg/mIoU": 0.47 + jitter, "depth/abs_rel": 0.2, "noise/mse": 1.0}),
                    _record("pair-seg+depth", "pair", ["seg", "depth"], seed,
                            {"seg/mIoU": 0.55 + jitter, "depth/abs_rel": 0.19 + jitter / 10}),
                    _record("pair-seg+noise", "pair", ["seg", "noise"], seed,
                            {"seg/mIoU": 0.40 + jitter, "noise/mse": 1.0 + jitter}),
                    _record("pair-depth+noise", "pair", ["depth", "noise"], seed,
                            {"depth/abs_rel": 0.20 + jitter / 10, "noise/mse": 1.0 + jitter})]
    for r in records:
        folder = tmp_path / "runs" / r["run"] / f"seed{r['seed']}"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(r))
    (tmp_path / "suite.yaml").write_text("name: p\ntasks: [seg, depth, noise]\nseeds: [0, 1, 2]\nmethods: [equal]\n")
    report = write_transfer_report(tmp_path).read_text()
    assert "## Pairwise transfer (Standley et al. 2020)" in report and (tmp_path / "pairwise.png").exists()
    # positive = worse, the sign of delta-m
    assert "| seg |  | -5.00 | +0.00 |" in report  # with seg: depth's AbsRel 5% better, noise unchanged
    assert "| depth | -9.99 |  | +0.00 |" in report  # with depth: seg's mIoU 10% better (of the mean 0.5003)
    # with noise: seg 20% worse, beyond seed noise; depth unchanged (0 up to rounding, either sign)
    assert re.search(r"\| noise \| \*\*\+19\.99\*\* \| [+-]0\.00 \|  \|", report), report
    assert "trained as a pair, seg changes -10.0% and depth -5.0% against training alone (+ = worse)" in report
    board = write_leaderboard(tmp_path, wandb_mode="disabled")["md"].read_text()
    assert "| equal |" in board and "pair-" not in board


@pytest.mark.parametrize("balancer", [[], ["balancer.name=mgda", "balancer.params.space=representation"]],
                         ids=["static", "mgda-representation"])
def test_affinity_measurement_leaves_training_unchanged(tiny_world, tmp_path, balancer):
    """TAG's lookahead steps and restores: weights after 3 steps equal those without it, also for a
    balancer that works on the step's features (the lookahead's forwards do not replace them)."""
    from perception_mtl.engine.trainer import Trainer
    from helpers import tiny_config

    plain = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=3", *balancer))
    plain.fit()
    probed = Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=3", "train.affinity_every=1", *balancer))
    probed.fit()
    for a, b in zip(plain.model.state_dict().values(), probed.model.state_dict().values()):
        assert torch.equal(a, b)
    rows = [json.loads(line) for line in (tmp_path / "b" / "train.jsonl").read_text().splitlines()]
    assert {"train/affinity/det->seg", "train/affinity/seg->det", "train/affinity/depth->depth"} <= set(rows[0])


def test_the_unrelated_task_trains_beside_the_others(tiny_world, tmp_path):
    from perception_mtl.engine.trainer import Trainer
    from perception_mtl.tasks.noise import noise_target
    from helpers import tiny_config

    assert torch.equal(noise_target(["a_1_2"]), noise_target(["a_1_2"]))
    assert not torch.equal(noise_target(["a_1_2"]), noise_target(["a_1_3"]))
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "tasks=[seg,noise]", "train.steps=2", "train.eval_every=2"))
    metrics = trainer.fit()
    assert math.isfinite(metrics["noise/mse"]) and "seg/mIoU" in metrics
