"""What the fuzz tests (test_fuzz_files.py, test_fuzz_config.py) share: the verdict on one example
(a result, or the CLI's "<kind> error: ..." with exit code 2; anything else propagates as the
crash hypothesis reports), a guard against hangs, and byte mutations of a good file."""
from __future__ import annotations

import contextlib
import io
import re
import signal
from typing import Any, Callable

from hypothesis import settings
from hypothesis import strategies as st

from perception_mtl.cli import exits_2_on_bad_input
from perception_mtl.core.errors import BAD_INPUT

KIND_LINE = re.compile(rf"^({'|'.join(BAD_INPUT.values())}): \S")
HANG_S = 120  # one example taking longer than this is a hang (the slowest, a 1-step training, takes ~5 s)


def examples(scale: float) -> settings:
    """`scale` times the profile's max_examples (tests/conftest.py: ci 10, long 200), at least 2."""
    return settings(max_examples=max(2, round(settings.default.max_examples * scale)))


class Hang(Exception):
    """An example ran past HANG_S."""


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_S):
    """Raise Hang in this (the main) thread after `seconds`: a hang fails the example instead of CI."""
    def alarm(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def ends_well(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str | None, Any]:
    """Call `function` as a tool's `main` is called (under `exits_2_on_bad_input`): (None, its
    result), or (the message, None) after exit code 2 with a message that opens with "<kind>
    error: " and holds no traceback. A data or config error is one line; a checkpoint error adds
    the advice on the next line."""
    err = io.StringIO()
    try:
        with hang_guard(), contextlib.redirect_stderr(err):
            return None, exits_2_on_bad_input(function)(*args, **kwargs)
    except SystemExit as exit_:
        text = err.getvalue()
        message = next((i for i, line in enumerate(text.splitlines()) if KIND_LINE.match(line)), None)
        assert exit_.code == 2 and message is not None and "Traceback" not in text, text
        lines = text.splitlines()[message:]
        assert len(lines) == 1 or (lines[0].startswith("checkpoint error") and len(lines) <= 3), text
        return "\n".join(lines), None


def mutations(good: bytes) -> st.SearchStrategy[bytes]:
    """`good` cut short, with up to 4 spans replaced by random bytes (near its start and end, where
    headers and indexes are, or anywhere), or random bytes altogether."""
    n = len(good)
    at = st.one_of(st.integers(0, min(n, 256)), st.integers(max(0, n - 256), n), st.integers(0, n))
    edit = st.tuples(at, st.binary(max_size=8), st.integers(0, 8))

    def apply(edits: list[tuple[int, bytes, int]]) -> bytes:
        out = bytearray(good)
        for start, new, drop in edits:
            out[start:start + drop] = new
        return bytes(out)

    return st.one_of(st.lists(edit, min_size=1, max_size=4).map(apply),
                     st.integers(0, max(0, n - 1)).map(lambda k: good[:k]), st.binary(max_size=64))


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                      st.text(max_size=8))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=8)
