"""Run an exported graph (ONNX Runtime, or a torch.export program) in place of the PyTorch model:
same call, same raw outputs, so `predict_batch`, `evaluate` and the overlays work on either."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from perception_mtl.inference.graph_export import NAMES_FILE
from perception_mtl.inference.graph import RawOutputs, unflatten_outputs


def onnx_session(path: str | Path, threads: int | None = None, spinning: bool = True):
    """An ONNX Runtime CPU session of `path`, with `threads` intra-op threads (None: its default);
    `spinning=False` stops its idle threads spinning after a run, which matters when several
    sessions take turns on the same cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ExportedModel(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> {task: raw head output} from the graph at `path` (.onnx
    through ONNX Runtime, .pt2 through torch.export). `heads` (the model's `heads`, whose weights
    are not used for the outputs) carry what the tasks' post-processing reads: FCOS anchors and
    thresholds."""

    def __init__(self, path: str | Path, heads: nn.ModuleDict, threads: int | None = None, spinning: bool = True):
        super().__init__()
        self.path = Path(path)
        self.heads = heads
        if self.path.suffix == ".onnx":
            self.session = onnx_session(self.path, threads, spinning)
            self.names = [o.name for o in self.session.get_outputs()]
            self.program = None
        elif self.path.suffix == ".pt2":
            self.session = None
            extra = {NAMES_FILE: ""}
            self.program = torch.export.load(str(self.path), extra_files=extra).module()
            self.names = json.loads(extra[NAMES_FILE])
        else:
            raise ValueError(f"{self.path}: an exported graph is a .onnx or .pt2 file")

    def forward(self, images: torch.Tensor) -> RawOutputs:
        if self.session is not None:
            arrays = self.session.run(None, {"images": images.detach().float().cpu().contiguous().numpy()})
            return unflatten_outputs({n: torch.from_numpy(a) for n, a in zip(self.names, arrays)})
        with torch.no_grad():
            tensors = self.program(images.float().cpu())
        return unflatten_outputs(dict(zip(self.names, tensors)))
