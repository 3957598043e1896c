"""What every CLI in tools/ shares: bad input ends the command with exit code 2 and a short
message naming the culprit, never a traceback, at any point of a run.

Bad input is a config (ConfigError), a dataset file or frame (DatasetError, also when a DataLoader
worker read it lazily during training or evaluation), packaged weights (WeightsError), a
checkpoint (CheckpointError) or a benchmark results folder (ResultsError). Anything else is a bug
or a fault of the machine and keeps its traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


def bad_input_labels() -> dict[type[Exception], str]:
    """Exception type -> the word that opens its message ("config error: ...")."""
    from perception_mtl.analysis.results import ResultsError
    from perception_mtl.config import ConfigError
    from perception_mtl.data.files import DatasetError
    from perception_mtl.engine.checkpoint import CheckpointError
    from perception_mtl.models.weights import WeightsError

    return {ConfigError: "config error", DatasetError: "data error", WeightsError: "weights error",
            CheckpointError: "checkpoint error", ResultsError: "results error"}


def original_message(err: BaseException) -> str:
    """The message `err` was raised with. A DataLoader worker's exception arrives in the main
    process re-raised with the same type but with the worker's whole traceback as its message
    (torch's ExceptionWrapper: "Caught X in DataLoader worker process N.\\nOriginal Traceback ...");
    its last "<module>.<type>: " line holds the original message."""
    text = str(err)
    if "in DataLoader worker process" not in text.split("\n", 1)[0]:
        return text
    marker = f"{type(err).__module__}.{type(err).__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker):].strip() if at >= 0 else text.strip().splitlines()[-1]


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
            label = next((word for kind, word in bad_input_labels().items() if isinstance(err, kind)), None)
            if label is None:
                raise
            close_progress_bars()
            print(f"{label}: {original_message(err)}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped  # type: ignore[return-value]
