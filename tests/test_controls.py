"""Planted known answers: train.loss_scale, the expectation checks on results whose answer is
known, and the controls suite end to end at smoke size (plumbing only)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from helpers import tiny_config
from perception_mtl.analysis.controls import check, welch_noninferior, write_controls
from perception_mtl.benchmark.suite import Suite
from perception_mtl.core.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_loss_scale_multiplies_the_tasks_loss_before_the_balancer(tiny_world, tmp_path):
    from perception_mtl.data.collate import collate
    from perception_mtl.engine.trainer import Trainer

    trainer = Trainer(tiny_config(tiny_world, tmp_path, "tasks=[seg,depth]", "train.steps=1"))
    batch = collate([trainer.train_set[i] for i in range(2)])
    with torch.no_grad():
        plain = trainer.losses(batch)
        trainer.cfg.train.loss_scale = {"depth": 100.0}
        scaled = trainer.losses(batch)
    assert torch.allclose(scaled["depth"], 100 * plain["depth"]) and torch.equal(scaled["seg"], plain["seg"])


@pytest.mark.parametrize("scale, why", [("{nope: 2}", "train.loss_scale='nope' is not valid; choose from"),
                                        ("{seg: 0}", "train.loss_scale.seg=0.0 must be > 0")])
def test_a_bad_loss_scale_is_named(tiny_world, tmp_path, scale, why):
    with pytest.raises(ConfigError, match=why):
        tiny_config(tiny_world, tmp_path, f"train.loss_scale={scale}")


UP = {"seg/mIoU": True, "depth/abs_rel": False, "noise/mse": False}
JITTER = (-0.004, 0.0, 0.005)


def _write(root: Path, run: str, kind: str, tasks: list[str], seed: int, metrics: dict) -> None:
    record = {"run": run, "kind": kind, "method": "equal", "seed": seed, "tasks": tasks, "metrics": metrics,
              "directions": {k: UP[k] for k in metrics}, "params": 1, "train_time_s": 1.0, "latency_ms": 1.0,
              "steps": 1}
    folder = root / "runs" / run / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(record))


def test_expectations_pass_and_fail_where_the_answer_is_planted(tmp_path):
    """x beats equal by ~8 Δm points at every seed, y only by chance, z loses by ~8; noise costs seg
    20%, depth costs it nothing. y reads UNDECIDED, not FAIL: no evidence either way; so does
    'depth harms seg', whose 3 seeds cannot show the change below +2% after Holm."""
    (tmp_path / "suite.yaml").write_text("name: k\ntasks: [seg, depth, noise]\npairs: true\n"
                                         "delta_metrics: {seg: [mIoU], depth: [abs_rel]}\n")
    both = ["seg", "depth"]
    for seed, j in enumerate(JITTER):
        _write(tmp_path, "stl-seg", "stl", ["seg"], seed, {"seg/mIoU": 0.50 + j})
        _write(tmp_path, "stl-depth", "stl", ["depth"], seed, {"depth/abs_rel": 0.20 + j / 10})
        _write(tmp_path, "stl-noise", "stl", ["noise"], seed, {"noise/mse": 1.0 + j})
        _write(tmp_path, "equal", "mtl", both, seed, {"seg/mIoU": 0.40 + j, "depth/abs_rel": 0.20})
        _write(tmp_path, "x", "mtl", both, seed, {"seg/mIoU": 0.48 + j + j / 3, "depth/abs_rel": 0.20})
        _write(tmp_path, "y", "mtl", both, seed, {"seg/mIoU": 0.40 + (0.02, -0.03, 0.01)[seed], "depth/abs_rel": 0.20})
        _write(tmp_path, "z", "mtl", both, seed, {"seg/mIoU": 0.32 + j + j / 4, "depth/abs_rel": 0.20})
        _write(tmp_path, "pair-seg+noise", "pair", ["seg", "noise"], seed, {"seg/mIoU": 0.40 + j, "noise/mse": 1.0})
        _write(tmp_path, "pair-seg+depth", "pair", both, seed, {"seg/mIoU": 0.50 - j, "depth/abs_rel": 0.20})
    expect = [{"better_than_equal": ["x", "y", "z"]}, {"harms": {"noise": ["seg"], "depth": ["seg"]}},
              {"harmless": {"depth": ["seg"]}}]
    _, verdicts = check(tmp_path, expect)
    assert [v.outcome for v in verdicts] == ["PASS", "UNDECIDED", "FAIL", "PASS", "UNDECIDED", "PASS"]
    x = verdicts[0]
    assert x.p_holm == pytest.approx(3 * x.p) and "Δm(x) − Δm(equal) = -8.0" in x.effect  # Holm over x, y, z
    path = write_controls(tmp_path, [("planted", tmp_path, "a test", expect)])
    text = path.read_text()
    assert "**3 of 6 expectations pass, 1 fail, 2 undecided.**" in text
    assert "| x beats equal (Δm, paired by seed) |" in text
    assert "| noise harms seg (pairwise) | seg with noise vs alone: +19.99% (+ = worse, 3 seeds)" in text


def test_noninferiority_holds_its_error_rate_at_the_margin_and_passes_a_task_that_helps():
    """`harmless` (non-inferiority, Welch, 6 seeds a side, seed std 1.5%): on data whose true harm is
    exactly the margin, "not harmful" is claimed in at most α of 2,000 simulated controls (plus 3
    Monte Carlo SE); a partner that helps by the margin passes in most of them, where TOST, which
    also forbids helping, would pass it in at most α."""
    rng, margin, n, sims, alpha = np.random.default_rng(0), 2.0, 6, 2000, 0.05

    def passes(true_change: float) -> float:
        ps = [welch_noninferior(list(rng.normal(true_change, 1.5, n)), list(rng.normal(0.0, 1.5, n)), margin)
              for _ in range(sims)]
        return float(np.mean(np.array(ps) < alpha))

    at_margin = passes(margin)
    assert at_margin <= alpha + 3 * (alpha * (1 - alpha) / sims) ** 0.5, at_margin
    assert at_margin > 0.03, at_margin  # the level is used, not wasted
    assert passes(-margin) > 0.9
    assert math.isnan(welch_noninferior([1.0], [0.0, 1.0], margin))


def test_expectations_are_checked_when_the_suite_loads(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks: [seg, depth]\nseeds: [0]\nmethods: [equal]\n"
                     "expect: [{better_than_equal: [famo]}]\n")
    with pytest.raises(ConfigError, match="unknown: \\['famo'\\]"):
        Suite.load(suite)
    suite.write_text("name: s\ntasks: [seg, depth, noise]\nseeds: [0]\nmethods: [equal]\n"
                     "expect: [{harms: {noise: [seg]}}]\n")
    with pytest.raises(ConfigError, match="needs pairs: true"):
        Suite.load(suite)
    suite.write_text("name: s\nseeds: [0]\nexperiments: {a: {tasks: [seg], methods: [equal], steps: 3}}\n")
    with pytest.raises(ConfigError, match=r"experiment 'a' has unknown key\(s\) \['steps'\]"):
        Suite.load(suite)


def _checks(expect: list[dict]) -> int:
    """How many verdict lines a list of expectations gives: one per method or (partner, task)."""
    return sum(len(v) if isinstance(v, list) else sum(len(tasks) for tasks in v.values())
               for item in expect for v in item.values())


def test_the_controls_suite_runs_end_to_end_at_smoke_size(tmp_path):
    """configs/benchmark/controls.yaml on a tiny world with test_resnet, 2 steps, 2 seeds and two
    methods per better_than_equal experiment: every experiment's files and a verdict line per
    expectation."""
    from perception_mtl.benchmark.runner import run_suite

    spec = OmegaConf.to_container(OmegaConf.load(ROOT / "configs/benchmark/controls.yaml"))
    spec["world"] = {"train": 8, "val": 4, "test": 4, "height": 64, "width": 128, "seed": 5}
    spec["config"].update({"data.root": str(tmp_path / "world"), "data.workers": 0, "data.val_limit": None,
                           "model.backbone": "test_resnet", "model.weights": None, "train.steps": 2,
                           "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 2,
                           "optim.warmup_steps": 1, "task.det.topk_candidates": 200})
    spec.update(seeds=[0, 1], test={"split": "test"}, wandb={"mode": "disabled"})
    for experiment in spec["experiments"].values():  # the plumbing needs equal and one method, not all
        if any("better_than_equal" in item for item in experiment["expect"]):
            experiment.update(methods=["equal", "imtl_g"], expect=[{"better_than_equal": ["imtl_g"]}])
    path = tmp_path / "controls.yaml"
    OmegaConf.save(OmegaConf.create(spec), path)
    out = run_suite(Suite.load(path), tmp_path / "out")
    text = (out / "controls.md").read_text()
    for name, experiment in spec["experiments"].items():
        assert (out / name / "leaderboard.md").exists() and (out / name / "transfer_report.md").exists()
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        verdicts = [line for line in section.splitlines() if line.endswith(("**PASS** |", "**FAIL** |", "**UNDECIDED** |", "**n/a** |"))]
        assert len(verdicts) == _checks(experiment["expect"]), name
        first = next(iter((out / name / "runs").glob("*/seed0/result.json")))
        assert json.loads(first.read_text())["test"]["frames"] == 4
    assert "expectations pass, " in text
