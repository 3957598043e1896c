"""The local backend: each run in a child process of its own, with `threads` torch threads and its
output in its log file; several at once from the dispatcher's thread pool.

Children are forked from a multiprocessing forkserver that has imported the package, torch and
timm once (importing them takes about 6 s of CPU per process), so a run starts at once. They see
the environment of the moment the forkserver started (the first run of this Python process).
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
from pathlib import Path

from perception_mtl.benchmark.launch.failure import Failure, last_line
from perception_mtl.benchmark.launch.job import BAD_INPUT_EXIT, Job, execute
from perception_mtl.core.errors import BAD_INPUT, BAD_INPUT_TYPES, bad_input_message

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["perception_mtl.benchmark.launch.job"])


def die_with_launcher() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux's PR_SET_PDEATHSIG, which
    Python exposes only through ctypes). The parent is the forkserver, which exits with the
    launcher: a killed suite leaves no run training on. Elsewhere an orphaned run trains on under
    its folder's lock, and a new launch waits for it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def child(job: Job, log: str, gpu: str | None = None) -> None:
    """The child process: output to `log`, die with the launcher, see only GPU `gpu` when given
    (set before anything starts CUDA here), execute `job` (exit code 2 on bad input, which is not
    retried)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    die_with_launcher()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    print(f"{job.name}: process {os.getpid()}, {job.threads or 'default'} threads"
          f"{f', GPU {gpu}' if gpu is not None else ''}", flush=True)
    try:
        execute(job)
    except BAD_INPUT_TYPES as err:
        print(bad_input_message(err), file=sys.stderr, flush=True)
        sys.exit(BAD_INPUT_EXIT)


class LocalBackend:
    """`gpus`: one GPU id per worker (launch/gpus.gpu_slots); a run takes a free one for its
    attempt and gives it back after, so runs at once never share a slot."""

    def __init__(self, logs: Path, gpus: list[str] = ()):
        self.logs = logs
        self.free: queue.Queue[str] = queue.Queue()
        for gpu in gpus:
            self.free.put(gpu)
        self.gpus = bool(gpus)

    def attempt(self, job: Job) -> Failure | None:
        """Run `job` in a child process (on a free GPU when there are any) and wait for it; None
        when it exited 0."""
        log = job.log_file(self.logs)
        gpu = self.free.get() if self.gpus else None
        try:
            process = CONTEXT.Process(target=child, args=(job, str(log), gpu), name=job.name)
            process.start()
            process.join()
        finally:
            if gpu is not None:
                self.free.put(gpu)
        code = process.exitcode
        if code == 0:
            return None
        if code < 0:
            return Failure(f"killed by {signal.Signals(-code).name}", str(log), retry=True)
        output = log.read_text(errors="replace")
        if code == BAD_INPUT_EXIT:  # the child's "<kind> error: ..." line, as the other backends report it
            return Failure(last_line(output, tuple(BAD_INPUT.values())) or "(no output)", str(log), retry=False)
        return Failure(f"exit code {code}: {last_line(output) or '(no output)'}", str(log), retry=True)
