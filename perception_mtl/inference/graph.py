"""The exportable graph: a model whose raw outputs ({task: tensor or {name: tensor}}) are
flattened into a tuple of named tensors, and the way back.

Output names are "<task>" for a tensor head and "<task>.<name>" for a head that returns a dict
(detection: "det.cls_logits" (B, A, K), "det.bbox_regression" (B, A, 4), "det.bbox_ctrness"
(B, A, 1)). Post-processing (FCOS decoding and NMS, resizing, argmax) stays outside the graph:
`perception_mtl.engine.evaluator.predict_batch` applies the tasks' `predict` to the raw outputs
of either runtime, so PyTorch and ONNX Runtime share it.
"""
from __future__ import annotations

import torch
from torch import nn

RawOutputs = dict[str, "torch.Tensor | dict[str, torch.Tensor]"]


def flatten_outputs(outputs: RawOutputs) -> dict[str, torch.Tensor]:
    """{task: tensor or {name: tensor}} -> {"<task>" or "<task>.<name>": tensor}, in order."""
    flat: dict[str, torch.Tensor] = {}
    for task, value in outputs.items():
        if isinstance(value, dict):
            flat.update({f"{task}.{name}": tensor for name, tensor in value.items()})
        elif isinstance(value, torch.Tensor):
            flat[task] = value
        else:
            raise TypeError(f"head '{task}' returns {type(value).__name__}; an exported graph needs a tensor "
                            "or a dict of tensors")
    return flat


def unflatten_outputs(flat: dict[str, torch.Tensor]) -> RawOutputs:
    """The inverse of `flatten_outputs`."""
    outputs: dict = {}
    for key, tensor in flat.items():
        task, _, name = key.partition(".")
        if name:
            outputs.setdefault(task, {})[name] = tensor
        else:
            outputs[task] = tensor
    return outputs


class FlatOutputs(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> the model's raw outputs as a tuple in `names` order."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    @classmethod
    def probe(cls, model: nn.Module, size: tuple[int, int]) -> "FlatOutputs":
        """Wrap `model` with the output names of one forward at input `size` (H, W)."""
        with torch.no_grad():
            names = list(flatten_outputs(model(torch.zeros(1, 3, *size))))
        return cls(model, names)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = flatten_outputs(self.model(images))
        return tuple(flat[name] for name in self.names)
