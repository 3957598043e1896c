"""Suite launchers: sequential, local (child processes) and submitit (its local executor) give the
same run folders and leaderboard; a killed worker is retried and resumes; a run failing every
attempt is reported, and a new launch redoes only it; the run folder's lock; SLURM parameters."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock
from omegaconf import OmegaConf

from perception_mtl.benchmark.launch.dispatch import write_manifest
from perception_mtl.benchmark.launch import job as job_module
from perception_mtl.benchmark.launch.job import Job, execute
from perception_mtl.benchmark.launch.settings import (LauncherConfig, job_parameters, launcher_config, make_backend,
                                                      submitit_cluster)
from perception_mtl.benchmark.launch.submitit_backend import executor
from perception_mtl.benchmark.runner import RunsFailed, run_suite
from perception_mtl.benchmark.suite import Suite
from perception_mtl.core.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("quiet_wandb")


@pytest.fixture
def quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _suite(tmp_path: Path, world: Path, steps: int = 3, methods: str = "[equal]", extra: str = "",
           baselines: bool = True) -> Suite:
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""name: tiny
config: {{data.root: {world}, data.size: [64, 128], data.workers: 0, model.backbone: test_resnet, model.weights: null,
          train.steps: {steps}, train.batch_size: 2, train.log_every: 1, train.eval_every: 1000,
          train.checkpoint_every: 1, optim.warmup_steps: 1, task.det.topk_candidates: 200}}
wandb: {{mode: disabled}}
tasks: [seg, depth]
seeds: [0]
baselines: {str(baselines).lower()}
methods: {methods}
{extra}""")
    return Suite.load(path)


def _metrics(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text())["metrics"]
            for p in sorted(out.glob("runs/*/seed*/result.json"))}


def _board(out: Path) -> list[dict]:
    """leaderboard.csv without the columns measured in seconds (train time, latency)."""
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    return [{k: v for k, v in row.items() if "time" not in k and "latency" not in k} for row in rows]


@pytest.fixture(scope="module")
def sequential(tiny_world, tmp_path_factory):
    """The tiny suite run sequentially with 1 thread (thread count changes float sums: 1 vs 2 threads
    differ in the 5th digit of depth's AbsRel here, so every backend runs 1 thread per run)."""
    os.environ["WANDB_MODE"] = "disabled"
    tmp = tmp_path_factory.mktemp("sequential")
    out = run_suite(_suite(tmp, tiny_world), tmp / "out", ["launcher.backend=sequential", "launcher.threads=1"])
    return out


def test_sequential_runs_keep_no_checkpoints_and_write_one_log_each(sequential):
    assert len(_metrics(sequential)) == 3
    assert not list(sequential.glob("runs/*/seed*/*.pt"))  # deleted once result.json was written
    assert (sequential / "launch/runs/equal/seed0.log").exists()
    assert "FAILED" not in (sequential / "leaderboard.md").read_text()


@pytest.mark.parametrize("backend", ["local", pytest.param("submitit", marks=pytest.mark.slow)])  # a process per run
def test_parallel_backends_give_the_sequential_numbers(sequential, tiny_world, tmp_path, backend, capsys):
    out = run_suite(_suite(tmp_path, tiny_world), tmp_path / "out",
                    [f"launcher.backend={backend}", "launcher.cluster=local", "launcher.workers=2",
                     "launcher.threads=1"])
    assert _metrics(out) == _metrics(sequential)  # same seeds, same numbers, bit for bit
    assert _board(out) == _board(sequential)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len([line for line in lines if "ETA" in line]) == 3 and not any("failed" in line for line in lines)
    assert not list(out.glob("runs/*/seed*/*.pt"))


def _child_training(log: Path) -> int | None:
    """The pid of the local backend's child process, from the first line of its log."""
    first = log.read_text().splitlines()[:1] if log.exists() else []
    return int(first[0].split("process ")[1].split(",")[0]) if first else None


def test_a_killed_worker_is_retried_and_resumes_from_its_last_checkpoint(tiny_world, tmp_path, capsys):
    suite = _suite(tmp_path, tiny_world, steps=12, baselines=False)
    out = tmp_path / "out"
    log = out / "runs/equal/seed0/train.jsonl"
    done = threading.Thread(target=run_suite, args=(suite, out, ["launcher.backend=local", "launcher.workers=1",
                                                                 "launcher.threads=1"]))
    done.start()
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.02)
    pid = _child_training(out / "launch/runs/equal/seed0.log")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    done.join(timeout=180)
    assert not done.is_alive()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert any("attempt 1/3 failed (killed by SIGKILL); retrying from its last.pt" in line for line in lines), lines
    assert any("attempt 2/3, resuming from last.pt" in line for line in lines)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, 13))  # resumed: no step twice, none missing
    assert json.loads((out / "runs/equal/seed0/result.json").read_text())["steps"] == 12


def test_a_run_failing_every_attempt_is_reported_and_only_it_is_redone(tiny_world, tmp_path, monkeypatch, capsys):
    suite = _suite(tmp_path, tiny_world, methods="[equal, uncertainty]", extra="keep_checkpoints: true\n")
    out = tmp_path / "out"
    train_run = job_module.train_run

    def broken(suite, run, results_dir):
        if run.label == "uncertainty":
            raise RuntimeError("planted fault")
        return train_run(suite, run, results_dir)

    monkeypatch.setattr(job_module, "train_run", broken)
    with pytest.raises(RunsFailed, match="1 run\\(s\\) failed every attempt: uncertainty seed 0"):
        run_suite(suite, out, ["launcher.backend=sequential", "launcher.retries=1"])
    failed = json.loads((out / "runs/uncertainty/seed0/failed.json").read_text())
    assert failed["attempts"] == 2 and failed["error"] == "RuntimeError: planted fault"
    board = (out / "leaderboard.md").read_text()
    assert "**FAILED** (1 of 4 runs, left out of every row): uncertainty seed 0 (after 2 attempt(s)" in board
    assert "| equal |" in board and "| uncertainty |" not in board
    assert (out / "runs/equal/seed0/last.pt").exists()  # keep_checkpoints: true

    monkeypatch.setattr(job_module, "train_run", train_run)
    capsys.readouterr()
    run_suite(suite, out, ["launcher.backend=sequential"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line for line in lines if "done, skipped" in line] == [
        "[1/4] stl-seg seed 0: done, skipped", "[2/4] stl-depth seed 0: done, skipped", "[3/4] equal seed 0: done, skipped"]
    assert not (out / "runs/uncertainty/seed0/failed.json").exists()
    assert "FAILED" not in (out / "leaderboard.md").read_text() and "| uncertainty |" in (out / "leaderboard.md").read_text()


def test_a_leaderboard_built_mid_suite_names_the_missing_runs(sequential, tmp_path):
    from perception_mtl.analysis.leaderboard import write_leaderboard

    for path in sequential.glob("runs/*/seed*/result.json"):
        target = tmp_path / path.relative_to(sequential)
        target.parent.mkdir(parents=True)
        target.write_bytes(path.read_bytes())
    (tmp_path / "runs/equal/seed0/result.json").unlink()
    suite = Suite.load(sequential / "suite.yaml")
    write_manifest(tmp_path, suite.runs())
    board = write_leaderboard(tmp_path, wandb_mode="disabled")["md"].read_text()
    assert "**not finished** (1 of 3 runs, left out of every row): equal seed 0; rerun the suite" in board


def test_a_second_launch_waits_for_the_run_the_first_holds(sequential, tiny_world, tmp_path):
    suite = _suite(tmp_path, tiny_world)
    job = Job(suite, suite.runs()[0], tmp_path, threads=1, keep_checkpoints=False)
    job.run_dir.mkdir(parents=True)
    held = FileLock(job.run_dir / ".lock")
    held.acquire()  # the other launch, training this run
    worker = threading.Thread(target=execute, args=(job,))
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive() and not (job.run_dir / "train.jsonl").exists()  # waits, touches nothing
    held.release()
    worker.join(timeout=120)
    assert job.finished()


def test_launcher_settings_are_checked(monkeypatch):
    monkeypatch.setattr("perception_mtl.benchmark.launch.settings.cores", lambda: 2)
    local = launcher_config({}, ["launcher.backend=local"])
    assert (local.workers, local.threads) == (2, 1)
    assert launcher_config({"launcher": {"backend": "local", "threads": 2}}).workers == 1
    with pytest.raises(ConfigError, match="workers=2 x launcher.threads=2 exceeds the 2 cores"):
        launcher_config({}, ["launcher.backend=local", "launcher.workers=2", "launcher.threads=2"])
    with pytest.raises(ConfigError, match="launcher.backend='ray' is not valid"):
        launcher_config({}, ["launcher.backend=ray"])
    with pytest.raises(ConfigError, match="Key 'gpus' not in"):
        launcher_config({"launcher": {"gpus": 1}})
    with pytest.raises(ConfigError, match="launcher.<key>=<value> overrides only"):
        launcher_config({}, ["train.steps=3"])


def test_the_backend_table_builds_each_backend_and_imports_submitit_only_when_chosen(tmp_path):
    """make_backend looks the name up in settings.BACKENDS, and an unknown name gets the valid ones;
    building the sequential and local backends leaves submitit unimported (checked in a fresh
    interpreter: this file imports it)."""
    with pytest.raises(ConfigError, match=r"'ray' is not valid; choose from \['sequential', 'local', 'submitit'\]"):
        make_backend(LauncherConfig(backend="ray"), tmp_path, "s")
    code = ("import sys; from pathlib import Path\n"
            "from perception_mtl.benchmark.launch.settings import LauncherConfig, make_backend\n"
            "built = [make_backend(LauncherConfig(backend=name, workers=1), Path('logs'), 's') "
            "for name in ('sequential', 'local')]\n"
            "print([type(b).__name__ for b in built], 'submitit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split("\n")[-2] == "['SequentialBackend', 'LocalBackend'] False"


def test_the_slurm_job_of_a_run_asks_for_the_suites_resources(tmp_path, monkeypatch):
    """The sbatch script submitit would submit for one run of the full suite, rendered without a
    cluster (submitit's SlurmExecutor only needs an `srun` on the PATH to start); an `slurm:` entry
    becomes an sbatch option of its own."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin/srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    launcher = launcher_config(OmegaConf.to_container(OmegaConf.load(ROOT / "configs/benchmark/full.yaml")))
    ex = executor(tmp_path / "jobs", submitit_cluster(launcher), job_parameters(launcher, "full"))
    script = ex._executor._make_submission_file_text("python -u -m submitit.core._submit jobs", "uid")  # noqa: SLF001
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=10", "--mem=48GB", "--time=240",
                 "--job-name=full", "--nodes=1", "--ntasks-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line
    launcher.slurm = {"account": "lab", "qos": "high"}
    ex = executor(tmp_path / "jobs", submitit_cluster(launcher), job_parameters(launcher, "full"))
    script = ex._executor._make_submission_file_text("x", "uid")  # noqa: SLF001
    assert "#SBATCH --account=lab\n" in script and "#SBATCH --qos=high\n" in script
