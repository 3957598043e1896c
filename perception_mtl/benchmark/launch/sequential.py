"""The sequential backend: each run in this process, one after another; its output (the training
bar, warnings, tracebacks) goes to its log file so that the suite prints one line per run."""
from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

from perception_mtl.benchmark.launch.failure import Failure
from perception_mtl.benchmark.launch.job import Job, execute
from perception_mtl.core.errors import bad_input_message


class SequentialBackend:
    def __init__(self, logs: Path):
        self.logs = logs

    def attempt(self, job: Job) -> Failure | None:
        """Execute `job` here; None when its run finished."""
        log = job.log_file(self.logs)
        with log.open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                execute(job)
            except Exception as err:  # noqa: BLE001 (any error of one run: logged, reported, retried)
                traceback.print_exc()
                bad_input = bad_input_message(err)
                return Failure((bad_input or f"{type(err).__name__}: {err}").splitlines()[0], str(log),
                               retry=bad_input is None)
        return None
