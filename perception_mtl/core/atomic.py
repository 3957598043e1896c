"""Atomic file writes, the package's one way to replace a file: a temporary file in the target's
folder, fsync, then a rename, so that the target is always either the old or the new complete file;
the new file gets the mode a plain `open` would give it under the user's umask (tempfile.mkstemp
makes it 0600)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def umask_mode() -> int:
    """0o666 less the process's umask: the mode of a file `open(path, "w")` creates."""
    mask = os.umask(0)  # reading the umask means setting it; set it straight back
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(f)` on a temporary file next to `path`, fsync it, give it the umask's mode and
    rename it onto `path`. On any exception the temporary file is removed and `path` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode()))
