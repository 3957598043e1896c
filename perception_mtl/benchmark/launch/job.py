"""One run of a suite as a unit of work that any backend executes: in this process (sequential),
in a child process (local) or in a submitit job (a picklable function), always through `execute`, so that the run folder is the same
whichever backend made it.

The run folder's lock (`runs/<run>/seed<k>/.lock`, filelock: an fcntl.flock the OS drops when
the holder dies) keeps two launches of one suite off the same run: the second waits, then finds
the result and leaves it as it is.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from perception_mtl.benchmark.record import evaluate_on_test, has_test, read_record, selected_checkpoint, train_run
from perception_mtl.benchmark.suite import Run, Suite
from perception_mtl.core.errors import BAD_INPUT_TYPES, ConfigError, bad_input_message

CHECKPOINTS = ("last.pt", "best.pt")
BAD_INPUT_EXIT = 2  # a run failing with bad input (errors.BAD_INPUT) fails again: not retried


@dataclass(frozen=True)
class Job:
    suite: Suite
    run: Run
    results_dir: Path
    threads: int | None  # torch threads of the run; None: torch's default
    keep_checkpoints: bool  # False: last.pt and best.pt are deleted once result.json holds everything

    @property
    def run_dir(self) -> Path:
        return self.results_dir / self.run.folder

    def log_file(self, logs: Path) -> Path:
        """The file under `logs` that takes this run's output (its folder made)."""
        log = logs / f"{self.run.folder}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return log

    @property
    def name(self) -> str:
        return f"{self.run.label} seed {self.run.seed}"

    def finished(self) -> bool:
        """result.json is there, with the suite's test evaluation where it has a `test`."""
        record = read_record(self.run_dir)
        return record is not None and (self.suite.test is None or has_test(record, self.suite.test))


def execute(job: Job) -> None:
    """Train (or resume from last.pt) and test `job`'s run, under its folder's lock; then delete its
    checkpoints unless kept. A finished run is left as it is."""
    if job.threads:
        torch.set_num_threads(job.threads)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(job.run_dir / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"{job.run_dir} is locked by another launch of this suite: waiting for it", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        record = read_record(job.run_dir) or train_run(job.suite, job.run, job.results_dir)
        test = job.suite.test
        if test is not None and not has_test(record, test):
            if not selected_checkpoint(job.run_dir).exists():
                raise ConfigError(f"{job.run_dir}: result.json has no evaluation on '{test['split']}' and the "
                                  "checkpoints were deleted after training (keep_checkpoints: false); delete its "
                                  "result.json to train it again")
            evaluate_on_test(job.run_dir, record, test)
        if not job.keep_checkpoints:
            for name in CHECKPOINTS:
                (job.run_dir / name).unlink(missing_ok=True)
    finally:
        lock.release()


def execute_in_job(job: Job) -> str | None:
    """submitit's entry: `execute(job)`; bad input comes back as its message, "<kind> error: ..." (a
    failed submitit job carries only its traceback's text, which cannot tell whether another
    attempt could help)."""
    try:
        execute(job)
    except BAD_INPUT_TYPES as err:
        return bad_input_message(err)
    return None

