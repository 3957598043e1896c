"""The errors of bad input, and the one list of them that the CLI (`cli.py`: exit code 2) and the
suite launcher (`benchmark/launch/`: no retry) share. They live here, at the bottom layer, so that
the modules that raise them (config, data, models, engine, analysis) and the two that catch them
all import one definition; each raising module re-exports its own error by name.

Bad input is a config, a dataset file or frame, packaged weights, a checkpoint or a benchmark
results folder: running again with the same input fails the same way. Anything else is a bug or a
fault of the machine (a crash, a kill, a full disk) and may be worth another attempt.
"""
from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path
from typing import Iterator


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what is valid."""


class DatasetError(RuntimeError):
    """A dataset root, folder or file is missing or unreadable; the message says which."""


class WeightsError(RuntimeError):
    """Packaged weights are missing for a backbone, not installed, or do not fit it."""


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not one of ours; the message names it."""


class ResultsError(ValueError):
    """A file of the results folder cannot be read; the message names it."""


class OutputError(OSError):
    """A run's output cannot be written (disk full, quota, a read-only folder); what it wrote before
    is intact. Not bad input: the CLI ends with "output error: ..." and exit code 1, a suite retries
    the run from its last.pt."""


@contextlib.contextmanager
def writing(name: str, folder: str | Path, intact: str = "") -> Iterator[None]:
    """Around writing output `name` (a file of `folder`): an OSError becomes an OutputError with
    its errno, naming the file, the reason, what is `intact` and what to do."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        fix = "free disk space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"make {folder} writable"
        raise OutputError(err.errno, f"could not write {name} ({err.strerror or err}); {intact}{fix}, then rerun "
                                     "with --resume") from err


# exception type -> the words that open its message ("config error: ..."); the one list of bad input
BAD_INPUT: dict[type[Exception], str] = {ConfigError: "config error", DatasetError: "data error",
                                         WeightsError: "weights error", CheckpointError: "checkpoint error",
                                         ResultsError: "results error"}
BAD_INPUT_TYPES: tuple[type[Exception], ...] = tuple(BAD_INPUT)


def original_message(err: BaseException) -> str:
    """The message `err` was raised with. A DataLoader worker's exception arrives in the main
    process re-raised with the same type but with the worker's whole traceback as its message
    (torch's ExceptionWrapper: "Caught X in DataLoader worker process N.\\nOriginal Traceback ...");
    its last "<module>.<type>: " line holds the original message."""
    text = str(err)
    if "in DataLoader worker process" not in text.split("\n", 1)[0]:
        return text
    # the type's line, "<module>.<type>: ", whatever module re-exports the type
    lines = list(re.finditer(rf"^(?:[\w.]+\.)?{re.escape(type(err).__qualname__)}: ", text, re.M))
    return text[lines[-1].end():].strip() if lines else text.strip().splitlines()[-1]


def bad_input_message(err: BaseException) -> str | None:
    """"<kind> error: <message>" when `err` is bad input (one of BAD_INPUT), else None."""
    label = next((word for kind, word in BAD_INPUT.items() if isinstance(err, kind)), None)
    return None if label is None else f"{label}: {original_message(err)}"
