"""The submitit backend: each run one submitit job (`job.execute_in_job`), on SLURM (one sbatch
job per run, with the suite's partition, GPUs, CPUs, memory and time) or, without SLURM, as a
local process through submitit's LocalExecutor, the same code path. Job files and logs land in
<results>/launch/submitit/. `launch/settings.py` turns the suite's `launcher:` into its arguments."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import submitit

from perception_mtl.benchmark.launch.failure import Failure, last_line
from perception_mtl.benchmark.launch.job import Job, execute_in_job
from perception_mtl.benchmark.launch.slurm_queue import wait_for


def executor(folder: Path, cluster: str, parameters: dict[str, Any]) -> submitit.AutoExecutor:
    """An AutoExecutor on `cluster` ("slurm" or "local") with one run's `parameters`
    (launch/settings.job_parameters)."""
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster)
    ex.update_parameters(**parameters)
    return ex


class SubmititBackend:
    """Jobs on `cluster` with `parameters`, their files under `folder`. `lost_after_s`: how long a
    job may be gone from squeue with no result before it counts as lost (SLURM; None: submitit's
    own wait, as for local processes)."""

    def __init__(self, folder: Path, cluster: str, parameters: dict[str, Any], lost_after_s: float | None):
        self.executor = executor(folder, cluster, parameters)
        self.lost_after_s = lost_after_s
        self.submitting = threading.Lock()  # the pool's threads submit; submitit's executor is not documented thread-safe

    def attempt(self, job: Job) -> Failure | None:
        """Submit `job` and wait for it; None when its run finished."""
        with self.submitting:
            try:
                submitted = self.executor.submit(execute_in_job, job)
            except submitit.core.utils.FailedSubmissionError as err:  # sbatch refused it: partition, account, ...
                return Failure(f"submission refused: {last_line(str(err))}", str(self.executor.folder), retry=False)
        if self.lost_after_s is not None and not wait_for(submitted, self.lost_after_s):
            return Failure(f"submitit job {submitted.job_id}: left squeue with no result and no final state in sacct "
                           f"for {self.lost_after_s:g} s (cancelled, or its node lost)", str(submitted.paths.stderr),
                           retry=True)
        try:
            bad_input = submitted.result()
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as err:
            return Failure(f"submitit job {submitted.job_id}: {last_line(str(err)) or type(err).__name__}",
                           str(submitted.paths.stderr), retry=True)
        if bad_input:
            return Failure(bad_input.splitlines()[0], str(submitted.paths.stderr), retry=False)
        return None
