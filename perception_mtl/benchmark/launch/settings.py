"""The suite's `launcher:` settings: which backend runs the runs, how many at once, with how many
threads each, how often a failed run is retried, and the SLURM resources of one run; and the
backend table, `BACKENDS`: each valid `backend` name and the factory that builds its backend.

    launcher: {backend: local, workers: 2, threads: 1, retries: 2}
    launcher: {backend: submitit, cluster: slurm, partition: gpu, gpus_per_run: 1, cpus_per_run: 8,
               mem_gb: 32, timeout_min: 240, parallel: 16, slurm: {account: my_lab}}

Command-line overrides (`launcher.backend=local launcher.workers=2`) go over the suite's keys.
Unset `backend`: `local` when the suite trains on a GPU (a process per run, one worker per visible
GPU, each worker its own GPU: launch/gpus.py), else `DEFAULT_CPU_BACKEND` (docs/CLUSTERS.md,
"Running suites in parallel and on SLURM": the measurement that picks it).

A new backend is a module of `launch/` with a class whose `attempt(job)` returns None or a
`Failure`, and a factory in `BACKENDS`; factories import their module when called, so submitit is
imported only when a suite chooses it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from perception_mtl.benchmark.launch.dispatch import Backend
from perception_mtl.benchmark.launch.gpus import gpu_slots, suite_on_gpu, visible_gpus
from perception_mtl.core.config import ConfigError

CLUSTERS = ("auto", "slurm", "local")
DEFAULT_CPU_BACKEND = "sequential"  # until tools/bench_launcher.py on an idle machine shows local faster


@dataclass
class LauncherConfig:
    backend: Optional[str] = None  # sequential | local | submitit; None: see the module docstring
    workers: Optional[int] = None  # runs at once (local, and submitit's local executor); default cores // threads
    threads: Optional[int] = None  # torch threads of each run; default here cores // workers (sequential: torch's
    # own); on SLURM cpus_per_run
    retries: int = 2  # further attempts of a failed or killed run, each resuming from its last.pt
    cluster: str = "auto"  # submitit: auto (SLURM where `srun` exists, else local processes) | slurm | local
    parallel: Optional[int] = None  # submitit on SLURM: jobs in the queue at once (default: every pending run)
    partition: Optional[str] = None  # SLURM partition
    gpus_per_run: Optional[int] = None  # SLURM's request; local: > 0 gives each worker a GPU (launch/gpus.py);
    # default 1 when the suite trains on a GPU, else 0
    cpus_per_run: Optional[int] = None  # default: threads
    mem_gb: Optional[float] = None
    timeout_min: int = 60  # wall-time limit of one job (a run over it is killed, retried, and resumes)
    lost_after_s: float = 60  # SLURM: a job gone from squeue this long with no result and no final sacct state
    # (cancelled, node lost, no accounting) counts as a failed attempt and is retried
    slurm: dict[str, Any] = field(default_factory=dict)  # further sbatch settings by name: {account: x, qos: y}


def cores() -> int:
    """CPU cores this process may use (its affinity mask, as a SLURM allocation or taskset sets it)."""
    return len(os.sched_getaffinity(0))


def launcher_config(suite_spec: dict, overrides: list[str] | tuple[str, ...] = ()) -> LauncherConfig:
    """Defaults <- the suite's `launcher:` <- `launcher.<key>=<value>` overrides, checked; the
    defaults of backend, workers and threads resolved for this machine."""
    bad = [o for o in overrides if not o.startswith("launcher.") or "=" not in o]
    if bad:
        raise ConfigError(f"{bad}: the command line takes launcher.<key>=<value> overrides only, e.g. "
                          "launcher.backend=local launcher.workers=2 (other settings belong in the suite file)")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(LauncherConfig), suite_spec.get("launcher") or {},
                              OmegaConf.from_dotlist([o.removeprefix("launcher.") for o in overrides]))
    except OmegaConfBaseException as err:
        raise ConfigError(f"launcher: {str(err).splitlines()[0]}; keys: "
                          f"{sorted(LauncherConfig.__dataclass_fields__)}") from err
    launcher: LauncherConfig = OmegaConf.to_object(cfg)
    gpu = suite_on_gpu(suite_spec)
    if launcher.backend is None:  # on a GPU, a process per run: a device-side assert stays in its run
        launcher.backend = "local" if gpu else DEFAULT_CPU_BACKEND
    if launcher.gpus_per_run is None:
        launcher.gpus_per_run = 1 if gpu else 0
    backend_factory(launcher.backend)  # a valid name
    if launcher.cluster not in CLUSTERS:
        raise ConfigError(f"launcher.cluster={launcher.cluster!r} is not valid; choose from {list(CLUSTERS)}")
    for key in ("workers", "threads", "parallel", "cpus_per_run"):
        if getattr(launcher, key) is not None and getattr(launcher, key) < 1:
            raise ConfigError(f"launcher.{key}={getattr(launcher, key)} must be >= 1")
    if launcher.backend == "submitit" and launcher.cluster == "slurm" and submitit_cluster(
            LauncherConfig(cluster="auto")) != "slurm":
        raise ConfigError("launcher.cluster=slurm, but this machine has no `srun`: submit from a SLURM login node, "
                          "or use launcher.cluster=local (submitit's local processes) or launcher.backend=sequential")
    if launcher.retries < 0:
        raise ConfigError(f"launcher.retries={launcher.retries} must be >= 0")
    n = cores()
    if launcher.backend == "sequential":
        if launcher.workers not in (None, 1):
            raise ConfigError(f"launcher.workers={launcher.workers} with backend sequential: it runs one run at a "
                              "time; use launcher.backend=local for several")
        launcher.workers = 1
    elif on_this_machine(launcher):
        per_gpu = len(visible_gpus()) if gpu and launcher.backend == "local" else 0  # one worker per GPU
        launcher.workers = launcher.workers or per_gpu or max(1, n // (launcher.threads or 1))
        launcher.threads = launcher.threads or max(1, n // launcher.workers)
    if on_this_machine(launcher) and launcher.workers * (launcher.threads or 1) > n:
        raise ConfigError(f"launcher.workers={launcher.workers} x launcher.threads={launcher.threads} exceeds the "
                          f"{n} cores here: runs would fight for them; lower one of the two")
    return launcher


def run_threads(launcher: LauncherConfig) -> int | None:
    """Torch threads of each run: `threads` here, on SLURM `threads` else `cpus_per_run`; None: torch's
    default."""
    return launcher.threads if on_this_machine(launcher) else (launcher.threads or launcher.cpus_per_run)


def on_this_machine(launcher: LauncherConfig) -> bool:
    """Whether the runs execute here (not on SLURM nodes)."""
    return launcher.backend != "submitit" or submitit_cluster(launcher) == "local"


def submitit_cluster(launcher: LauncherConfig) -> str:
    """"slurm" or "local": `cluster`, with auto as submitit's AutoExecutor decides (SLURM where
    `srun` is on the PATH)."""
    if launcher.cluster != "auto":
        return launcher.cluster
    import submitit

    return "slurm" if submitit.AutoExecutor.which() == "slurm" else "local"


def job_parameters(launcher: LauncherConfig, name: str) -> dict[str, Any]:
    """submitit's AutoExecutor.update_parameters for one run: one node, one task, `gpus_per_run`
    GPUs, `cpus_per_run` (else `threads`) CPUs, `mem_gb`, `timeout_min`, plus slurm_<key> for the
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


def make_sequential(launcher: LauncherConfig, logs: Path, name: str) -> Backend:
    """Each run in this process, one after another (launch/sequential.py)."""
    from perception_mtl.benchmark.launch.sequential import SequentialBackend

    return SequentialBackend(logs)


def make_local(launcher: LauncherConfig, logs: Path, name: str) -> Backend:
    """Each run in a child process, `workers` at once, each worker on a GPU of its own when the runs
    ask for one (launch/local.py)."""
    from perception_mtl.benchmark.launch.local import LocalBackend

    return LocalBackend(logs, gpu_slots(launcher.workers) if launcher.gpus_per_run else [])


def make_submitit(launcher: LauncherConfig, logs: Path, name: str) -> Backend:
    """Each run a submitit job named `name`, on SLURM or as a local process, its files under
    logs/submitit (launch/submitit_backend.py)."""
    from perception_mtl.benchmark.launch.submitit_backend import SubmititBackend

    cluster = submitit_cluster(launcher)
    return SubmititBackend(logs / "submitit", cluster, job_parameters(launcher, name),
                           launcher.lost_after_s if cluster == "slurm" else None)


# launcher.backend -> the factory of its backend: (launcher, logs folder, suite name) -> Backend
# (ray: not installed, see docs/CLUSTERS.md)
BACKENDS: dict[str, Callable[[LauncherConfig, Path, str], Backend]] = {
    "sequential": make_sequential, "local": make_local, "submitit": make_submitit}


def backend_factory(backend: str) -> Callable[[LauncherConfig, Path, str], Backend]:
    """The factory of `backend` in BACKENDS; a ConfigError listing the valid names for any other."""
    if backend not in BACKENDS:
        raise ConfigError(f"launcher.backend={backend!r} is not valid; choose from {list(BACKENDS)} "
                          "(ray is not supported: docs/CLUSTERS.md)")
    return BACKENDS[backend]


def make_backend(launcher: LauncherConfig, logs: Path, name: str) -> Backend:
    """The launcher's backend for suite `name`, writing its logs under `logs`."""
    return backend_factory(launcher.backend)(launcher, logs, name)
