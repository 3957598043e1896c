"""An exported graph checked against the PyTorch model it came from, on real frames: the largest
absolute difference of every raw output, and every task's metrics from both (the same
post-processing, `predict_batch`, turns either's raw outputs into predictions)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from perception_mtl.engine.evaluator import predict_batch
from perception_mtl.inference.graph import RawOutputs, flatten_outputs
from perception_mtl.tasks.base import Task


class _Recorder(nn.Module):
    """A model that keeps its last raw outputs (flattened) for comparison."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.heads = model.heads
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> RawOutputs:
        outputs = self.model(images)
        self.last = {k: v.detach().float().cpu() for k, v in flatten_outputs(outputs).items()}
        return outputs


@dataclass
class Parity:
    raw: dict[str, float]  # output name -> max |graph - torch| over all frames
    torch_metrics: dict[str, float]
    graph_metrics: dict[str, float]
    frames: int

    @property
    def metric_diff(self) -> dict[str, float]:
        return {k: abs(self.graph_metrics[k] - v) for k, v in self.torch_metrics.items()}

    def passes(self, raw_tol: float = 1e-4, metric_tol: float = 1e-3) -> bool:
        return max(self.raw.values()) <= raw_tol and max(self.metric_diff.values(), default=0.0) <= metric_tol


@torch.no_grad()
def check_parity(model: nn.Module, graph: nn.Module, tasks: dict[str, Task], loader: DataLoader,
                 size: tuple[int, int]) -> Parity:
    """Run `model` and `graph` (an ExportedModel of it) on every batch of `loader` (frames at label
    resolution, resized to `size` as in evaluation)."""
    model.eval()
    recorders = {"torch": _Recorder(model), "graph": _Recorder(graph)}
    metrics = {side: {t: task.metric() for t, task in tasks.items()} for side in recorders}
    raw: dict[str, float] = {}
    frames = 0
    for batch in loader:
        for side, recorder in recorders.items():
            preds = predict_batch(recorder, tasks, batch["image"], size)
            for t, task in tasks.items():
                if t in batch["has"]:
                    task.update(metrics[side][t], preds[t], batch)
        ours, theirs = recorders["torch"].last, recorders["graph"].last
        if ours.keys() != theirs.keys():
            raise ValueError(f"the graph's outputs {sorted(theirs)} are not the model's {sorted(ours)}")
        for name, tensor in ours.items():
            raw[name] = max(raw.get(name, 0.0), (theirs[name] - tensor).abs().max().item())
        frames += batch["image"].shape[0]
    results = {side: {f"{t}/{k}": float(v) for t, m in per_task.items() for k, v in m.compute().items()}
               for side, per_task in metrics.items()}
    return Parity(raw, results["torch"], results["graph"], frames)
