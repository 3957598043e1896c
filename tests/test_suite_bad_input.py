"""One list of bad input (`errors.BAD_INPUT`) for the CLI and the suite launcher: each kind ends a
tool with "<kind> error: ..." and exit code 2, and fails a suite's run at its first attempt with
that message in failed.json, on every backend; a crash is retried."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception_mtl.benchmark.launch import job as job_module
from perception_mtl.benchmark.launch.job import Job, execute_in_job
from perception_mtl.benchmark.runner import RunsFailed, run_suite
from perception_mtl.benchmark.suite import Suite
from perception_mtl.cli import exits_2_on_bad_input
from perception_mtl.core.errors import BAD_INPUT

pytestmark = pytest.mark.usefixtures("quiet_wandb")
KINDS = sorted(BAD_INPUT.items(), key=lambda item: item[1])


@pytest.fixture
def quiet_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


def _suite(tmp_path: Path, world: Path) -> Suite:
    """One run (equal on seg) of 2 steps on the tiny world."""
    path = tmp_path / "one.yaml"
    path.write_text(f"""name: one
config: {{data.root: {world}, data.size: [64, 128], data.workers: 0, model.backbone: test_resnet,
          model.weights: null, train.steps: 2, train.batch_size: 2, train.eval_every: 1000, optim.warmup_steps: 1}}
wandb: {{mode: disabled}}
tasks: [seg]
seeds: [0]
baselines: false
methods: [equal]
""")
    return Suite.load(path)


@pytest.mark.parametrize("kind, label", KINDS, ids=[label for _, label in KINDS])
def test_the_cli_ends_each_kind_with_its_line_and_exit_2(capsys, kind, label):
    @exits_2_on_bad_input
    def main() -> None:
        raise kind("what is wrong\nwhat to do")

    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and capsys.readouterr().err == f"{label}: what is wrong\nwhat to do\n"


# (what train_run raises, the error failed.json records, the attempts made of 1 + 2 retries)
RUN_FAILURES = [(kind, f"{label}: planted", 1) for kind, label in KINDS] + [(RuntimeError, "RuntimeError: planted", 3)]


@pytest.mark.parametrize("kind, error, attempts", RUN_FAILURES, ids=[label for _, label in KINDS] + ["crash"])
def test_a_suite_retries_a_crash_but_never_bad_input(tiny_world, tmp_path, monkeypatch, capsys, kind, error,
                                                     attempts):
    calls = []

    def fail(suite, run, results_dir):
        calls.append(run.label)
        raise kind("planted\nadvice")

    monkeypatch.setattr(job_module, "train_run", fail)
    with pytest.raises(RunsFailed):
        run_suite(_suite(tmp_path, tiny_world), tmp_path / "out", ["launcher.backend=sequential", "launcher.retries=2"])
    failed = json.loads((tmp_path / "out/runs/equal/seed0/failed.json").read_text())
    assert calls == ["equal"] * attempts and failed["attempts"] == attempts and failed["error"] == error
    assert f"attempt {attempts}/3 failed ({error}); FAILED" in capsys.readouterr().out


def _corrupt_last_pt(tmp_path: Path, world: Path) -> tuple[Suite, Path]:
    """The suite's one run folder holding a truncated last.pt (the suite resumes from it)."""
    suite, out = _suite(tmp_path, world), tmp_path / "out"
    run_dir = out / suite.runs()[0].folder
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    return suite, out


def test_a_corrupt_checkpoint_fails_a_local_child_once(tiny_world, tmp_path, capsys):
    """No planted exception: the child process reads a truncated last.pt, exits 2, is not retried."""
    suite, out = _corrupt_last_pt(tmp_path, tiny_world)
    with pytest.raises(RunsFailed):
        run_suite(suite, out, ["launcher.backend=local", "launcher.retries=2", "launcher.threads=1"])
    failed = json.loads((out / "runs/equal/seed0/failed.json").read_text())
    assert failed["attempts"] == 1, failed
    assert failed["error"].startswith(f"checkpoint error: checkpoint {out}/runs/equal/seed0/last.pt is unreadable")
    assert not (out / "runs/equal/seed0/result.json").exists()


def test_a_submitit_job_returns_the_bad_input_line(tiny_world, tmp_path):
    """What a submitit job hands back to the launcher (which then does not retry it)."""
    suite, out = _corrupt_last_pt(tmp_path, tiny_world)
    message = execute_in_job(Job(suite, suite.runs()[0], out, threads=1, keep_checkpoints=True))
    assert message.startswith(f"checkpoint error: checkpoint {out}/runs/equal/seed0/last.pt is unreadable")
