"""W&B workspace: built offline, exported as JSON, saved only through a (patched) API."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("wandb_workspaces")

from perception_mtl.core.config import ConfigError  # noqa: E402
from perception_mtl.tracking import dashboard  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TASKS = ["det", "seg", "depth"]
SECTIONS = ["Task losses", "Task weights", "Gradient conflict", "Validation metrics", "Predictions",
            "Compare runs", "Training"]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_workspace_sections_panels_and_keys(wandb_env):
    workspace = dashboard.build_workspace("perception_mtl", None, "bench", TASKS, group="suite1")
    assert [s.name for s in workspace.sections] == SECTIONS
    # 3 losses, 3 weights, 3 cosines + magsim + norms + affinity, 3 val lines + 4 bars, media, 2 compare, 4 train (lr, throughput, coupling, early stops)
    assert [len(s.panels) for s in workspace.sections] == [3, 3, 6, 7, 1, 2, 4]
    spec = dashboard.spec_json(workspace)
    runset = json.loads(spec)["section"]["runSets"][0]
    assert runset["grouping"] == [{"section": "config", "name": "balancer.value.name"}]  # wandb-workspaces>=0.4.4
    assert [(f["key"]["name"], f["value"]) for f in runset["filters"]["filters"]] == [("group", "suite1")]
    keys = ["train/loss/depth", "train/weight/seg", "train/grad/cos/det-seg", "train/grad/cos/det-depth",
            "train/grad/cos/seg-depth", "train/grad/magsim/seg-depth", "train/grad/norm/det", "train/grad_norm",
            "train/affinity/depth->det", "train/lr", "train/images_per_s", "^val/depth/", "val/det/mAP50",
            "summary_metrics.val/depth/abs_rel.last", "summary:val/seg/mIoU.last", "config:balancer.value.name",
            "val/predictions"]
    missing = [k for k in keys if json.dumps(k)[1:-1] not in spec]
    assert not missing
    assert "seg-det" not in spec  # pairs keep the given task order


def test_single_task_and_no_group(wandb_env):
    workspace = dashboard.build_workspace("p", "me", "one", ["seg"])
    assert len(workspace.sections[2].panels) == 2  # no pairs: norms and affinity only
    assert workspace.runset_settings.filters == ""
    with pytest.raises(ValueError):
        dashboard.build_workspace("p", "me", "none", [])
    with pytest.raises(ValueError, match="quote"):
        dashboard.build_workspace("p", "me", "quoted", ["seg"], group="it's")


def test_export_without_key_writes_spec(wandb_env, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    workspace = dashboard.build_workspace("p", None, "bench", TASKS)
    out = tmp_path / "out" / "ws.json"
    message = dashboard.save_or_export(workspace, out, online=False)
    assert json.loads(out.read_text()) == json.loads(dashboard.spec_json(workspace))
    assert "not saved" in message and "--online" in message and "WANDB_API_KEY" in message
    with pytest.raises(ConfigError, match="--online needs a W&B API key and none is configured"):
        dashboard.save_or_export(workspace, out, online=True)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ConfigError, match="--online, but WANDB_MODE=offline"):
        dashboard.save_or_export(workspace, out, online=True)


def test_online_path_saves_and_fills_entity(wandb_env, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    api = SimpleNamespace(api_key="x" * 40, default_entity="me", client=SimpleNamespace(app_url="https://wandb.test"))
    monkeypatch.setattr(dashboard.wandb, "Api", lambda: api)
    saved = []

    def fake_save(self):
        saved.append(self.entity)
        self._internal_name = "nw-test"
        return self

    monkeypatch.setattr(dashboard.ws.Workspace, "save", fake_save)
    message = dashboard.save_or_export(dashboard.build_workspace("p", None, "bench", TASKS), tmp_path / "ws.json")
    assert saved == ["me"] and "https://wandb.test/me/p" in message
    # a W&B failure falls back to the file and a message, never an exception
    monkeypatch.setattr(dashboard.ws.Workspace, "save", lambda self: (_ for _ in ()).throw(ConnectionError("down")))
    message = dashboard.save_or_export(dashboard.build_workspace("p", "me", "bench", TASKS), tmp_path / "ws2.json")
    assert "ConnectionError" in message and "--online" in message and (tmp_path / "ws2.json").exists()


def test_cli_writes_spec(wandb_env, tmp_path):
    out = tmp_path / "cli.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "wandb_dashboard.py"), "--project", "perception_mtl",
                           "--group", "suite1", "--tasks", "det,seg", "--out", str(out)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train/grad/cos/det-seg" in out.read_text() and str(out) in proc.stdout


def test_cli_online_without_a_key_exits_2_saying_so(wandb_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "wandb_dashboard.py"), "--project", "p", "--online",
                           "--out", str(tmp_path / "ws.json")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--online needs a W&B API key and none is configured" in proc.stderr, proc.stderr


def test_missing_package_names_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)
    monkeypatch.delitem(sys.modules, "perception_mtl.tracking.dashboard")
    with pytest.raises(ImportError, match="pip install 'wandb-workspaces"):
        importlib.import_module("perception_mtl.tracking.dashboard")
