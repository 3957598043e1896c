"""Run a suite's unfinished runs through a backend: one at a time in this thread (sequential), or
`workers` at once from a concurrent.futures thread pool, each thread waiting on its run's child
process or submitit job. A failed or killed attempt is retried up to `retries` times, resuming
from the run's last.pt; after that the run is recorded as failed (`runs/<run>/seed<k>/failed.json`:
run, seed, attempts, error, log), which the leaderboard names. One line per run start and end,
the end with an ETA; failures with their log.

`manifest.json` in the results folder lists every run of the suite ({"runs": [{"run", "seed",
"folder"}]}), so that a leaderboard built before the end names the runs still missing
(`analysis/missing.py`).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from perception_mtl.core.atomic import atomic_write_text
from perception_mtl.benchmark.launch.failure import Failure
from perception_mtl.benchmark.launch.job import Job
from perception_mtl.benchmark.record import headline, read_record
from perception_mtl.benchmark.suite import Run


class Backend(Protocol):
    def attempt(self, job: Job) -> Failure | None: ...


def write_manifest(results_dir: Path, runs: list[Run]) -> None:
    """manifest.json: every run of the suite, finished or not (written atomically: never half a file)."""
    atomic_write_text(results_dir / "manifest.json",
                      json.dumps({"runs": [{"run": r.label, "seed": r.seed, "folder": r.folder} for r in runs]},
                                 indent=1))


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Progress:
    """The suite's console: a line when a run starts and when it ends (metrics, time, ETA)."""

    def __init__(self, total: int, pending: int, workers: int):
        self.total, self.left, self.workers = total, pending, workers
        self.times: list[float] = []
        self.lock = threading.Lock()

    def say(self, k: int, job: Job, text: str) -> None:
        with self.lock:
            print(f"[{k}/{self.total}] {job.name}: {text}", flush=True)

    def finished(self, k: int, job: Job, seconds: float) -> None:
        record = read_record(job.run_dir)
        test = record.get("test")
        metrics = f"{test['split']} {headline(test['metrics'])}" if test else headline(record["metrics"])
        with self.lock:
            self.left -= 1
            self.times.append(seconds)
            eta = sum(self.times) / len(self.times) * self.left / self.workers
        self.say(k, job, f"{metrics} ({duration(seconds)}; {self.left} left, ETA {duration(eta)})")

    def failed(self, k: int, job: Job, attempt: int, attempts: int, failure: Failure, final: bool) -> None:
        if final:
            with self.lock:
                self.left -= 1
        then = "FAILED, recorded in failed.json" if final else "retrying from its last.pt"
        self.say(k, job, f"attempt {attempt}/{attempts} failed ({failure.message}); {then}; log: {failure.log}")


def run_with_retries(k: int, job: Job, backend: Backend, retries: int, progress: Progress) -> Failure | None:
    """Attempt `job` until its run finishes, at most 1 + `retries` times; the last failure, if any,
    is written to its failed.json (removed again once the run finishes)."""
    failed = job.run_dir / "failed.json"
    attempts = 1 + retries
    for attempt in range(1, attempts + 1):
        progress.say(k, job, "training" if attempt == 1 else f"attempt {attempt}/{attempts}, resuming from last.pt")
        tic = time.perf_counter()
        failure = backend.attempt(job)
        if failure is None:
            failed.unlink(missing_ok=True)
            progress.finished(k, job, time.perf_counter() - tic)
            return None
        final = attempt == attempts or not failure.retry
        progress.failed(k, job, attempt, attempts, failure, final)
        if final:
            failed.parent.mkdir(parents=True, exist_ok=True)
            failed.write_text(json.dumps({"run": job.run.label, "seed": job.run.seed, "attempts": attempt,
                                          "error": failure.message, "log": failure.log}, indent=1))
            return failure
    raise AssertionError("unreachable: the last attempt returns")


def dispatch(jobs: list[tuple[int, Job]], total: int, backend: Backend, workers: int, retries: int) -> list[Job]:
    """Run `jobs` ((index in the suite, job) pairs), `workers` at once (1: in this thread); returns
    the jobs that failed every attempt."""
    progress = Progress(total, len(jobs), workers)
    if workers == 1:
        outcomes = [run_with_retries(k, job, backend, retries, progress) for k, job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda pair: run_with_retries(*pair, backend, retries, progress), jobs))
    return [job for (_, job), failure in zip(jobs, outcomes) if failure is not None]
