"""Export a multi-task model's raw outputs as one graph: ONNX (torch.onnx's torch.export-based
exporter, the default since PyTorch 2.9; it needs onnxscript) or a torch.export program (.pt2).

The graph takes `images` (B, 3, H, W) float in [0, 1] at the model's input size (normalisation is
inside the model) and returns the flattened raw outputs of `graph.FlatOutputs`. Detection
post-processing is not in the graph (data-dependent shapes: top-k per level, NMS): it is the
Python step `perception_mtl.engine.evaluator.predict_batch` that PyTorch inference also uses.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from perception_mtl.inference.graph import FlatOutputs

FORMATS = ("onnx", "torch_export")
SUFFIX = {"onnx": ".onnx", "torch_export": ".pt2"}
NAMES_FILE = "output_names.json"  # a .pt2's list of output names, stored beside the program
MAX_BATCH = 256  # upper bound of the dynamic batch dimension


def _example(size: tuple[int, int], dynamic_batch: bool) -> tuple[torch.Tensor, dict | None]:
    # batch 2 when dynamic: torch.export specialises a dimension of size 1
    images = torch.rand(2 if dynamic_batch else 1, 3, *size, generator=torch.Generator().manual_seed(0))
    shapes = {"images": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}} if dynamic_batch else None
    return images, shapes


def export_graph(model: nn.Module, size: tuple[int, int], path: str | Path, fmt: str = "onnx",
                 dynamic_batch: bool = False) -> list[str]:
    """Write `model` (put in eval mode) at input `size` (H, W) to `path` in `fmt` (one of FORMATS);
    the batch dimension is dynamic with `dynamic_batch`, else 1. Returns the output names."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    model.eval()
    graph = FlatOutputs.probe(model, size).eval()
    images, shapes = _example(size, dynamic_batch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch.export.save's caution for weights off the CPU: export always runs on the CPU here
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        _write(graph, images, shapes, path, fmt)
    return graph.names


def _write(graph: FlatOutputs, images: torch.Tensor, shapes: dict | None, path: Path, fmt: str) -> None:
    """Trace `graph` on `images` (B, 3, H, W) with `shapes` and write it to `path` in `fmt`."""
    if fmt == "onnx":
        torch.onnx.export(graph, (images,), str(path), input_names=["images"], output_names=graph.names,
                          dynamic_shapes=shapes, dynamo=True, verbose=False)
    else:
        program = torch.export.export(graph, (images,), dynamic_shapes=shapes)
        torch.export.save(program, str(path), extra_files={NAMES_FILE: json.dumps(graph.names)})
