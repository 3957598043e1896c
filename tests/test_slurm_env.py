"""DDP under `srun --ntasks=N` without a cluster: SLURM's step variables, faked, become torchrun's
(rank, world size, local rank, master address and port); a batch script and torchrun inside an
allocation are left alone. The real launch is in tests/test_slurm.py (CI)."""
from __future__ import annotations

import os

import pytest

from perception_mtl.core import distributed

TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def clean_env(monkeypatch):
    """No torchrun or SLURM variables; monkeypatch restores whatever env_from_slurm sets. (Its
    delenv of an absent key records nothing, so each torchrun key is set first: teardown then
    removes what env_from_slurm exported instead of leaking WORLD_SIZE into later tests.)"""
    for key in TORCHRUN:
        monkeypatch.setenv(key, "unset")
    for key in [*TORCHRUN, *[k for k in os.environ if k.startswith("SLURM_")]]:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _srun_task(monkeypatch, procid: int, localid: int, tasks: int = 4) -> None:
    """The variables srun gives task `procid` of step 0 of job 4242 (2 nodes, 2 tasks each)."""
    for key, value in {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": str(tasks),
                       "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_PROCID": str(procid),
                       "SLURM_LOCALID": str(localid), "SLURM_STEP_NODELIST": "node[07-08]"}.items():
        monkeypatch.setenv(key, value)


def test_srun_tasks_get_torchruns_variables_with_one_master(clean_env):
    exported = []
    for procid, localid in [(0, 0), (1, 1), (2, 0), (3, 1)]:
        _srun_task(clean_env, procid, localid)
        clean_env.setenv("MASTER_ADDR", "node07")  # `scontrol show hostnames` needs SLURM: tests/test_slurm.py
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
            clean_env.delenv(key, raising=False)
        assert distributed.env_from_slurm()
        exported.append({key: os.environ[key] for key in TORCHRUN})
    assert [(e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"]) for e in exported] == [
        ("0", "4", "0"), ("1", "4", "1"), ("2", "4", "0"), ("3", "4", "1")]
    assert len({e["MASTER_PORT"] for e in exported}) == 1  # every rank meets rank 0 on the same port
    assert 20000 <= int(exported[0]["MASTER_PORT"]) < 60000
    clean_env.setenv("SLURM_STEP_ID", "1")  # the next step of the job draws its own port
    for key in ("WORLD_SIZE", "MASTER_PORT"):
        clean_env.delenv(key)
    distributed.env_from_slurm()
    assert os.environ["MASTER_PORT"] != exported[0]["MASTER_PORT"]


def test_a_set_master_port_is_kept(clean_env):
    _srun_task(clean_env, 1, 1)
    clean_env.setenv("MASTER_ADDR", "10.0.0.7")
    clean_env.setenv("MASTER_PORT", "29511")
    assert distributed.env_from_slurm()
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == ("10.0.0.7", "29511")


def test_batch_scripts_single_tasks_and_torchrun_are_left_alone(clean_env):
    clean_env.setenv("SLURM_JOB_ID", "4242")
    clean_env.setenv("SLURM_NTASKS", "2")  # an sbatch --ntasks=2 script itself: no step, one process
    clean_env.setenv("SLURM_PROCID", "0")
    assert not distributed.env_from_slurm() and "WORLD_SIZE" not in os.environ
    _srun_task(clean_env, 0, 0, tasks=1)  # a one-task step (a suite's submitit job)
    assert not distributed.env_from_slurm() and "WORLD_SIZE" not in os.environ
    _srun_task(clean_env, 0, 0, tasks=2)
    clean_env.setenv("WORLD_SIZE", "4")  # torchrun inside the allocation set its own
    clean_env.setenv("RANK", "3")
    assert not distributed.env_from_slurm()
    assert (os.environ["WORLD_SIZE"], os.environ["RANK"]) == ("4", "3")
