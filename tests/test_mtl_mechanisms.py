"""Auxiliary tasks, per-task early stopping, task schedules, label fractions and sweep suites."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from perception_mtl.analysis.leaderboard import write_leaderboard
from perception_mtl.benchmark.suite import Suite
from perception_mtl.data.collate import collate
from perception_mtl.engine.hooks import Evaluation
from perception_mtl.engine.schedule import TaskSchedule
from perception_mtl.data.partial import fraction_of
from perception_mtl.engine.trainer import Trainer
from perception_mtl.tasks.edges import semantic_edges

from helpers import tiny_config

UP = {"seg/mIoU": True, "depth/abs_rel": False, "scene/weather_acc": True}


def _write(root: Path, run: str, tasks: list[str], seed: int, metrics: dict, aux=(), sweep=None) -> None:
    kind = "stl" if run.startswith("stl-") else "mtl"
    record = {"run": run, "kind": kind, "method": "equal", "seed": seed, "tasks": tasks, "aux_tasks": list(aux),
              "metrics": metrics, "directions": {k: UP[k] for k in metrics}, "params": 1, "train_time_s": 1.0,
              "latency_ms": 1.0, "steps": 1, "sweep": sweep or {}}
    folder = root / "runs" / run / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(record))


def _rows(root: Path) -> dict[str, dict]:
    return {r["run"]: r for r in csv.DictReader(write_leaderboard(root, "disabled")["csv"].open())}


def test_auxiliary_tasks_never_enter_delta_m(tmp_path):
    (tmp_path / "suite.yaml").write_text("name: aux\ndelta_metrics: {seg: [mIoU], depth: [abs_rel], "
                                         "scene: [weather_acc]}\n")
    for seed in (0, 1):
        _write(tmp_path, "stl-seg", ["seg"], seed, {"seg/mIoU": 0.5})
        _write(tmp_path, "stl-depth", ["depth"], seed, {"depth/abs_rel": 0.2})
        _write(tmp_path, "stl-scene", ["scene"], seed, {"scene/weather_acc": 0.5})
        # seg 10% better, depth unchanged; the auxiliary scene task 80% worse must not count
        _write(tmp_path, "+scene", ["seg", "depth"], seed,
               {"seg/mIoU": 0.55, "depth/abs_rel": 0.2, "scene/weather_acc": 0.1}, aux=["scene"])
    row = _rows(tmp_path)["+scene"]
    assert float(row["delta_m_per_task_mean"]) == pytest.approx(-5.0)
    assert float(row["scene/weather_acc_mean"]) == pytest.approx(0.1)  # still shown


def test_auxiliary_metrics_are_shown_when_delta_metrics_leave_them_out(tmp_path):
    (tmp_path / "suite.yaml").write_text("name: aux\ndelta_metrics: {seg: [mIoU], depth: [abs_rel]}\n")
    for seed in (0, 1):
        _write(tmp_path, "stl-seg", ["seg"], seed, {"seg/mIoU": 0.5})
        _write(tmp_path, "stl-depth", ["depth"], seed, {"depth/abs_rel": 0.2})
        _write(tmp_path, "+scene", ["seg", "depth"], seed,
               {"seg/mIoU": 0.55, "depth/abs_rel": 0.2, "scene/weather_acc": 0.1 * (seed + 1)}, aux=["scene"])
    row = _rows(tmp_path)["+scene"]
    assert float(row["delta_m_per_task_mean"]) == pytest.approx(-5.0)
    assert float(row["scene/weather_acc_mean"]) == pytest.approx(0.15)
    assert "auxiliary tasks (scene)" in (tmp_path / "leaderboard.md").read_text()


def test_sweep_compares_each_value_with_its_own_baselines(tmp_path):
    (tmp_path / "suite.yaml").write_text("name: low\ndelta_metrics: {seg: [mIoU], depth: [abs_rel]}\n")
    for fraction, scale in ((0.1, 0.5), (1.0, 1.0)):
        sweep = {"key": "data.train_fraction", "value": fraction}
        for seed in (0, 1):
            _write(tmp_path, f"stl-seg@{fraction}", ["seg"], seed, {"seg/mIoU": 0.6 * scale}, sweep=sweep)
            _write(tmp_path, f"stl-depth@{fraction}", ["depth"], seed, {"depth/abs_rel": 0.2 / scale}, sweep=sweep)
            _write(tmp_path, f"equal@{fraction}", ["seg", "depth"], seed,
                   {"seg/mIoU": 0.66 * scale, "depth/abs_rel": 0.2 / scale}, sweep=sweep)
    rows = _rows(tmp_path)
    assert float(rows["equal@0.1"]["delta_m_per_task_mean"]) == pytest.approx(-5.0)
    assert float(rows["equal@1.0"]["delta_m_per_task_mean"]) == pytest.approx(-5.0)
    assert (tmp_path / "label_efficiency.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_suite_runs_every_run_at_every_value(tmp_path):
    path = tmp_path / "low.yaml"
    path.write_text("name: low\ntasks: [seg, depth]\nseeds: [0]\nmethods: [equal]\n"
                    "sweep: {data.train_fraction: [0.1, 1.0]}\n")
    runs = Suite.load(path).runs()
    assert [r.label for r in runs] == ["stl-seg@0.1", "stl-depth@0.1", "equal@0.1",
                                       "stl-seg@1.0", "stl-depth@1.0", "equal@1.0"]
    assert runs[0].overrides == ["data.train_fraction=0.1"] and runs[0].sweep["value"] == 0.1


def test_train_fraction_is_a_fixed_nested_subset():
    small, large = fraction_of(200, 0.1), fraction_of(200, 0.25)
    assert len(small) == 20 and len(large) == 50
    assert set(small) <= set(large)
    assert small == fraction_of(200, 0.1)


def test_round_robin_and_loss_proportional_schedules():
    tasks = ["det", "seg", "depth"]
    robin = TaskSchedule("round_robin", seed=0)
    assert [robin.active(s, tasks) for s in range(4)] == [["det"], ["seg"], ["depth"], ["det"]]
    prop = TaskSchedule("loss_proportional", seed=0)
    prop.observe({"det": 1.0, "seg": 1.0, "depth": 1.0})
    prop.observe({"det": 0.9, "seg": 0.3, "depth": 0.3})  # det lags: relative losses 3:1:1
    draws = Counter(prop.active(s, tasks)[0] for s in range(500))
    assert 0.5 < draws["det"] / 500 < 0.7  # expected 0.6
    assert [prop.active(s, tasks) for s in range(20)] == [prop.active(s, tasks) for s in range(20)]
    assert TaskSchedule("joint", 0).active(5, tasks) == tasks


def test_semantic_edges_mark_class_boundaries_and_ignore_unlabelled():
    sem = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [255, 255, 2, 2]]])
    edges, valid = semantic_edges(sem)
    assert edges[0, 0].tolist() == [False, True, True, False]
    assert not valid[0, 1, 0] and not valid[0, 2, 0]  # next to / at ignore


def test_early_stopping_freezes_exactly_the_stopped_head_and_restores_its_best(tiny_world, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "tasks=[seg,depth]", "train.early_stopping.patience=1",
                                  "train.steps=3"))
    stop = next(h for h in trainer.hooks if isinstance(h, Evaluation)).early_stopping
    stop.update({"seg/mIoU": 0.5, "depth/abs_rel": 0.3}, trainer.model, step=0)
    best_seg = [p.clone() for p in trainer.model.heads["seg"].parameters()]
    trainer.step = 1
    assert stop.update({"seg/mIoU": 0.4, "depth/abs_rel": 0.2}, trainer.model, step=1) == ["seg"]
    with torch.no_grad():  # move the stopped head away from its best to see the restore
        for p in trainer.model.heads["seg"].parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in trainer.model.named_parameters()}
    batch = collate([trainer.train_set[i] for i in range(3)])
    stats = trainer.run_step(batch)
    assert "train/loss/seg" not in stats and "train/loss/depth" in stats
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and not any(n.startswith("heads.seg.") for n in changed)
    assert any(n.startswith("heads.depth.") for n in changed) and any(n.startswith("backbone.") for n in changed)
    state = trainer.state_dict()["hooks"]["Evaluation"]["early_stopping"]
    assert state["stopped"] == {"seg": 1}
    stop.restore_best(trainer.model)
    for p, best in zip(trainer.model.heads["seg"].parameters(), best_seg):
        assert torch.equal(p, best)
