"""Waiting for a submitit job on SLURM without trusting `sacct` alone.

submitit learns a job's end from its result file or from `sacct`. A job that dies without a result
(scancel, a lost node) is seen only through sacct, which fails on clusters without accounting
(submitit then logs "Bypassing sacct error" and waits forever) and which submitit asks only every
few minutes on long jobs. Here `squeue` is asked too: a job gone from it with no result, and with no
final state in sacct `lost_after_s` later, counts as lost (submitit has no such check). One squeue
call every SQUEUE_EVERY_S serves every waiting thread, so a suite of many jobs does not flood the
controller.
"""
from __future__ import annotations

import math
import os
import subprocess
import threading
import time

import submitit

POLL_S = 2.0  # seconds between looks at a job's result file
SQUEUE_EVERY_S = 5.0  # seconds between squeue calls, shared by all jobs
ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,REQUEUE_HOLD,REQUEUE_FED,RESIZING,SIGNALING," \
         "STAGE_OUT,STOPPED"


class Queue:
    """This user's active SLURM job ids, as squeue last listed them, and when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.asked_at, self.ids = -math.inf, None

    def listing(self) -> tuple[float, frozenset[str] | None]:
        """(time of the listing, job ids); ids None when squeue could not answer (a controller
        restarting has not lost the jobs). Asks squeue when the last listing is SQUEUE_EVERY_S old."""
        with self.lock:
            if time.monotonic() - self.asked_at >= SQUEUE_EVERY_S:
                self.asked_at, self.ids = time.monotonic(), ask_squeue()
            return self.asked_at, self.ids


def ask_squeue() -> frozenset[str] | None:
    try:
        proc = subprocess.run(["squeue", "--noheader", f"--user={os.getuid()}", f"--states={ACTIVE}", "--format=%i"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return frozenset(proc.stdout.split()) if proc.returncode == 0 else None


QUEUE = Queue()


def wait_for(job: submitit.Job, lost_after_s: float, poll_s: float = POLL_S) -> bool:
    """Wait until `job` is done (result file, or a final state in sacct); False when squeue listings
    taken after its submission have not shown it for `lost_after_s` seconds and it is still not done."""
    submitted, left_at, looked_at = time.monotonic(), None, None
    while not job.done():
        asked_at, ids = QUEUE.listing()
        if ids is not None and asked_at > submitted and asked_at != looked_at:  # a new listing that can show it
            looked_at = asked_at
            if job.job_id in ids:
                left_at = None
            elif job.done(force_check=True):  # gone from squeue: ask sacct now, not at submitit's next look
                return True
            else:
                left_at = left_at or asked_at
        if left_at is not None and time.monotonic() - left_at > lost_after_s:
            return False
        time.sleep(poll_s)
    return True
