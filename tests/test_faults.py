"""Faults: a benchmark suite killed mid-way, W&B unreachable, disk full, a data worker dying,
NaN/Inf gradients. In each case the run goes on or stops with a message saying what to do, and
nothing already saved is lost or corrupted."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from perception_mtl.engine.checkpoint import load_checkpoint, save_checkpoint
from perception_mtl.engine.nonfinite import NonFiniteGradientError
from perception_mtl.engine.trainer import Trainer
from perception_mtl.tracking.plots import plot_run

from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _suite(tmp_path: Path, world: Path) -> Path:
    suite = tmp_path / "kill.yaml"
    suite.write_text(f"""name: kill
config: {{data.root: {world}, data.size: [64, 128], data.workers: 0, model.backbone: test_resnet, model.weights: null,
          train.steps: 12, train.batch_size: 2, train.log_every: 1, train.eval_every: 1000,
          train.checkpoint_every: 1, optim.warmup_steps: 2, task.det.topk_candidates: 200}}
wandb: {{mode: disabled}}
tasks: [seg, depth]
seeds: [0]
baselines: false
methods: [equal, uncertainty]
""")
    return suite


def test_a_killed_suite_redoes_only_the_unfinished_run(tiny_world, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "--suite", str(_suite(tmp_path, tiny_world)),
           "--out", str(out)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "runs/uncertainty/seed0/last.pt"
    log = out / "runs/uncertainty/seed0/train.jsonl"
    deadline = time.time() + 120
    # poll the cheap log (step 3 logged: step 2 checkpointed); loading last.pt in the loop let the run finish first
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["step"]
    assert 2 <= killed_at < 12 and not (out / "runs/uncertainty/seed0/result.json").exists()
    finished = (out / "runs/equal/seed0/result.json").read_bytes()
    logged = (out / "runs/uncertainty/seed0/train.jsonl").read_text().splitlines()[:killed_at]

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    lines = [ln for ln in again.stdout.splitlines() if ln.startswith("[")]
    assert lines[0] == "[1/2] equal seed 0: done, skipped" and lines[1] == "[2/2] uncertainty seed 0: training"
    assert (out / "runs/equal/seed0/result.json").read_bytes() == finished
    # resumed, not restarted: the lines logged before the kill (with their timings) are kept as they were
    resumed = (out / "runs/uncertainty/seed0/train.jsonl").read_text().splitlines()
    assert resumed[:killed_at] == logged and [json.loads(ln)["step"] for ln in resumed] == list(range(1, 13))
    assert json.loads((out / "runs/uncertainty/seed0/result.json").read_text())["steps"] == 12
    assert (out / "leaderboard.md").exists()


@pytest.mark.slow  # about 90 s: wandb retries the closed port past WANDB_INIT_TIMEOUT
def test_wandb_server_unreachable_the_run_goes_on(tiny_world, tmp_path, monkeypatch):
    """A real connection failure (a closed port), not a mock: init times out, training goes on."""
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=2", "train.eval_every=2",
                                      "wandb.mode=online"))
        metrics = trainer.fit()
    message = next(str(w.message) for w in caught if "W&B init failed" in str(w.message))
    assert "wandb.mode=offline" in message
    assert "seg/mIoU" in metrics
    for name in ("train.jsonl", "metrics.jsonl", "last.pt", "curves_train.png"):
        assert (tmp_path / "run" / name).exists(), name


def _disk_full(*args, **kwargs):
    """Write a few bytes (as a filling disk would), then fail like a full disk."""
    target = args[1] if len(args) > 1 else args[0]
    if hasattr(target, "write"):
        target.write(b"\x89PNG partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_plotting_warns_and_keeps_the_old_plot(tmp_path, monkeypatch):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"step": s, "train/loss/seg": 1.0 / s}) + "\n"
                                                  for s in (1, 2, 3)))
    plot_run(tmp_path)
    old = (tmp_path / "curves_train.png").read_bytes()
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, f, **k: _disk_full(fig, f))
    with pytest.warns(UserWarning, match="No space left on device.*records are intact.*plot_run"):
        assert plot_run(tmp_path) == []
    assert (tmp_path / "curves_train.png").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves_train.png", "train.jsonl"]  # no temporary left


def test_disk_full_while_checkpointing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 4})
    monkeypatch.setattr(torch, "save", lambda state, f: _disk_full(state, f))
    with pytest.raises(OSError, match="could not write checkpoint .*last.pt \\(if any\\) is intact: free disk space, then rerun "
                                      "with --resume") as err:
        save_checkpoint(path, {"step": 5})
    assert err.value.errno == errno.ENOSPC
    assert load_checkpoint(path) == {"step": 4} and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class DyingWorker(torch.utils.data.Dataset):
    """Kills the data worker process that first reads from it while `flag` is absent (forever if
    `once` is False), as the OOM killer would."""

    def __init__(self, dataset, flag: Path, once: bool = True):
        self.dataset, self.flag, self.once = dataset, flag, once

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if torch.utils.data.get_worker_info() is not None and not self.flag.exists():
            if self.once:
                self.flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.dataset[index]


def test_a_dead_data_worker_is_replaced_and_training_is_unchanged(tiny_world, tmp_path):
    steps = ["train.steps=3", "data.workers=1"]
    plain = Trainer(tiny_config(tiny_world, tmp_path / "plain", *steps))
    plain.fit()
    hit = Trainer(tiny_config(tiny_world, tmp_path / "hit", *steps))
    hit.train_batches.dataset = DyingWorker(hit.train_set, tmp_path / "died")
    with pytest.warns(UserWarning, match=r"a data loader worker died at step 1 .*restarting the loader \(1/3\)"):
        hit.fit()
    assert (tmp_path / "died").exists() and hit.step == 3
    for a, b in zip(plain.model.state_dict().values(), hit.model.state_dict().values()):
        assert torch.equal(a, b)


def test_data_workers_dying_again_and_again_stop_the_run_with_advice(tiny_world, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=3", "data.workers=1"))
    trainer.train_batches.dataset = DyingWorker(trainer.train_set, tmp_path / "never", once=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"workers died 4 times .*Lower data.workers.*--resume"):
            trainer.fit()


def _nan_gradient(param: torch.nn.Parameter) -> None:
    param.register_hook(lambda g: torch.full_like(g, float("nan")))


@pytest.mark.parametrize("balancer", ["equal", "pcgrad"])
def test_a_nonfinite_gradient_is_named_before_the_step(tiny_world, tmp_path, balancer):
    trainer = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=2", f"balancer.name={balancer}"))
    _nan_gradient(next(trainer.model.heads["depth"].parameters()))
    with pytest.raises(NonFiniteGradientError, match=r"non-finite gradient \(depth\) at step 1, before the "
                                                     r"optimizer step.*train.nonfinite=skip"):
        trainer.fit()


def test_a_nonfinite_shared_gradient_is_skipped_and_counted(tiny_world, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=2"))
    _nan_gradient(next(trainer.model.backbone.parameters()))
    with pytest.raises(NonFiniteGradientError, match="the combined gradient on the shared parameters"):
        trainer.run_step(next(trainer.batches()))
    skipper = Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=2", "train.nonfinite=skip"))
    _nan_gradient(next(skipper.model.backbone.parameters()))
    before = [p.detach().clone() for p in skipper.model.parameters()]
    skipper.fit()
    assert skipper.skipped == 2
    assert all(torch.equal(p, q) for p, q in zip(before, skipper.model.parameters()))
