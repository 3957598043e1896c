"""W&B offline writes a run; W&B failures never stop training; local records always exist."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from perception_mtl.data.cityscapes import CityscapesDataset
from perception_mtl.engine.trainer import Trainer
from perception_mtl.tracking.wandb import WandbLogger, resolve_mode

from helpers import tiny_config


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_mode_precedence(wandb_env, monkeypatch):
    """The one rule of runs and leaderboards: the argument, else WANDB_MODE, else the default given
    (a suite's wandb.mode), else online with an API key and offline without."""
    assert resolve_mode(None) == "offline"
    assert resolve_mode(None, "disabled") == "disabled"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(None) == "online"
    assert resolve_mode(None, "offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode(None, "disabled") == "offline"
    assert resolve_mode("disabled", "online") == "disabled"


def wandb_history(record: Path) -> dict[int, dict]:
    """{step: the history row W&B stored for it} from a .wandb transaction log, read back with
    wandb's own `wandb leet inspect --json` (one JSON record per line)."""
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(record)],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    history: dict[int, dict] = {}
    for row in rows:
        if row["type"] == "history":
            item = row["history"]["item"]
            history.setdefault(item["_step"], {}).update(item)
    return history


def test_offline_run_writes_the_local_logs_values_to_a_wandb_record(wandb_env, tiny_world, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(tiny_world, out, "train.steps=2", "train.eval_every=2", "wandb.mode=offline",
                        "wandb.images=2")).fit()
    records = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1
    history = wandb_history(records[0])
    local = [json.loads(line) for name in ("train.jsonl", "metrics.jsonl")
             for line in (out / name).read_text().splitlines()]
    assert sorted(history) == [1, 2] and len(local) == 3  # two training steps, one evaluation
    for row in local:
        step = row.pop("step")
        assert {k: history[step][k] for k in row} == pytest.approx(row), step
    frames = [CityscapesDataset(tiny_world, "val").frame(i) for i in range(2)]
    assert {caption.split()[0] for caption in history[2]["val/predictions.captions"]} == set(frames)


def test_wandb_failure_is_a_warning_not_a_crash(wandb_env, tiny_world, tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise ConnectionError("wandb unreachable")

    monkeypatch.setattr(wandb, "init", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=2", "wandb.mode=online"))
        metrics = trainer.fit()
    assert sum("W&B init failed" in str(w.message) for w in caught) == 1, [str(w.message) for w in caught]
    # the local records hold both steps and the final evaluation the run returned
    train = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train] == [1, 2] and all("train/loss/seg" in r for r in train)
    assert "seg/mIoU" in metrics and evals == [{"step": 2, **{f"val/{k}": v for k, v in metrics.items()}}]


def test_logger_survives_a_failing_log_call(wandb_env, tmp_path):
    from omegaconf import OmegaConf

    from perception_mtl.core.config import WandbConfig

    logger = WandbLogger(OmegaConf.structured(WandbConfig(mode="disabled")), str(tmp_path), {})

    class Exploding:
        id = "x"
        calls = 0

        def log(self, *a, **k):
            Exploding.calls += 1
            raise OSError("disk full")

    logger.run = Exploding()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger.log({"a": 1.0}, step=1)
        logger.log({"a": 2.0}, step=2)  # switched off now: no second call, warning or error
    failures = [w for w in caught if "W&B log failed" in str(w.message)]
    assert len(failures) == 1 and failures[0].category is UserWarning, [str(w.message) for w in caught]
    assert "disk full" in str(failures[0].message)
    assert Exploding.calls == 1 and logger.run is None
