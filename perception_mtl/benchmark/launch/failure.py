"""What a backend reports about an attempt that did not finish its run."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    message: str  # one line: what happened ("killed by SIGKILL", the exception)
    log: str  # where the attempt's output is
    retry: bool  # False for bad input (errors.BAD_INPUT): another attempt would fail the same way
