"""Evaluation at the ground truth's own resolution: inputs are resized to the model's size,
predictions are brought back to the labels' size, then every task's metric is updated."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics import Metric
from tqdm import tqdm

from perception_mtl.core import distributed
from perception_mtl.data.collate import move_batch
from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.tasks.base import Task


@torch.no_grad()
def predict_batch(model: torch.nn.Module, tasks: dict[str, Task], images: torch.Tensor,
                  size: tuple[int, int]) -> dict:
    """images (B, 3, H, W) at label resolution -> {task: predictions at (H, W)}, on the CPU
    (where metrics and exports live) whatever the model's device."""
    out_size = tuple(images.shape[-2:])
    images = images.to(next(model.parameters()).device)
    inputs = images if out_size == tuple(size) else F.interpolate(images, size=size, mode="bilinear",
                                                                  antialias=True, align_corners=False)
    outputs = model(inputs)
    return move_batch({t: task.predict(model.heads[t], outputs[t], inputs, out_size) for t, task in tasks.items()},
                      "cpu")


@torch.no_grad()
def evaluate(model: torch.nn.Module, tasks: dict[str, Task], loader: DataLoader, size: tuple[int, int],
             save_dir: str | Path | None = None, progress: bool = True,
             keep_first: bool = False, per_frame: dict | None = None) -> tuple[dict[str, float], tuple[dict, dict] | None]:
    """-> ({"<task>/<metric>": value}, (first batch, its predictions) if keep_first). A `per_frame`
    dict receives {task: its per-frame table} for the tasks that keep one (`Task.per_frame`)."""
    was_training = model.training
    model.eval()
    metrics = {t: task.metric() for t, task in tasks.items()}
    for metric in metrics.values():  # CPU states sync over gloo, also when training uses nccl: the
        for part in metric.modules():  # metric's own and those of metrics inside it (edges, scene)
            if isinstance(part, Metric):
                part.process_group = distributed.cpu_group()
    writer = PredictionWriter(save_dir, tasks) if save_dir is not None else None
    first = None
    for batch in tqdm(loader, desc="evaluating", leave=False, disable=not progress):
        preds = predict_batch(model, tasks, batch["image"], size)
        for t, task in tasks.items():
            if t in batch["has"]:
                task.update(metrics[t], preds[t], batch)
        if writer is not None:
            writer.add(batch, preds)
        if keep_first and first is None:
            first = (batch, preds)
    if writer is not None:
        writer.close()
    model.train(was_training)
    results = {}
    for t, metric in metrics.items():
        for key, value in metric.compute().items():
            results[f"{t}/{key}"] = float(value)
        if per_frame is not None and (table := tasks[t].per_frame(metric)) is not None:
            per_frame[t] = table
    return results, first


def evaluate_parts(model: torch.nn.Module, tasks: dict[str, Task], loaders: dict[str, tuple[DataLoader, list[str]]],
                   size: tuple[int, int], save_dir: str | Path | None = None,
                   progress: bool = True, keep_first: bool = False,
                   per_frame: dict | None = None) -> tuple[dict[str, float], tuple[dict, dict] | None]:
    """`evaluate` on each dataset of the run (`perception_mtl.data.build.val_loaders`) with its
    own tasks; a task evaluated on several datasets gets one key per dataset,
    "<task>/<metric>@<dataset>" (and "<task>@<dataset>" in `per_frame`). Predictions go to
    `save_dir`, or `save_dir/<dataset>` for a mix."""
    results, first = {}, None
    seen = [t for _, part_tasks in loaders.values() for t in part_tasks]
    for name, (loader, part_tasks) in loaders.items():
        out = None if save_dir is None else Path(save_dir) / name if len(loaders) > 1 else save_dir
        tables = None if per_frame is None else {}
        metrics, shown = evaluate(model, {t: tasks[t] for t in part_tasks}, loader, size, out,
                                  progress, keep_first and first is None, tables)
        first = first or shown
        for t, table in (tables or {}).items():
            per_frame[t if seen.count(t) == 1 else f"{t}@{name}"] = table
        for key, value in metrics.items():
            k = MetricKey.parse(key)
            results[str(MetricKey(k.task, k.metric, name if seen.count(k.task) > 1 else None))] = value
    return results, first
