"""Every CLI in tools/ answers a bad argument with a message saying what to do and exit code 2,
never a traceback. The tools run in-process (their `main`), one also as a real subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import tool_main

ROOT = Path(__file__).resolve().parents[1]
NOWHERE = "/nonexistent/perception_mtl"

CASES = [  # tool, arguments, what the message must say
    ("train", ["--config", f"{NOWHERE}/exp.yaml"], "does not exist"),
    ("train", ["train.steps=0"], "train.steps must be >= 1"),
    ("train", ["tasks={}"], "wrong shape"),
    ("train", ["tasks=,"], "write key=value"),
    ("train", ["--bogus"], "unrecognized arguments"),
    ("train", ["train.device=gpu"], "choose from auto, cpu, cuda, cuda:N"),
    ("evaluate", ["--checkpoint", f"{NOWHERE}/last.pt"], "no checkpoint at"),
    ("evaluate", ["--checkpoint", "{garbage}"], "is unreadable (UnpicklingError: invalid load key"),
    ("evaluate", ["--checkpoint", "{garbage}", "--limit", "many"], "invalid int value"),
    ("benchmark", ["--suite", f"{NOWHERE}/suite.yaml"], "no suite file"),
    ("benchmark", ["--suite", "{bad_suite}"], "balancer.name='nope' is not valid; choose from"),
    ("benchmark", [], "the following arguments are required: --suite"),
    ("leaderboard", [NOWHERE], "make them with"),
    ("analyze_transfer", [NOWHERE], "make them with"),
    ("make_synthetic", ["--out", "{tmp}/w", "--train", "-1"], "frame counts must be >= 0"),
    ("make_synthetic", ["--out", "{tmp}/w", "--difficulty", "2"], "--difficulty must be in [0, 1]"),
    ("make_synthetic", ["--out", "{garbage}/w", "--train", "1", "--val", "0"], "cannot write"),
    ("make_synthetic", ["--out", "{tmp}/w", "--train", "1", "--val", "0", "--workers", "0"], "--workers must be >= 1"),
    ("show_samples", ["--root", NOWHERE], "make_synthetic.py"),
    ("wandb_dashboard", ["--project", "p", "--tasks", ","], "--tasks names no task"),
    ("wandb_dashboard", [], "the following arguments are required: --project"),
    ("bench_balancers", ["--methods", "nope"], "choose from"),
    ("bench_balancers", ["train.stepz=3"], "unknown key 'train.stepz'"),
    ("bench_balancers", ["--steps", "0"], "--steps must be >= 1"),
    ("bench_balancers", [f"data.root={NOWHERE}", "model.backbone=test_resnet", "model.weights=null"], "make_synthetic.py"),
    ("bench_sharing", [f"data.root={NOWHERE}", "model.backbone=test_resnet", "model.weights=null"], "make_synthetic.py"),
    ("bench_sharing", ["--schemes", "nope"], "--schemes must include hard"),
    ("bench_sharing", ["--steps", "-1"], "--steps must be >= 1"),
    ("bench_speed", ["--steps", "0"], "--steps and --eval-frames must be >= 1"),
    ("bench_speed", ["model.backbone=resnet18"], "Add model.weights=null"),
    ("bench_speed", [f"data.root={NOWHERE}"], "make_synthetic.py"),
    ("bench_decoders", ["--batch", "1"], "--batch must be >= 2"),
    ("bench_decoders", ["task.seg.decoder=nope"], "choose from ['light', 'fpn', 'deeplabv3plus', 'unet']"),
    ("bench_inference", ["train.stepz=3"], "unknown key 'train.stepz'; did you mean train.steps?"),
    ("bench_launcher", ["--suite", f"{NOWHERE}/s.yaml", "--out", "{tmp}/bl", "--launch", "launcher.backend=sequential"],
     "no suite file"),
    ("export", ["--checkpoint", f"{NOWHERE}/last.pt", "--out", "{tmp}/m.onnx"], "no checkpoint at"),
    ("predict", ["--checkpoint", f"{NOWHERE}/last.pt", "--input", "{image}", "--out", "{tmp}/p"], "no checkpoint at"),
    ("show_predictions", ["--checkpoint", f"{NOWHERE}/last.pt"], "no checkpoint at"),
    ("make_video", ["--frames", "{tmp}", "--out", "{tmp}/v.mp4"], "holds no .png/.jpg/.jpeg images"),
    ("screenshot_page", [f"{NOWHERE}/p.html", "{tmp}/s.png"], "no page at"),
    ("toy", ["--methods", "nope", "--out", "{tmp}/toy"], "unknown method(s) ['nope'], choose from"),
    ("toy", ["--steps", "0", "--out", "{tmp}/toy"], "--steps must be >= 1"),
]


@pytest.fixture
def paths(tmp_path) -> dict[str, str]:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: bad\ntasks: [det]\nseeds: [0]\nmethods: [nope]\n")
    image = tmp_path / "input" / "frame.png"  # in a folder of its own: {tmp} must hold no image (make_video's case)
    image.parent.mkdir()
    Image.new("RGB", (32, 16)).save(image)
    return {"tmp": str(tmp_path), "garbage": str(garbage), "bad_suite": str(suite), "image": str(image)}


def test_every_tool_is_covered():
    assert {t for t, _, _ in CASES} == {p.stem for p in (ROOT / "tools").glob("*.py")}


@pytest.mark.parametrize("tool, args, expected", CASES, ids=[f"{t}:{' '.join(a)}" for t, a, _ in CASES])
def test_bad_argument_exits_2_with_advice(tool, args, expected, paths, capsys, monkeypatch):
    argv = list(args)
    for key, value in paths.items():
        argv = [a.replace(f"{{{key}}}", value) for a in argv]
    monkeypatch.setattr(sys, "argv", [f"{tool}.py", *argv])
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(SystemExit) as exit_:
        tool_main(tool)()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err


def test_a_real_subprocess_exits_2_without_a_traceback():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--checkpoint", f"{NOWHERE}/x.pt"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "no checkpoint at" in proc.stderr and "Traceback" not in proc.stderr
