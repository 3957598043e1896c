"""Inference latency of the multi-head model against the three single-task models of the same
backbone, in PyTorch eager and in ONNX Runtime: batch-1 latency (median, p90) and batch-8
throughput of the raw outputs (the graph). Post-processing is the same Python code in every
case and runs once per task either way, so it is left out."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from perception_mtl.inference.graph_export import export_graph
from perception_mtl.inference.runtime import ExportedModel

Runner = Callable[[torch.Tensor], object]


@dataclass
class Timing:
    latency_ms: np.ndarray  # batch-1 call times
    throughput: float  # images/s at the throughput batch

    @property
    def median(self) -> float:
        return float(np.median(self.latency_ms))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.latency_ms, 90))


def time_runner(run: Runner, size: tuple[int, int], reps: int, batch: int = 8, batch_reps: int = 5,
                warmup: int = 3) -> Timing:
    """`reps` batch-1 calls and `batch_reps` calls at `batch`, after `warmup` calls of each."""
    one = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    many = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for _ in range(warmup):
            run(one)
        latency = []
        for _ in range(reps):
            start = time.perf_counter()
            run(one)
            latency.append(1e3 * (time.perf_counter() - start))
        for _ in range(warmup):
            run(many)
        start = time.perf_counter()
        for _ in range(batch_reps):
            run(many)
        throughput = batch * batch_reps / (time.perf_counter() - start)
    return Timing(np.array(latency), throughput)


def runners(models: dict[str, nn.Module], size: tuple[int, int], runtime: str, folder: Path,
            threads: int) -> dict[str, Runner]:
    """{name: images -> raw outputs} of each model in `runtime` ("torch" or "onnx"; ONNX graphs
    with a dynamic batch are exported to `folder`)."""
    if runtime == "torch":
        return {name: model.eval() for name, model in models.items()}
    out = {}
    for name, model in models.items():
        path = folder / f"{name}.onnx"
        export_graph(model, size, path, "onnx", dynamic_batch=True)
        # no spinning: three sessions taking turns would otherwise spin on the cores the next one needs
        out[name] = ExportedModel(path, model.heads, threads, spinning=False)
    return out


def in_sequence(runs: list[Runner]) -> Runner:
    """One call running each of `runs` on the same images (the single-task models side by side)."""
    def run(images: torch.Tensor) -> list:
        return [r(images) for r in runs]
    return run
