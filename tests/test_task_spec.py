"""The Task spec is the one home of per-task facts, and a new task (surface normals) is one file:
the world writes exact normals, the Cityscapes loader reads them, and the task trains,
evaluates, exports and shows up on the dashboard and in the transfer report."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from perception_mtl.balancing.uncertainty import UncertaintyWeighting
from perception_mtl.data.cityscapes import CityscapesDataset
from perception_mtl.data.collate import collate
from perception_mtl.data.partial import LabelView
from perception_mtl.data.targets import TARGETS, TASK_TARGETS
from perception_mtl.data.world.generate import WorldSpec, render_frame
from perception_mtl.data.world.render import camera_normals
from perception_mtl.engine.evaluator import evaluate_parts
from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.engine.trainer import Trainer
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.base import Task
from perception_mtl.tasks.normals import Normals, NormalsMetric, read_normals
from perception_mtl.tracking.dashboard import higher_is_better, key_metrics
from perception_mtl.tracking.media import media_panels

from helpers import tiny_config


def test_every_registered_task_declares_its_facts():
    for name in TASKS.names():
        cls = TASKS.get(name)
        assert cls.name == name and cls.primary in cls.directions and cls.loss_form in ("classification", "regression")
        assert TASK_TARGETS[name] == tuple(cls.targets)
    # edges is binary cross-entropy: classification, not the regression default it used to fall to
    assert UncertaintyWeighting(["edges", "depth"]).factor == {"edges": 1.0, "depth": 0.5}


def test_a_task_with_an_inconsistent_spec_is_refused_at_registration():
    class Bad(Task):
        name, primary, loss_form, directions = "bad", "nope", "regression", {"mse": False}

    with pytest.raises(ValueError, match="primary metric 'nope'"):
        TASKS.register("bad")(Bad)
    assert "bad" not in TASKS


def test_world_normals_are_exact_unit_vectors_facing_the_camera():
    frame = render_frame(WorldSpec(height=64, width=128), "train", 0)
    n, valid = frame.normals, frame.depth > 0
    assert np.allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-6) and not n[~valid].any()
    ground = valid & np.isin(frame.labels, [7, 8])  # road and sidewalk: the plane y = 0
    up_in_camera = camera_normals(np.ones((1, 1), np.int8), -np.ones((3, 1, 1)), frame.camera)[0, 0]
    assert np.allclose(n[ground], up_in_camera, atol=1e-6)
    assert up_in_camera[1] == pytest.approx(-math.cos(frame.camera.pitch))  # camera y points down
    # facing the camera: the normal and the viewing ray point against each other
    rays = np.einsum("ij,jhw->hwi", frame.camera.rotation.T, frame.camera.rays())
    assert (np.einsum("hwi,hwi->hw", n, rays)[valid] < 0).all()


def test_loader_reads_normals_and_a_flip_mirrors_them(tiny_world):
    ds = CityscapesDataset(tiny_world, "train", ("normals",))
    sample = ds[0]
    png = read_normals(ds.path(0, "normals", "_normals.png"), (64, 128))
    assert isinstance(sample["normals"], Normals) and torch.equal(sample["normals"], png)
    flipped = v2.RandomHorizontalFlip(1.0)(png)
    assert torch.equal(flipped[0], -png[0].flip(-1)) and torch.equal(flipped[1:], png[1:].flip(-1))
    batch = collate([sample, CityscapesDataset(tiny_world, "train", ("seg",))[1]])
    assert batch["normals"].shape == (2, 3, 64, 128) and not batch["normals"][1].any()  # filled with 0
    assert TARGETS["normals"].fill == 0.0
    dropped = LabelView(ds, [0], {0: {"normals"}})[0]
    assert "normals" not in dropped and dropped["has"] == set()


def test_normals_survive_resize_and_box_sanitizing_on_a_three_box_frame():
    from perception_mtl.data.transforms import build_transforms, transform_sample

    normals = Normals(torch.nn.functional.normalize(torch.randn(3, 32, 64), dim=0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 30.0], [1.0, 1.0, 1.5, 1.5]])  # the last is dropped
    sample = transform_sample(build_transforms((16, 32), min_box_size=2.0),
                              {"image": tv_tensors.Image(torch.zeros(3, 32, 64, dtype=torch.uint8)), "normals": normals,
                               "frame": "f", "has": {"normals", "det"}},
                              boxes, torch.tensor([1, 2, 3]), torch.zeros(3, dtype=torch.bool), True)
    assert len(sample["boxes"]) == 2 and sample["normals"].shape == (3, 16, 32)
    assert torch.equal(sample["normals"], normals[:, ::2, ::2])  # nearest neighbour, not interpolated


def test_normals_metric_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    gt = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8, generator=g), dim=1)
    gt[:, :, :2] = 0  # unlabelled rows
    pred = torch.nn.functional.normalize(gt + 0.4 * torch.randn(2, 3, 8, 8, generator=g), dim=1)
    metric = NormalsMetric()
    metric.update(pred, gt)
    result = {k: float(v) for k, v in metric.compute().items()}
    valid = gt.abs().sum(1) > 0
    errors = torch.rad2deg(torch.acos((pred * gt).sum(1)[valid].clamp(-1, 1))).double()
    assert result["mean_err"] == pytest.approx(float(errors.mean()), abs=1e-4)  # float32 cosines
    assert result["median_err"] == pytest.approx(float(errors.sort().values[(len(errors) - 1) // 2]), abs=0.01)
    for t in (11.25, 22.5, 30.0):
        assert result[f"within_{t:g}"] == pytest.approx(float((errors < t).double().mean()))


def test_normals_train_evaluate_export_and_show(tiny_world, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path / "run", "tasks=[seg,normals]", "train.steps=3"))
    metrics = trainer.fit()
    assert {"normals/mean_err", "normals/median_err", "normals/within_11.25"} <= metrics.keys()
    assert 0 < metrics["normals/mean_err"] < 180
    results, first = evaluate_parts(trainer.model, trainer.tasks, trainer.val, (64, 128), tmp_path / "pred",
                                    progress=False, keep_first=True)
    assert results["normals/mean_err"] == pytest.approx(metrics["normals/mean_err"])
    written = sorted((tmp_path / "pred" / "normals").glob("*.png"))
    assert len(written) == 3
    again = read_normals(written[0], tuple(first[0]["normals"].shape[-2:]))
    assert torch.allclose(again, first[1]["normals"][0], atol=1e-4)  # the labels' own format round-trips
    panels = media_panels(*first, 1, trainer.tasks)
    assert [p["caption"].split()[-1] for p in panels[1:]] == ["normals"] and "masks" in panels[0]
    assert key_metrics(["normals"]) == ["val/normals/mean_err", "val/normals/within_11.25"]
    assert not higher_is_better("val/normals/mean_err") and higher_is_better("val/normals/within_11.25")


def test_prediction_writer_writes_only_tasks_with_an_exporter(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world, tmp_path, "tasks=[scene,normals]")
    writer = PredictionWriter(tmp_path / "out", {t: TASKS.get(t)(cfg) for t in cfg.tasks})
    assert list(writer.exporters) == ["normals"]


@pytest.mark.parametrize("text,key", [("seg/mIoU", MetricKey("seg", "mIoU")),
                                      ("seg/mIoU@kitti", MetricKey("seg", "mIoU", "kitti")),
                                      ("normals/within_11.25", MetricKey("normals", "within_11.25"))])
def test_metric_keys_parse_and_print_in_one_place(text, key):
    assert MetricKey.parse(text) == key and str(key) == text


@pytest.mark.parametrize("text", ["mIoU", "/mIoU", "seg/"])
def test_a_malformed_metric_key_is_named(text):
    with pytest.raises(ValueError, match="is not '<task>/<metric>"):
        MetricKey.parse(text)


def test_normals_appear_on_the_leaderboard_and_in_the_transfer_report(tmp_path):
    import json

    from perception_mtl.analysis.leaderboard import write_leaderboard
    from perception_mtl.analysis.transfer import write_transfer_report

    directions = {**{f"seg/{m}": up for m, up in TASKS.get("seg").directions.items()},
                  **{f"normals/{m}": up for m, up in TASKS.get("normals").directions.items()}}
    for seed, jitter in enumerate((-0.2, 0.0, 0.3)):
        for run, kind, metrics in [("stl-seg", "stl", {"seg/mIoU": 0.50, "seg/pixel_acc": 0.9}),
                                   ("stl-normals", "stl", {"normals/mean_err": 10.0 + jitter, "normals/median_err": 8.0,
                                                           "normals/within_11.25": 0.6}),
                                   ("equal", "mtl", {"seg/mIoU": 0.50, "seg/pixel_acc": 0.9,
                                                     "normals/mean_err": 12.0 + jitter, "normals/median_err": 9.0,
                                                     "normals/within_11.25": 0.5})]:
            record = {"run": run, "kind": kind, "method": "equal", "seed": seed,
                      "tasks": sorted({k.split("/")[0] for k in metrics}), "metrics": metrics,
                      "directions": {k: directions[k] for k in metrics}, "params": 1, "train_time_s": 1.0,
                      "latency_ms": 1.0, "steps": 1}
            folder = tmp_path / "runs" / run / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps(record))
    (tmp_path / "suite.yaml").write_text("name: n\ntasks: [seg, normals]\nseeds: [0, 1, 2]\nmethods: [equal]\n")
    board = write_leaderboard(tmp_path, wandb_mode="disabled")["md"].read_text()
    assert "normals/mean_err" in board and "| equal |" in board
    report = write_transfer_report(tmp_path).read_text()
    assert "| equal | normals | normals/mean_err | +19.93 |" in report  # its primary metric, ~20% worse (+ = worse)
