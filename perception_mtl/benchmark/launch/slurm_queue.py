"""Waiting for a submitit job on SLURM without trusting `sacct` alone.

submitit learns a job's end from its result file or from `sacct`. A job that dies without a result
(scancel, a lost node) is seen only through sacct, which fails on clusters without accounting
(submitit then logs "Bypassing sacct error" and waits forever) and which submitit asks only every
few minutes on long jobs. Here `squeue` is asked too: a job gone from it with no result, and with no
final state in sacct `lost_after_s` later, counts as lost (submitit has no such check).
"""
from __future__ import annotations

import subprocess
import time

import submitit

POLL_S = 2.0  # seconds between looks at the result file and squeue
ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,REQUEUE_HOLD,REQUEUE_FED,RESIZING,SIGNALING," \
         "STAGE_OUT,STOPPED"


def queued(job_id: str) -> bool:
    """Whether `squeue` lists the job in an active state; also True when squeue cannot answer (a
    controller restarting has not lost the job), False when it no longer knows the job id."""
    try:
        proc = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", f"--states={ACTIVE}", "--format=%T"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return True
    if proc.returncode != 0:
        return "Invalid job id" not in proc.stderr
    return bool(proc.stdout.strip())


def wait_for(job: submitit.Job, lost_after_s: float, poll_s: float = POLL_S) -> bool:
    """Wait until `job` is done (result file, or a final state in sacct); False when it left squeue
    and `lost_after_s` seconds later is still not done."""
    left_at = None
    while not job.done():
        if queued(job.job_id):
            left_at = None
        elif job.done(force_check=True):  # gone from squeue: ask sacct now, not at submitit's next look
            return True
        else:
            left_at = left_at or time.monotonic()
            if time.monotonic() - left_at > lost_after_s:
                return False
        time.sleep(poll_s)
    return True
