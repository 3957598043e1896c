"""A run whose disk fills mid-checkpoint, or whose output folder turns read-only mid-run, stops
with "output error: ..." and exit code 1 (no traceback); its last good last.pt stays loadable,
and once the disk has room again --resume finishes the run with each step logged once.

The full disk is a torch.save that writes part of the file, then raises ENOSPC (no tmpfs: mounting
one needs privileges CI may lack). The read-only folder is chmod 0o555; where that does not stop
writes (root, or CAP_DAC_OVERRIDE, as in many CI containers) the test says so and makes every
write into the folder fail with EROFS instead, as a folder remounted read-only would."""
from __future__ import annotations

import builtins
import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from perception_mtl.engine import loop as loop_module
from perception_mtl.engine.checkpoint import load_checkpoint

from helpers import TINY_TRAIN, tool_main


def _args(world: Path, out: Path, steps: int) -> list[str]:
    return [*TINY_TRAIN, f"data.root={world}", f"output_dir={out}", f"train.steps={steps}", "tasks=[seg]",
            "train.checkpoint_every=1", "train.best_metric=seg/mIoU"]


def _logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "train.jsonl").read_text().splitlines()]


def _resume_finishes(world: Path, out: Path) -> None:
    tool_main("train")([*_args(world, out, 4), "--resume"])
    assert load_checkpoint(out / "last.pt")["step"] == 4 and _logged_steps(out) == [1, 2, 3, 4]


def test_disk_full_mid_checkpoint(tiny_world, tmp_path, monkeypatch, capfd):
    out = tmp_path / "run"
    save = torch.save

    def filling(state, f, *args, **kwargs):
        if state.get("step") == 3:  # the disk is full from step 3's checkpoint on
            f.write(b"PK\x03\x04 part of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(state, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling)
    with pytest.raises(SystemExit) as exit_:
        tool_main("train")(_args(tiny_world, out, 4))
    err = capfd.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (f"output error: could not write checkpoint {out / 'last.pt'} (No space "
                                            "left on device); the previous last.pt (if any) is intact: free disk "
                                            "space, then rerun with --resume")
    assert load_checkpoint(out / "last.pt")["step"] == 2
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", save)  # space freed
    _resume_finishes(tiny_world, out)


def _writes_blocked(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("")
    except PermissionError:
        return True
    (folder / ".probe").unlink()
    return False


def _read_only(folder: Path, monkeypatch) -> str:
    """Make `folder` read-only: chmod, or where file modes do not bind this process, every open for
    writing and every new file in it failing with EROFS. -> how it was done."""
    folder.chmod(0o555)
    if _writes_blocked(folder):
        return "chmod"
    folder.chmod(0o755)
    inside = str(folder.resolve()) + os.sep

    def refuse(path) -> None:
        if os.path.abspath(os.fspath(path)).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    real_open, real_mkstemp = builtins.open, tempfile.mkstemp
    monkeypatch.setattr(builtins, "open", lambda file, mode="r", *a, **k: (
        refuse(file) if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") else None)
        or real_open(file, mode, *a, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: refuse(Path(dir or ".") / "x")
                        or real_mkstemp(*a, dir=dir, **k))
    return "EROFS (file modes do not bind this process: it runs as root)"


def test_output_folder_turning_read_only_mid_run(tiny_world, tmp_path, monkeypatch, capfd):
    out, how = tmp_path / "run", []
    save = loop_module.save_checkpoint

    def then_read_only(path, state):
        save(path, state)
        if Path(path).name == "last.pt" and state["step"] == 2:
            how.append(_read_only(out, monkeypatch))

    monkeypatch.setattr(loop_module, "save_checkpoint", then_read_only)
    with pytest.raises(SystemExit) as exit_:
        tool_main("train")(_args(tiny_world, out, 4))
    err = capfd.readouterr().err
    print(f"read-only folder made by {how[0]}")
    assert exit_.value.code == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"output error: could not write {out / 'train.jsonl'} (") and last.endswith(
        f"); last.pt is intact: make {out} writable, then rerun with --resume"), last
    monkeypatch.undo()  # writable again
    out.chmod(0o755)
    assert load_checkpoint(out / "last.pt")["step"] == 2 and not (out / "metrics.json").exists()
    _resume_finishes(tiny_world, out)
