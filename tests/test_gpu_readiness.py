"""CUDA/NCCL paths checked on the CPU: what a first GPU run would otherwise find (issue 25)."""
from __future__ import annotations

import pytest
import torch
from torchmetrics import Metric

from perception_mtl import distributed
from perception_mtl.engine import evaluator
from perception_mtl.engine.builders import build_tasks
from perception_mtl.tasks import TASKS

from helpers import tiny_config


def test_every_metric_inside_a_metric_syncs_over_the_cpu_group(tmp_path, monkeypatch):
    """Edges' BinaryStatScores and scene's MulticlassAccuracy sit inside the task's metric: their
    states are CPU tensors too, and must not go through the nccl group."""
    group = object()
    monkeypatch.setattr(distributed, "cpu_group", lambda: group)
    made: list[Metric] = []
    tasks = build_tasks(tiny_config(tmp_path, tmp_path, f"tasks=[{','.join(sorted(TASKS.names()))}]"))
    for task in tasks.values():
        monkeypatch.setattr(task, "metric", lambda make=task.metric: made.append(make()) or made[-1])
    model = torch.nn.Linear(1, 1)
    with pytest.warns(UserWarning):  # torchmetrics: compute before any update
        evaluator.evaluate(model, tasks, [], (64, 128), progress=False)
    inner = [(type(m).__name__, type(p).__name__) for m in made for p in m.modules() if isinstance(p, Metric)]
    assert {"BinaryStatScores", "MulticlassAccuracy"} <= {name for _, name in inner}
    assert all(p.process_group is group for m in made for p in m.modules() if isinstance(p, Metric)), inner
