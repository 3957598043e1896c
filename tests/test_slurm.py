"""A real one-node SLURM cluster (tools/slurm_cluster.sh, as root): a suite through submitit on SLURM
gives the sequential backend's numbers, from SLURM jobs that carry the suite's sbatch options; a job
cancelled with scancel mid-training is retried and resumes from its last.pt, with accounting (sacct
answers) and without (the job leaves squeue with no result); DDP under `srun --ntasks=2` equals one
process, also after a killed rank and --resume. The daemons stop at the end, also on failure.

Runs in CI (.ci/run exports CI=true and installs SLURM); elsewhere set PMTL_SLURM=1 (root, packages
from `tools/slurm_cluster.sh install --accounting`)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit
import torch

from ddp_worker import DDP_EQUIVALENT
from helpers import TINY_TRAIN
from test_distributed import TOLERANCE
from test_launcher import _board, _metrics, _suite, quiet_wandb  # noqa: F401 (a fixture)

from perception_mtl.benchmark.runner import run_suite
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "slurm_cluster.sh"
ON = os.environ.get("CI") == "true" or os.environ.get("PMTL_SLURM") == "1"
SLURM = ["launcher.backend=submitit", "launcher.cluster=slurm", "launcher.cpus_per_run=1", "launcher.mem_gb=4"]
COMMENT = "pmtl-ci-suite"  # an sbatch option of the suite's `launcher.slurm:`
STEPS = 30
EQUAL = "{name: equal, config: {train.checkpoint_every: 4}}"  # cancelled, resumes from a checkpoint behind it
METHODS = f"[{EQUAL}, uncertainty]"

pytestmark = [pytest.mark.skipif(not ON, reason="starts a one-node SLURM cluster as root (tools/slurm_cluster.sh): "
                                 "runs in CI (CI=true), or set PMTL_SLURM=1"),
              pytest.mark.usefixtures("quiet_wandb")]


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """The cluster ("plain": no accounting, sacct fails; "accounting": slurmdbd on MariaDB), with
    SLURM_CONF exported; `stop` at teardown, whatever the tests did."""
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        pytest.fail("the SLURM test needs root and SLURM's packages: tools/slurm_cluster.sh install --accounting")
    folder = tmp_path_factory.mktemp(f"slurm-{request.param}")
    env = {**os.environ, "PMTL_SLURM_DIR": str(folder)}
    log = (folder / "cluster.log").open("w")  # not a pipe: the daemons inherit it
    try:
        started = subprocess.run([str(SCRIPT), "start", *(["--accounting"] if request.param == "accounting" else [])],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, timeout=180)
        assert started.returncode == 0, (folder / "cluster.log").read_text()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(folder / "slurm.conf"))
            yield request.param
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        log.close()


def _job_ids(out: Path) -> list[str]:
    """The SLURM job ids of submitit's logs (<results>/launch/submitit/<job id>_0_log.out)."""
    return sorted(p.name.split("_")[0] for p in (out / "launch/submitit").glob("*_0_log.out"))


def _scontrol(job_id: str) -> dict[str, str]:
    """`scontrol show job`'s fields, once the job has ended (its result file is written before)."""
    deadline = time.time() + 120
    while True:
        text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
        job = dict(re.findall(r"(\w+)=(\S+)", text))
        if job["JobState"] not in ("PENDING", "RUNNING", "COMPLETING") or time.time() > deadline:
            return job
        time.sleep(0.5)


def _wait_for_lines(path: Path, n: int, timeout: float = 300, poll: float = 0.05) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not (path.exists() and len(path.read_text().splitlines()) >= n):
        time.sleep(poll)
    assert path.exists() and len(path.read_text().splitlines()) >= n, f"{path}: fewer than {n} lines"


def _slurm_suite(tmp_path: Path, world: Path, methods: str = METHODS):
    return _suite(tmp_path, world, steps=STEPS, baselines=False, methods=methods,
                  extra=f"launcher: {{slurm: {{comment: {COMMENT}}}}}\n")


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory) -> Path:
    """The SLURM suite run by the sequential backend, 1 thread."""
    tmp = tmp_path_factory.mktemp("reference")
    return run_suite(_slurm_suite(tmp, tiny_world), tmp / "out", ["launcher.backend=sequential", "launcher.threads=1"])


def _kill_job_processes(job_id: str) -> None:
    """SIGKILL every process started by SLURM job `job_id` (its environment names the job)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"SLURM_JOB_ID={job_id}\0".encode() in (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):  # gone meanwhile, or not ours to read
            continue


def _submitted(out: Path, label: str) -> str | None:
    """The SLURM job id of the first submitit job that trains run `label` (from its pickled call), or
    None before it is submitted."""
    for pkl in sorted((out / "launch/submitit").glob("*_submitted.pkl"), key=lambda p: int(p.name.split("_")[0])):
        try:
            call = submitit.core.utils.pickle_load(pkl)
        except (EOFError, pickle.UnpicklingError):  # still being written
            continue
        if call.args[0].run.label == label:
            return pkl.name.split("_")[0]
    return None


def _cancelled_suite(out: Path, suite, capsys) -> tuple[str, str]:
    """Run `suite` on SLURM; scancel the equal run's job once it logged 3 steps. Returns its job id
    and the line reporting its first attempt's failure; checks the retry resumed (no step twice)."""
    log = out / "runs/equal/seed0/train.jsonl"
    done = threading.Thread(target=run_suite, args=(suite, out, [*SLURM, "launcher.lost_after_s=5"]))
    done.start()
    deadline = time.time() + 300
    while (job_id := _submitted(out, "equal")) is None and time.time() < deadline:  # known before it trains,
        time.sleep(0.05)  # so the kill follows the third logged step at once
    _wait_for_lines(log, 3, poll=0.005)
    subprocess.run(["scancel", job_id], check=True)
    # scancel's SIGTERM is logged and bypassed by submitit's job process, and on this one-node cluster
    # (proctrack/linuxproc in a container) the SIGKILL that should follow does not always reach the
    # task: kill the job's processes too, as a lost node would (else the tiny run finishes first)
    _kill_job_processes(job_id)
    done.join(timeout=400)
    assert not done.is_alive()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    failed = [line for line in lines if f"equal seed 0: attempt 1/3 failed (submitit job {job_id}" in line]
    assert len(failed) == 1 and "retrying from its last.pt" in failed[0], lines
    assert any("equal seed 0: attempt 2/3, resuming from last.pt" in line for line in lines)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))  # resumed from a checkpoint behind the last step: none twice
    return job_id, failed[0]


@pytest.mark.parametrize("cluster", ["plain"], indirect=True)
def test_a_suite_on_slurm_without_accounting(cluster, reference, tiny_world, tmp_path, capsys):
    """Sequential's numbers, from SLURM jobs with the suite's sbatch options; a scancel'd job is
    noticed through squeue alone (sacct fails) and retried."""
    out = tmp_path / "out"
    cancelled, failed = _cancelled_suite(out, _slurm_suite(tmp_path, tiny_world), capsys)
    assert "left squeue with no result" in failed
    assert _metrics(out) == _metrics(reference)  # 1 thread per run on both: bit for bit, the resumed run too
    assert _board(out) == _board(reference)
    ids = _job_ids(out)
    assert len(ids) == 3, ids  # one SLURM job per run, and the retry
    for job_id in ids:
        assert f"job_id={job_id}" in (out / f"launch/submitit/{job_id}_0_log.out").read_text()
        job = _scontrol(job_id)  # the controller's record of the job: what sbatch asked for
        assert (job["JobState"], job["JobName"], job["Comment"], job["NumCPUs"], job["MinMemoryNode"]) == (
            "CANCELLED" if job_id == cancelled else "COMPLETED", "tiny", COMMENT, "1", "4G"), job


@pytest.mark.parametrize("cluster", ["accounting"], indirect=True)
def test_a_cancelled_job_is_retried_with_accounting(cluster, reference, tiny_world, tmp_path, capsys):
    """With slurmdbd, sacct's CANCELLED ends the wait (not the squeue grace period)."""
    out = tmp_path / "out"
    _, failed = _cancelled_suite(out, _slurm_suite(tmp_path, tiny_world, methods=f"[{EQUAL}]"), capsys)
    assert "left squeue" not in failed and "CANCELLED" in subprocess.run(
        ["sacct", "--noheader", "--jobs", _submitted(out, "equal"), "--format=State"], capture_output=True, text=True,
        check=True).stdout
    assert _metrics(out)["runs/equal/seed0"] == _metrics(reference)["runs/equal/seed0"]


def _overrides(out: Path, world: Path, batch: int) -> list[str]:
    """The DDP-equivalent run of tests/ddp_worker.py, 12 steps (a checkpoint every 2)."""
    return [*TINY_TRAIN, *DDP_EQUIVALENT, f"data.root={world}", f"output_dir={out}", "train.steps=12",
            f"train.batch_size={batch}"]


def _srun(out: Path, world: Path, *extra: str) -> list[str]:
    """`srun --ntasks=2` starting tools/train.py, batch 2 per rank."""
    return ["srun", "--ntasks=2", "--cpus-per-task=1", "--kill-on-bad-exit=1", sys.executable,
            str(ROOT / "tools/train.py"), *_overrides(out, world, 2), *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _rank_pid(run: Path, rank: int) -> int | None:
    """The pid of training task `rank` of the srun writing `run` (SLURM_PROCID in its environment)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(run) in (proc / "cmdline").read_text() and f"SLURM_PROCID={rank}\0" in (
                    proc / "environ").read_text(errors="replace"):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("cluster", ["plain"], indirect=True)
def test_ddp_under_srun_resumes_after_a_killed_rank_and_equals_one_process(cluster, tiny_world, tmp_path):
    """2 ranks from `srun --ntasks=2` (batch 2 each), rank 1 SIGKILLed mid-training, the step
    relaunched with --resume: the weights of 1 process with batch 4, within test_distributed's
    tolerance, and every step logged once."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_srun(run, tiny_world), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_lines(run / "train.jsonl", 5)  # rank 0 alone logs
    pid = _rank_pid(run, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # srun ends the other rank (--kill-on-bad-exit) and fails
    assert len((run / "train.jsonl").read_text().splitlines()) < 12  # killed mid-training
    resumed = subprocess.run(_srun(run, tiny_world, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
    single = Trainer(load_config(None, _overrides(tmp_path / "single", tiny_world, 4)))
    single.fit()
    diff = _max_diff(single.model.state_dict(), _weights(run))
    print(f"\nsrun DDP, rank killed and resumed: max |w_ddp - w_single| = {diff:.2e}")
    assert diff < TOLERANCE
