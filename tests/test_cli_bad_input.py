"""The nine bad inputs of docs/FAULTS.md's "Faults and bad input": each ends the CLI with exit code 2 and a
message of at most three lines naming the culprit, without a traceback, at any point of a run
(also when a DataLoader worker reads a truncated image during training or evaluation). Also:
a second run into a folder that holds one is refused, --overwrite replaces it, a resumed run's
logs hold each step once, best.pt holds the weights only, and files follow the umask."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from perception_mtl.core.errors import original_message
from perception_mtl.data.files import DatasetError
from perception_mtl.engine.trainer import Trainer

from helpers import TINY_TRAIN, tiny_config, tool_main

ROOT = Path(__file__).resolve().parents[1]


def _exit_2(capsys, tool: str, *argv: str) -> list[str]:
    """Run the tool in-process; assert exit code 2 and no traceback; return the message's lines
    (what the tool printed from its "<kind> error:" line on, after any closed progress bar)."""
    with pytest.raises(SystemExit) as exit_:
        tool_main(tool)(list(argv))
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err, err
    starts = [err.rfind(f"{kind} error: ") for kind in ("config", "data", "checkpoint")]
    assert max(starts) >= 0, err
    return err[max(starts):].strip().splitlines()


def _truncated_copy(world: Path, out: Path, split: str) -> Path:
    """A copy of `world` whose every image of `split` is cut in half (PIL: "image file is truncated")."""
    shutil.copytree(world, out)
    for png in (out / "leftImg8bit" / split).rglob("*.png"):
        png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    return out


@pytest.mark.parametrize("argv, expected", [
    (["train.stesp=10"], "unknown key 'train.stesp'; did you mean train.steps?"),
    (["train.steps=abc"], "train.steps must be int, got 'abc'"),
    (["balancer.name=nashmt"], "balancer.name='nashmt' is not valid (did you mean nashmtl?); choose from"),
    (["--config", "/nonexistent/exp.yaml"], "config file /nonexistent/exp.yaml does not exist"),
], ids=["misspelt key", "bad type", "unknown balancer", "missing --config"])
def test_config_errors_are_one_short_line(capsys, argv, expected):
    lines = _exit_2(capsys, "train", *argv)
    assert len(lines) == 1 and expected in lines[0], lines


def test_missing_root_names_the_folder_the_layout_and_the_command(capsys, tmp_path):
    lines = _exit_2(capsys, "train", *TINY_TRAIN, "data.root=/nonexistent/world", f"output_dir={tmp_path / 'run'}")
    assert lines[0] == "data error: no folder /nonexistent/world/leftImg8bit/train"
    assert lines[-1].strip() == "python tools/make_synthetic.py --out /nonexistent/world --train 3000 --val 500"


def test_missing_checkpoint(capsys):
    lines = _exit_2(capsys, "evaluate", "--checkpoint", "/nonexistent/last.pt")
    assert lines == ["checkpoint error: no checkpoint at /nonexistent/last.pt; evaluate the last.pt or best.pt of a "
                     "run that finished writing it"]


@pytest.mark.parametrize("content, reason", [
    (b"", "EOFError: Ran out of input; the file has 0 bytes"),
    (b"PK\x03\x04" + b"\x00" * 60, "RuntimeError: PytorchStreamReader failed reading zip archive"),
    (b"not a checkpoint", "UnpicklingError: invalid load key, 'n'"),
], ids=["empty", "truncated zip", "garbage"])
def test_corrupt_checkpoint_gives_a_reason_and_evaluation_advice(capsys, tmp_path, content, reason):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    lines = _exit_2(capsys, "evaluate", "--checkpoint", str(path))
    assert len(lines) <= 3 and f"checkpoint {path} is unreadable ({reason}" in lines[0], lines
    assert "evaluate the last.pt or best.pt of a run" in lines[-1] and "afresh" not in "".join(lines)


def test_a_torch_file_that_is_not_a_checkpoint_is_named(capsys, tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    lines = _exit_2(capsys, "evaluate", "--checkpoint", str(tmp_path / "other.pt"))
    assert lines[0].startswith(f"checkpoint error: {tmp_path / 'other.pt'} is not a perception_mtl checkpoint")


@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_image_during_training(capsys, tiny_world, tmp_path, workers):
    bad = _truncated_copy(tiny_world, tmp_path / "world", "train")
    lines = _exit_2(capsys, "train", *TINY_TRAIN, f"data.root={bad}", f"output_dir={tmp_path / 'run'}",
                    "train.steps=2", f"data.workers={workers}")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"data error: cannot read {bad}/leftImg8bit/train/")
    assert lines[0].endswith("(corrupt or not an image): image file is truncated")


@pytest.mark.parametrize("workers", [0, 1])
def test_truncated_image_during_evaluation(capsys, tiny_world, tmp_path, workers):
    Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=1")).fit()
    bad = _truncated_copy(tiny_world, tmp_path / "world", "val")
    lines = _exit_2(capsys, "evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), f"data.root={bad}",
                    f"data.workers={workers}")
    assert len(lines) == 1 and lines[0].startswith(f"data error: cannot read {bad}/leftImg8bit/val/"), lines


def test_a_worker_error_keeps_its_type_and_message():
    """torch re-raises a worker's exception with its type and the worker's traceback as message."""
    wrapped = DatasetError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                           "call last):\n  File \"x.py\", line 1, in f\nperception_mtl.data.files.DatasetError: "
                           "cannot read a.png (corrupt or not an image): image file is truncated\n")
    assert original_message(wrapped) == "cannot read a.png (corrupt or not an image): image file is truncated"
    assert original_message(DatasetError("missing file b.png")) == "missing file b.png"


def test_a_second_run_is_refused_overwrite_replaces_it_resume_continues_without_duplicate_steps(capsys, tiny_world,
                                                                                               tmp_path):
    out = tmp_path / "run"
    args = [*TINY_TRAIN, f"data.root={tiny_world}", f"output_dir={out}", "train.checkpoint_every=2", "tasks=[seg]",
            "train.best_metric=seg/mIoU"]
    tool_main("train")([*args, "train.steps=2"])
    lines = _exit_2(capsys, "train", *args, "train.steps=2")
    assert lines == [f"config error: {out} already holds a run (last.pt, best.pt, train.jsonl, metrics.jsonl); pass "
                     "--resume to continue it, --overwrite to replace it, or output_dir=<another folder>"]
    assert _exit_2(capsys, "train", *args, "--resume", "--overwrite")[0].startswith("config error: --resume continues")
    (out / "eval_val.json").write_text("{}")
    tool_main("train")([*args, "train.steps=3", "--overwrite"])
    assert not (out / "eval_val.json").exists()
    assert [json.loads(line)["step"] for line in (out / "train.jsonl").read_text().splitlines()] == [1, 2, 3]
    # killed after logging step 4, before its checkpoint: the resumed run logs step 4 again, once
    (out / "train.jsonl").write_text((out / "train.jsonl").read_text() + json.dumps({"step": 4}) + "\n")
    tool_main("train")([*args, "train.steps=5", "--resume"])  # continues from last.pt at step 3
    assert [json.loads(line)["step"] for line in (out / "train.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_best_pt_holds_weights_only_and_files_follow_the_umask(tiny_world, tmp_path):
    old = os.umask(0o027)
    try:
        Trainer(tiny_config(tiny_world, tmp_path / "run", "train.steps=1")).fit()
    finally:
        os.umask(old)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert set(best) == {"model", "step", "best", "config"} and "optimizer" in last
    assert (tmp_path / "run" / "best.pt").stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size / 2
    for name in ("best.pt", "last.pt", "curves_train.png", "train.jsonl"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o640, name


def test_the_decorator_leaves_other_errors_alone():
    from perception_mtl.cli import exits_2_on_bad_input

    @exits_2_on_bad_input
    def broken() -> None:
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        broken()
