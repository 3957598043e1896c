"""What a backend reports about an attempt that did not finish its run, and the line of its log or
traceback that says why."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    message: str  # one line: what happened ("killed by SIGKILL", the exception)
    log: str  # where the attempt's output is
    retry: bool  # False for bad input (errors.BAD_INPUT): another attempt would fail the same way


def last_line(text: str, starts: tuple[str, ...] = ("",)) -> str:
    """The last non-empty line of `text` (a log, an error's traceback: its exception) that starts
    with one of `starts`; "" when there is none."""
    lines = [line for line in text.splitlines() if line.strip() and line.startswith(starts)]
    return lines[-1] if lines else ""
