"""Exported graphs (ONNX through ONNX Runtime, torch.export programs) against the PyTorch model on
the tiny world's frames: raw outputs within 1e-4, metrics within 1e-3 (the tiny world has 3 val
frames; `tools/export.py --check 50` runs the same check on 50 frames of a real run)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception_mtl.engine.builders import build_model, build_tasks
from perception_mtl.inference.graph_export import export_graph
from perception_mtl.inference.parity import check_parity
from perception_mtl.inference.predictor import load_model
from perception_mtl.inference.runtime import ExportedModel, onnx_session

from helpers import tiny_config, tool_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def onnx_file(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint's model as ONNX with a dynamic batch (exported at batch 2)."""
    cfg, _, model = load_model(tiny_checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    names = export_graph(model, tuple(cfg.data.size), path, "onnx", dynamic_batch=True)
    assert names == ["det.cls_logits", "det.bbox_regression", "det.bbox_ctrness", "seg", "depth"]
    return path


def _val_loader(checkpoint: Path, batch: int):
    from perception_mtl.engine.checkpoint_eval import open_checkpoint

    opened = open_checkpoint(checkpoint, "val", None, [f"train.batch_size={batch}"])
    return next(iter(opened.loaders.values()))[0]


def test_onnx_graph_matches_pytorch_on_world_frames(tiny_checkpoint, onnx_file):
    cfg, tasks, model = load_model(tiny_checkpoint)
    for batch in (3, 1):  # exported at batch 2: the batch dimension is dynamic
        parity = check_parity(model, ExportedModel(onnx_file, model.heads), tasks,
                              _val_loader(tiny_checkpoint, batch), tuple(cfg.data.size))
        assert parity.frames == 3
        assert set(parity.raw) == {"det.cls_logits", "det.bbox_regression", "det.bbox_ctrness", "seg", "depth"}
        assert max(parity.raw.values()) <= 1e-4, parity.raw
        assert set(parity.torch_metrics) == set(parity.graph_metrics) and "det/mAP" in parity.torch_metrics
        assert max(parity.metric_diff.values()) <= 1e-3, parity.metric_diff
        assert parity.passes()
        assert 0 < parity.torch_metrics["seg/pixel_acc"] < 1  # predictions that the metrics can tell apart


def test_parity_check_notices_a_different_graph(tiny_checkpoint, onnx_file):
    cfg, tasks, model = load_model(tiny_checkpoint)
    with torch.no_grad():
        model.heads["depth"].out.bias += 0.5  # the PyTorch side changed after export
    parity = check_parity(model, ExportedModel(onnx_file, model.heads), tasks, _val_loader(tiny_checkpoint, 3),
                          tuple(cfg.data.size))
    assert parity.raw["depth"] == pytest.approx(0.5, abs=1e-3) and parity.raw["seg"] <= 1e-4
    assert not parity.passes()


def test_fixed_batch_graph_and_torch_export_program(tiny_checkpoint, tmp_path):
    cfg, tasks, model = load_model(tiny_checkpoint)
    export_graph(model, tuple(cfg.data.size), tmp_path / "fixed.onnx", "onnx")
    assert onnx_session(tmp_path / "fixed.onnx").get_inputs()[0].shape == [1, 3, *cfg.data.size]
    export_graph(model, tuple(cfg.data.size), tmp_path / "m.pt2", "torch_export", dynamic_batch=True)
    parity = check_parity(model, ExportedModel(tmp_path / "m.pt2", model.heads), tasks,
                          _val_loader(tiny_checkpoint, 3), tuple(cfg.data.size))
    assert parity.passes() and parity.frames == 3


@pytest.mark.parametrize("extra", [
    ("tasks=[scene,drivable,edges,noise]", "aux_tasks=[noise]"),  # the other heads
    ("model.branch=backbone",),  # an FPN per task
    ("model.sharing=soft",),
    ("model.sharing=cross_stitch",),
])
def test_other_heads_and_sharing_schemes_export(tiny_world, tmp_path, extra):
    cfg = tiny_config(tiny_world, tmp_path, *extra)
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks).eval()
    names = export_graph(model, tuple(cfg.data.size), tmp_path / "m.onnx", "onnx", dynamic_batch=True)
    images = torch.rand(3, 3, *cfg.data.size, generator=torch.Generator().manual_seed(0))
    graph = ExportedModel(tmp_path / "m.onnx", model.heads)
    with torch.no_grad():
        ours, theirs = model(images), graph(images)
    assert list(theirs) == list(tasks) and len(names) >= len(tasks)
    for task, value in ours.items():
        for key, tensor in (value.items() if isinstance(value, dict) else [("", value)]):
            other = theirs[task][key] if key else theirs[task]
            assert other.shape == tensor.shape and (other - tensor).abs().max() <= 1e-4, (task, key)


@pytest.mark.slow  # 9 min for the six on the loaded 2-core machine
@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0", "mobilenetv3_large_100", "convnext_atto",
                                      "regnetx_002", "efficientvit_b0"])
def test_backbones_export(tiny_world, tmp_path, backbone):
    """Random-init timm backbones (no download) with the three heads, raw outputs within 1e-4."""
    cfg = tiny_config(tiny_world, tmp_path, f"model.backbone={backbone}", "data.size=[128,256]")
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks).eval()
    export_graph(model, tuple(cfg.data.size), tmp_path / "m.onnx", "onnx", dynamic_batch=True)
    images = torch.rand(2, 3, *cfg.data.size, generator=torch.Generator().manual_seed(0))
    graph = ExportedModel(tmp_path / "m.onnx", model.heads)
    with torch.no_grad():
        ours, theirs = model(images), graph(images)
    assert (theirs["seg"] - ours["seg"]).abs().max() <= 1e-4
    assert (theirs["depth"] - ours["depth"]).abs().max() <= 1e-4
    assert (theirs["det"]["cls_logits"] - ours["det"]["cls_logits"]).abs().max() <= 1e-4


def test_export_cli_checks_parity_and_rejects_bad_input(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        tool_main("export")(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "m.onnx"), "--check", "3"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "PASS" in out and "raw det.cls_logits" in out
    with pytest.raises(SystemExit) as done:
        tool_main("export")(["--checkpoint", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "missing.pt" in err and "Traceback" not in err
