"""The submitit backend: each run one submitit job (`job.execute_in_job`), on SLURM (one sbatch
job per run, with the suite's partition, GPUs, CPUs, memory and time) or, without SLURM, as a
local process through submitit's LocalExecutor, the same code path. Job files and logs land in
<results>/launch/submitit/."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import submitit

from perception_mtl.benchmark.launch.failure import Failure
from perception_mtl.benchmark.launch.job import Job, execute_in_job
from perception_mtl.benchmark.launch.settings import LauncherConfig, submitit_cluster
from perception_mtl.benchmark.launch.slurm_queue import wait_for


def job_parameters(launcher: LauncherConfig, name: str) -> dict[str, Any]:
    """AutoExecutor.update_parameters of one run: one node, one task, `gpus_per_run` GPUs,
    `cpus_per_run` (else `threads`) CPUs, `mem_gb`, `timeout_min`, plus slurm_<key> for the
    partition and every `slurm:` entry (account, qos, constraint, ...)."""
    params: dict[str, Any] = {"name": name, "nodes": 1, "tasks_per_node": 1, "timeout_min": launcher.timeout_min,
                              "gpus_per_node": launcher.gpus_per_run or 0}
    cpus = launcher.cpus_per_run or launcher.threads
    if cpus:
        params["cpus_per_task"] = cpus
    if launcher.mem_gb:
        params["mem_gb"] = launcher.mem_gb
    if launcher.partition:
        params["slurm_partition"] = launcher.partition
    params.update({f"slurm_{key}": value for key, value in launcher.slurm.items()})
    return params


def executor(launcher: LauncherConfig, folder: Path, name: str, cluster: str | None = None) -> submitit.AutoExecutor:
    """The configured AutoExecutor on `cluster` (default: the launcher's)."""
    ex = submitit.AutoExecutor(folder=folder, cluster=cluster or submitit_cluster(launcher))
    ex.update_parameters(**job_parameters(launcher, name))
    return ex


def last_line(text: str) -> str:
    """The last non-empty line of an error's text (a traceback's exception)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class SubmititBackend:
    def __init__(self, launcher: LauncherConfig, folder: Path, name: str):
        self.executor = executor(launcher, folder, name)
        self.lost_after_s = launcher.lost_after_s if submitit_cluster(launcher) == "slurm" else None
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
