"""Partial labels and mixed datasets: label removal, per-dataset sampling and evaluation, and every
balancer stepping on batches that lack a task."""
from __future__ import annotations

import math

import pytest
import torch

from perception_mtl.balancing import BALANCERS
from perception_mtl.data.build import first_of_each_label_set, parts, train_set, val_loaders
from perception_mtl.data.partial import drop_labels
from perception_mtl.data.sampling import StepSampler
from perception_mtl.engine.trainer import Trainer
from tests.helpers import tiny_config


class Frames(torch.utils.data.Dataset):
    """n frames, all carrying seg and depth labels."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def tasks_of(self, index: int) -> set[str]:
        return {"seg", "depth"}

    def __getitem__(self, index: int) -> dict:
        return {"has": {"seg", "depth"}, "semantic": torch.zeros(2, 2), "depth": torch.ones(2, 2)}


def test_a_val_limit_keeps_every_label_set_and_a_plain_prefix_where_all_frames_match():
    """KITTI/BDD100K list their benchmarks one after another: a limit takes frames in turn."""
    class Benchmarks(Frames):
        def tasks_of(self, index: int) -> set[str]:
            return {"det"} if index < 6 else {"seg"} if index < 8 else {"depth"}

    assert first_of_each_label_set(Benchmarks(10), 5) == [0, 1, 6, 7, 8]
    assert first_of_each_label_set(Benchmarks(10), 100) == list(range(10))
    assert first_of_each_label_set(Frames(10), 4) == [0, 1, 2, 3]


def test_drop_labels_removes_a_fixed_nested_share_per_task():
    small, large = drop_labels(Frames(200), {"seg": 0.1, "depth": 0.5}), drop_labels(Frames(200), {"seg": 0.3})
    lost_small = {i for i in range(200) if "seg" not in small.tasks_of(i)}
    lost_large = {i for i in range(200) if "seg" not in large.tasks_of(i)}
    assert len(lost_small) == 20 and len(lost_large) == 60 and lost_small <= lost_large
    lost_depth = {i for i in range(200) if "depth" not in small.tasks_of(i)}
    assert len(lost_depth) == 100 and lost_small - lost_depth  # each task has its own draw
    i = min(lost_small - lost_depth)
    sample = small[i]
    assert sample["has"] == {"depth"} and "semantic" not in sample and "depth" in sample


def test_weighted_sampler_follows_per_dataset_weights():
    # part a: 10 frames weight 1, part b: 90 frames weight 3 -> b is drawn 3/4 of the time
    weights = torch.cat([torch.full((10,), 1 / (4 * 10)), torch.full((90,), 3 / (4 * 90))]).double()
    draws = [i for _, (i, _) in zip(range(4000), StepSampler(100, 8, 0, weights=weights))]
    share_b = sum(i >= 10 for i in draws) / len(draws)
    assert share_b == pytest.approx(0.75, abs=0.03)
    resumed = [i for _, (i, _) in zip(range(80), StepSampler(100, 8, 0, start_step=5, weights=weights))]
    assert resumed == draws[40:120]


def test_mixed_run_trains_and_evaluates_each_dataset_on_its_tasks(tiny_world, tmp_path, capsys):
    mix = (f"data.mix=[{{dataset: cityscapes, root: '{tiny_world}', tasks: [seg], name: a}},"
           f"{{dataset: cityscapes, root: '{tiny_world}', tasks: [seg, depth], name: b, weight: 3}}]")
    cfg = tiny_config(tiny_world, tmp_path / "mix", "tasks=[seg,depth]", mix, "train.steps=2",
                      "data.drop_labels={depth: 0.5}")
    assert [(p.name, p.tasks, p.weight) for p in parts(cfg)] == [("a", ("seg",), 1.0), ("b", ("seg", "depth"), 3.0)]
    dataset, weights = train_set(cfg)
    printed = capsys.readouterr().out
    assert "train a" in printed and "labels: seg 6" in printed and "train set used: 12 frames; labels: seg 12, depth 3" in printed
    assert weights[:6].sum().item() == pytest.approx(0.25) and weights[6:].sum().item() == pytest.approx(0.75)
    assert sorted(val_loaders(cfg)) == ["a", "b"]
    metrics = Trainer(cfg).fit()
    # seg is evaluated on both datasets (one key each); depth on b only (plain key)
    assert {"seg/mIoU@a", "seg/mIoU@b", "depth/abs_rel"} <= set(metrics) and "seg/mIoU" not in metrics
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_steps_when_a_task_is_missing_from_the_batch(tiny_world, tmp_path, name):
    cfg = tiny_config(tiny_world, tmp_path / name, "tasks=[seg,depth]", f"balancer.name={name}")
    trainer = Trainer(cfg)
    batch = next(trainer.batches())
    partial = {**batch, "has": {"seg": batch["has"]["seg"], "depth": torch.zeros_like(batch["has"]["depth"])}}
    for b in (batch, partial, batch, partial):  # full, then depth absent, in turn
        before = [p.detach().clone() for p in trainer.model.shared_parameters()]
        stats = trainer.run_step(b)
        trainer.step += 1
        assert stats, f"{name} skipped a step"
        weights = {k: v for k, v in stats.items() if k.startswith("train/weight/")}
        assert weights and all(math.isfinite(v) for v in weights.values()), (name, stats)
        if b is partial:
            assert "train/weight/depth" not in stats and "train/loss/depth" not in stats
        assert any(not torch.equal(p, q) for p, q in zip(before, trainer.model.shared_parameters())), name


def test_a_batch_without_any_active_label_passes_the_step_and_is_counted(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world, tmp_path / "none", "tasks=[seg]")
    trainer = Trainer(cfg)
    batch = next(trainer.batches())
    empty = {**batch, "has": {"seg": torch.zeros_like(batch["has"]["seg"])}}
    before = [p.detach().clone() for p in trainer.model.parameters()]
    lr = trainer.scheduler.get_last_lr()[0]
    assert trainer.run_step(empty) == {}
    assert trainer.unlabelled == 1 and trainer.scheduler.get_last_lr()[0] != lr
    assert all(torch.equal(p, q) for p, q in zip(before, trainer.model.parameters()))
    assert trainer.state_dict()["unlabelled"] == 1


def test_cityscapes_polygon_boxes_follow_the_official_polygons(tiny_world, tmp_path):
    import json
    import shutil

    from perception_mtl.data.cityscapes import CityscapesDataset, DatasetError

    root = shutil.copytree(tiny_world, tmp_path / "world")
    dataset = CityscapesDataset(root, "train", ("det",), min_box_size=1, polygon_boxes=True)
    objects = [
        {"label": "road", "polygon": [[0, 40], [127, 40], [127, 63]]},  # not a detection class
        {"label": "car", "polygon": [[10, 20], [30, 20], [30, 35], [10, 35]]},
        {"label": "cargroup", "polygon": [[40, 20], [60, 22], [50, 30]]},  # crowd
        {"label": "person", "polygon": [[120, 10], [140, 10], [140, 30]]},  # leaves the image: clipped
        {"label": "bus", "deleted": 1, "polygon": [[0, 0], [5, 0], [5, 5]]},
    ]
    dataset.path(0, "gtFine", "_gtFine_polygons.json").write_text(
        json.dumps({"imgHeight": 64, "imgWidth": 128, "objects": objects}))
    sample = dataset[0]
    assert sample["boxes"].tolist() == [[10, 20, 31, 36], [40, 20, 61, 31], [120, 10, 128, 31]]
    assert sample["labels"].tolist() == [2, 2, 0] and sample["iscrowd"].tolist() == [False, True, False]
    dataset.path(1, "gtFine", "_gtFine_polygons.json").write_text("{not json")
    with pytest.raises(DatasetError, match="_gtFine_polygons.json"):
        dataset[1]
