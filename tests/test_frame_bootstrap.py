"""The frame bootstrap of det mAP50: its per-frame table reproduces pycocotools' mAP50 exactly, and
its standard error matches the spread of mAP50 over independent test sets of a known detector."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from perception_mtl.analysis.frame_bootstrap import bootstrap, by_class, map50
from perception_mtl.tasks.det import DetectionMetric
from perception_mtl.tasks.det_frames import frame_matches


def _frames(rng: np.random.Generator, n: int, recall: float = 0.7) -> list[tuple[dict, dict]]:
    """Frames of 0-6 boxes in classes 0-2 (some crowd), detected with probability `recall` by a
    jittered box, plus false positives (class 3 exists only among them)."""
    images = []
    for _ in range(n):
        k = int(rng.integers(0, 7))
        xy = rng.uniform(0, 200, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (k, 2))], 1)
        labels = rng.integers(0, 3, k)
        crowd = rng.random(k) < 0.1
        hit = rng.random(k) < recall
        det = boxes[hit] + rng.normal(0, 4, (int(hit.sum()), 4))
        fp = int(rng.poisson(1.5))
        fxy = rng.uniform(0, 200, (fp, 2))
        det = np.concatenate([det, np.concatenate([fxy, fxy + rng.uniform(10, 60, (fp, 2))], 1)])
        det_labels = np.concatenate([labels[hit], rng.integers(0, 4, fp)])
        scores = np.concatenate([rng.uniform(0.3, 1.0, int(hit.sum())), rng.uniform(0.05, 0.7, fp)])
        t = lambda a, dtype=torch.float32: torch.tensor(a, dtype=dtype)  # noqa: E731
        images.append(({"boxes": t(det).reshape(-1, 4), "scores": t(scores), "labels": t(det_labels, torch.int64)},
                       {"boxes": t(boxes).reshape(-1, 4), "labels": t(labels, torch.int64),
                        "iscrowd": t(crowd, torch.int64)}))
    return images


def _ones(table: dict) -> np.ndarray:
    return np.ones(len(table["frames"]), dtype=np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_table_recomputes_pycocotools_map50_exactly(seed):
    images = _frames(np.random.default_rng(seed), 60)
    metric = DetectionMetric()
    metric.update([p for p, _ in images], [t for _, t in images])
    expected = float(metric.compute()["mAP50"])
    table = json.loads(json.dumps(frame_matches(images)))  # as test_frames.json keeps it
    assert 0.2 < expected < 0.9
    # torchmetrics hands COCOeval's float64 result back as float32: equal to that precision
    assert map50(by_class(table), _ones(table)) == pytest.approx(expected, abs=3e-8)


def test_a_frame_dropped_or_doubled_changes_map50():
    table = frame_matches(_frames(np.random.default_rng(3), 40))
    matches, counts = by_class(table), _ones(table)
    full = map50(matches, counts)
    busy = max(range(40), key=lambda i: len(table["frames"][i]["dt"]))
    for change in (0, 2):
        counts[busy] = change
        assert map50(matches, counts) != full


def test_a_paired_bootstrap_of_a_run_against_itself_has_no_spread():
    table = frame_matches(_frames(np.random.default_rng(4), 50))
    boot = bootstrap([table, table], n=50, seed=0)
    assert boot[:, 0].std() > 0.01
    assert np.array_equal(boot[:, 0], boot[:, 1])


def test_tables_of_different_test_sets_are_refused():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="different test sets"):
        bootstrap([frame_matches(_frames(rng, 20)), frame_matches(_frames(rng, 21))], n=5)
    with pytest.raises(ValueError, match="ground truth differs"):
        bootstrap([frame_matches(_frames(rng, 20)), frame_matches(_frames(rng, 20))], n=5)


def _table(rng: np.random.Generator, n: int) -> dict:
    """A per-frame table drawn straight from a known detector (no boxes): 0-6 objects in 3 classes,
    each found with probability 0.7 (score ~ U(0.3, 1)), 1.5 false positives per frame (U(0, 0.7))."""
    frames = []
    for _ in range(n):
        labels = rng.integers(0, 3, int(rng.integers(0, 7)))
        found = labels[rng.random(len(labels)) < 0.7]
        fp = rng.integers(0, 3, int(rng.poisson(1.5)))
        frames.append({"gt": [[int(c), int((labels == c).sum())] for c in np.unique(labels)],
                       "dt": [[int(c), float(rng.uniform(0.3, 1.0)), 1] for c in found]
                             + [[int(c), float(rng.uniform(0.0, 0.7)), 0] for c in fp]})
    return {"iou": 0.5, "frames": frames}


def test_the_bootstrap_se_matches_the_spread_over_independent_test_sets():
    """Simulation with a known answer: the SD of mAP50 over 300 independent test sets of 100 frames,
    against the mean bootstrap SE (200 resamples) of 20 of those sets."""
    rng = np.random.default_rng(0)
    sets = [_table(rng, 100) for _ in range(300)]
    truth = np.std([map50(by_class(t), _ones(t)) for t in sets], ddof=1)
    se = np.mean([bootstrap([t], n=200, seed=k)[:, 0].std(ddof=1) for k, t in enumerate(sets[:20])])
    assert truth > 0.01
    assert 0.8 < se / truth < 1.25
