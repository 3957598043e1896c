"""The submitit backend's wait on SLURM without a cluster: a job squeue no longer lists, with no
result and no final sacct state, is lost after the grace period (submitit alone waits forever);
squeue listings older than the submission, or squeue failing, never count. The real cluster is
tests/test_slurm.py (CI)."""
from __future__ import annotations

import threading
import time

import pytest

from perception_mtl.benchmark.launch import slurm_queue


class FakeJob:
    """A submitit job that never writes a result; `sacct_final` answers a forced sacct check."""

    def __init__(self, sacct_final: bool = False):
        self.job_id, self.sacct_final, self.forced = "7", sacct_final, 0

    def done(self, force_check: bool = False) -> bool:
        self.forced += force_check
        return force_check and self.sacct_final


@pytest.fixture
def listings(monkeypatch):
    """squeue's answers in turn (the last one repeats); a fresh listing at every look."""
    answers: list = []

    def ask() -> frozenset[str] | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(slurm_queue, "QUEUE", slurm_queue.Queue())
    monkeypatch.setattr(slurm_queue, "SQUEUE_EVERY_S", 0.0)
    monkeypatch.setattr(slurm_queue, "ask_squeue", ask)
    return answers


def test_a_job_gone_from_squeue_is_lost_after_the_grace_period(listings):
    listings.extend([frozenset({"7", "8"})] * 5 + [frozenset({"8"})])  # running, then gone
    job = FakeJob()
    tic = time.monotonic()
    assert slurm_queue.wait_for(job, lost_after_s=0.3, poll_s=0.01) is False
    assert 0.3 < time.monotonic() - tic < 5
    assert job.forced >= 1  # sacct was asked before giving up


def test_sacct_ending_the_job_ends_the_wait_at_once(listings):
    listings.append(frozenset())
    assert slurm_queue.wait_for(FakeJob(sacct_final=True), lost_after_s=60, poll_s=0.01) is True


def test_squeue_failing_is_not_a_lost_job(listings):
    listings.extend([None] * 40 + [frozenset({"7"})] * 40 + [frozenset()])  # 40 failures, listed, then gone
    tic = time.monotonic()
    assert slurm_queue.wait_for(FakeJob(), lost_after_s=0.2, poll_s=0.01) is False
    assert time.monotonic() - tic > 0.2 + 80 * 0.01  # the failures and listings never started the clock


def test_a_listing_older_than_the_submission_does_not_count(monkeypatch):
    queue = slurm_queue.Queue()
    queue.asked_at, queue.ids = time.monotonic(), frozenset()  # listed just before sbatch returned
    monkeypatch.setattr(slurm_queue, "QUEUE", queue)
    monkeypatch.setattr(slurm_queue, "SQUEUE_EVERY_S", 0.5)
    monkeypatch.setattr(slurm_queue, "ask_squeue", lambda: frozenset({"7"}))
    job = FakeJob()

    def stop_after(seconds: float) -> None:
        time.sleep(seconds)
        job.done = lambda force_check=False: True  # the result file appears

    threading.Thread(target=stop_after, args=(1.0,)).start()
    assert slurm_queue.wait_for(job, lost_after_s=0.05, poll_s=0.01) is True
    assert job.forced == 0  # never taken for gone
