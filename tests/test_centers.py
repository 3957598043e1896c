"""Instance centres (tasks/centers.py), the task added in one file: its Gaussian targets, its
penalty-reduced focal loss and its peak metric against direct computations, the loaders giving it
det's boxes, and a few steps on the tiny world lowering its loss."""
from __future__ import annotations

import math

import pytest
import torch

from perception_mtl.data.collate import collate
from perception_mtl.engine.builders import build_data, build_model, build_tasks
from perception_mtl.engine.evaluator import evaluate_parts
from perception_mtl.tasks.centers import CentreMetric, box_centres, centre_focal_loss, centre_heatmap

from helpers import tiny_config


def test_heatmap_is_one_at_each_box_centre_cell_and_spreads_with_the_box():
    boxes = torch.tensor([[8.0, 8.0, 24.0, 16.0],  # centre (16, 12): cell (4, 3) at stride 4, 16 x 8 px
                          [40.0, 0.0, 48.0, 32.0]])  # centre (44, 16): cell (11, 4), 8 x 32 px
    heat = centre_heatmap(boxes, (16, 32), 4, 0.54)
    assert heat.shape == (16, 32) and heat.max() == 1.0
    assert (heat == 1).nonzero().tolist() == [[3, 4], [4, 11]]  # (y, x), exactly two positives
    sx, sy = 16 / 4 * 0.54 / 6, 8 / 4 * 0.54 / 6  # TTFNet's sigma, in cells
    assert heat[3, 5] == pytest.approx(math.exp(-1 / (2 * sx**2)), rel=1e-4)
    assert heat[4, 4] == pytest.approx(math.exp(-1 / (2 * sy**2)), rel=1e-4)
    assert heat[3, 5] > heat[4, 4]  # wider than tall: spreads further along x
    assert not centre_heatmap(torch.zeros(0, 4), (16, 32), 4, 0.54).any()


def test_overlapping_centres_keep_the_maximum_and_crowd_boxes_have_none():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [2.0, 2.0, 14.0, 14.0]])  # both centred on cell (2, 2)
    heat = centre_heatmap(boxes, (8, 8), 4, 0.54)
    assert (heat == 1).sum() == 1
    alone = centre_heatmap(boxes[:1], (8, 8), 4, 0.54)
    assert torch.equal(heat, torch.maximum(alone, centre_heatmap(boxes[1:], (8, 8), 4, 0.54)))
    assert box_centres(boxes, torch.tensor([False, True])).tolist() == [[8.0, 8.0]]


def test_focal_loss_matches_centernets_formula():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    target = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    expected = -((1 - p[0, 0]) ** 2 * p[0, 0].log() + (1 - p[1, 1]) ** 2 * p[1, 1].log()
                 + (1 - 0.5) ** 4 * p[0, 1] ** 2 * (1 - p[0, 1]).log() + p[1, 0] ** 2 * (1 - p[1, 0]).log()) / 2
    assert centre_focal_loss(logits, target) == pytest.approx(float(expected), rel=1e-5)
    # a pixel beside a centre (target 0.9) is pushed down far less than a background pixel
    x = torch.zeros(2, requires_grad=True)
    centre_focal_loss(x, torch.tensor([0.9, 0.0])).backward()
    assert 0 < x.grad[0] < 1e-3 * x.grad[1]
    # no centre at all: the background still counts, normalised by 1
    assert centre_focal_loss(torch.zeros(3), torch.zeros(3)) == pytest.approx(-3 * 0.25 * math.log(0.5))


def _peaks(points: list[list[float]], scores: list[float]) -> dict:
    return {"points": torch.tensor(points).reshape(-1, 2), "scores": torch.tensor(scores), "cell": torch.tensor([4.0, 4.0])}


def test_metric_ranks_matches_within_the_tolerance():
    truth = torch.tensor([[10.0, 10.0], [40.0, 20.0]])
    exact = CentreMetric(1.0)
    exact.update([_peaks([[11.0, 9.0], [38.0, 22.0]], [0.8, 0.6])], [truth])
    assert {k: float(v) for k, v in exact.compute().items()} == {"AP": 1.0, "recall": 1.0}
    # a false peak scored highest, a duplicate of the first centre and one 2 cells away
    ranked = CentreMetric(1.0)
    ranked.update([_peaks([[100.0, 100.0], [11.0, 9.0], [10.0, 12.0], [38.0, 22.0], [48.0, 20.0]],
                          [0.9, 0.8, 0.7, 0.6, 0.5])], [truth])
    result = ranked.compute()
    assert float(result["recall"]) == 1.0
    assert float(result["AP"]) == pytest.approx((1 / 2 + 2 / 4) / 2)  # precision 1/2 at the first hit, 2/4 at the second
    far = CentreMetric(1.0)
    far.update([_peaks([[18.0, 10.0]], [0.9])], [truth])  # 2 cells from the nearest centre
    assert float(far.compute()["recall"]) == 0.0
    loose = CentreMetric(2.5)
    loose.update([_peaks([[18.0, 10.0]], [0.9])], [truth])
    assert float(loose.compute()["recall"]) == 0.5


def test_a_loader_gives_centers_the_det_boxes(tiny_world, tmp_path):
    """Without any loader knowing the task: asked for centers, the loader loads det's labels."""
    alone = build_data(tiny_config(tiny_world, tmp_path, "tasks=[centers]")).val["cityscapes"][0].dataset
    both = build_data(tiny_config(tiny_world, tmp_path, "tasks=[det,centers]")).val["cityscapes"][0].dataset
    for i in range(len(alone)):
        assert alone[i]["has"] == alone.tasks_of(i) == {"centers"}
        assert both[i]["has"] == both.tasks_of(i) == {"det", "centers"}
        assert torch.equal(alone[i]["boxes"], both[i]["boxes"])
    assert sum(len(alone[i]["boxes"]) for i in range(len(alone))) > 0


def test_a_few_steps_on_the_tiny_world_lower_the_loss_and_it_evaluates(tiny_world, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(tiny_world, tmp_path, "tasks=[centers]")
    data = build_data(cfg)
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks)
    batch = collate([data.train[i] for i in range(3)])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = tasks["centers"].loss(model.heads["centers"], model(batch["image"])["centers"], batch)["focal"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    results, _ = evaluate_parts(model, tasks, data.val, tuple(cfg.data.size), progress=False)
    assert set(results) == {"centers/AP", "centers/recall"}
    assert 0 <= results["centers/AP"] <= results["centers/recall"] <= 1
