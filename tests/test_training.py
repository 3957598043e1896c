"""End to end on the tiny world: losses fall, metrics are present, resume is exact, errors are clear."""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from perception_mtl.engine.checkpoint import load_checkpoint
from perception_mtl.engine.nonfinite import NonFiniteLossError
from perception_mtl.engine.trainer import Trainer
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.depth import METRICS as DEPTH_METRICS

from helpers import TINY_TRAIN, tiny_config

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = ["det/mAP", "det/mAP50", "seg/mIoU", "seg/pixel_acc"] + [f"depth/{m}" for m in DEPTH_METRICS]


@pytest.fixture(scope="module")
def short_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(tiny_config(tiny_world, out, "train.steps=40", "train.eval_every=40"))
    metrics = trainer.fit()
    return out, metrics


def test_each_task_loss_falls_and_every_metric_is_finite(short_run):
    out, metrics = short_run
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for task in ("det", "seg", "depth"):
        losses = [r[f"train/loss/{task}"] for r in rows]
        assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, (task, losses[:5], losses[-5:])
    assert set(METRIC_KEYS) <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in METRIC_KEYS)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 40 and f"val/{METRIC_KEYS[2]}" in evals[-1]
    for name in ("config.yaml", "last.pt", "best.pt", "curves_train.png", "curves_val.png"):
        assert (out / name).exists(), name


def _train_cmd(world: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / "train.py"), *TINY_TRAIN, f"data.root={world}",
            f"output_dir={out}", "train.steps=10", "train.checkpoint_every=2", *extra]


@pytest.fixture(scope="module")
def straight_run(tiny_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    subprocess.run(_train_cmd(tiny_world, out), check=True, env={**os.environ, "WANDB_MODE": "disabled"},
                   capture_output=True)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_then_resume_gives_the_same_weights(tiny_world, tmp_path, straight_run, seed):
    """SIGKILL at a seeded random step, at a random moment in it (mid-step or mid-save)."""
    rng = random.Random(seed)
    kill_after, delay = rng.randint(1, 6), rng.uniform(0.0, 0.2)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(_train_cmd(tiny_world, tmp_path / "killed", "train.checkpoint_every=1"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (last.exists() and load_checkpoint(last)["step"] >= kill_after):
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(last)["step"]
    assert kill_after <= killed_at < 10
    subprocess.run(_train_cmd(tiny_world, tmp_path / "killed", "--resume"), check=True, env=env, capture_output=True)
    a, b = load_checkpoint(straight_run / "last.pt"), load_checkpoint(last)
    assert a["step"] == b["step"] == 10
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_nonfinite_loss_is_named_or_skipped(tiny_world, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=2"))
    monkeypatch.setattr(trainer.tasks["depth"], "loss", lambda head, out, batch: {"silog": torch.tensor(float("nan"))})
    with pytest.raises(NonFiniteLossError, match=r"\['depth'\] at step 1"):
        trainer.fit()
    skipper = Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=2", "train.nonfinite=skip"))
    monkeypatch.setattr(skipper.tasks["depth"], "loss", lambda head, out, batch: {"silog": torch.tensor(float("inf"))})
    before = [p.clone() for p in skipper.model.parameters()]
    skipper.fit()
    assert skipper.skipped == 2
    assert all(torch.equal(p, q) for p, q in zip(before, skipper.model.parameters()))


@pytest.mark.parametrize("override, expected", [
    ("train.stepz=3", "unknown key 'train.stepz'"),
    ("balancer.name=nope", "balancer.name='nope' is not valid; choose from"),
    ("train.steps=abc", "train.steps must be int, got 'abc'"),
    ("model.backbone=resnet_nope", "is not a timm model"),
    ("tasks=[det,flow]", f"tasks='flow' is not valid; choose from {sorted(TASKS.names())}"),
])
def test_bad_config_exits_2_before_any_work(override, expected):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), override, "data.root=/nonexistent"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert expected in proc.stderr, proc.stderr


def test_missing_dataset_exits_2_with_the_make_command(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), f"data.root={tmp_path}/none",
                           "model.backbone=test_resnet", "model.weights=null", "wandb.mode=disabled", f"output_dir={tmp_path}/o"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "tools/make_synthetic.py" in proc.stderr
