"""What every CLI in tools/ shares: bad input ends the command with exit code 2 and a short
message naming the culprit, never a traceback, at any point of a run.

Bad input is one of `errors.BAD_INPUT` (the list the suite launcher shares): a config, a dataset
file or frame (also when a DataLoader worker read it lazily during training or evaluation),
packaged weights, a checkpoint or a benchmark results folder. Anything else is a bug or a fault of
the machine and keeps its traceback, but for output that cannot be written (errors.OutputError:
disk full, a read-only folder), which ends with "output error: ..." and exit code 1.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

from perception_mtl.core.errors import OutputError, bad_input_message

F = TypeVar("F", bound=Callable[..., object])


def close_progress_bars() -> None:
    """Close the tqdm bars an exception left open, so that the message starts on a line of its own
    and is the last thing printed (a bar closed later, when collected, would print itself again).
    tqdm has no public list of open bars; `tqdm._instances` is the set its own `write` uses."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def exits_2_on_bad_input(main: F) -> F:
    """Decorate a tool's `main`: a bad-input exception anywhere inside it becomes its message on
    stderr, "<kind> error: <message>", and exit code 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as err:
            message = bad_input_message(err)
            if message is None and not isinstance(err, OutputError):
                raise
            close_progress_bars()
            print(message or f"output error: {err.strerror}", file=sys.stderr)
            raise SystemExit(2 if message else 1) from None

    return wrapped  # type: ignore[return-value]
