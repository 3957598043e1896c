"""Predictions in the files outside evaluators read (docs/ARCHITECTURE.md, "File contracts",
`--save-predictions`): each task writes its own format through its `Task.exporter` (seg:
semantic/<frame>.png Cityscapes label ids; depth: depth/<frame>.png uint16 depth*256, KITTI's;
det: detections.json COCO results with detections_gt.json, the COCO ground truth of the same
images, and with BDD100K's classes detections_bdd100k.json in BDD100K's format; normals:
normals/<frame>.png uint16). Tasks without a format are not written."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from perception_mtl.tasks.base import Exporter, Task, labelled


class PredictionWriter:
    """Writes the predictions of `tasks` under `out_dir`, one exporter per task that has one."""

    def __init__(self, out_dir: str | Path, tasks: Mapping[str, Task]):
        self.out = Path(out_dir)
        self.exporters: dict[str, Exporter] = {}
        for name, task in tasks.items():
            exporter = task.exporter(self.out)
            if exporter is not None:
                self.exporters[name] = exporter

    def add(self, batch: dict, predictions: dict) -> None:
        """Write one batch's predictions ({task: predictions}) for the samples labelled for each task."""
        for t, exporter in self.exporters.items():
            if t not in predictions:
                continue
            has = labelled(batch, t)
            for i, frame in enumerate(batch["frame"]):
                if has[i]:
                    exporter.add(batch, i, frame, predictions[t][i])

    def close(self) -> None:
        for exporter in self.exporters.values():
            exporter.close()
