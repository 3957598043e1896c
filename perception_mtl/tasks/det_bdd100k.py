"""Detections in BDD100K's own format (doc.bdd100k.com, "Detection"), which its toolkit evaluates:

    python -m bdd100k.eval.run -t det -g labels/det_20/det_val.json -r DIR/detections_bdd100k.json

A JSON list of frames {"name": "<frame>.jpg", "labels": [{"id", "category", "box2d": {x1, y1, x2, y2},
"score"}]}, one per image labelled for det, also those without a detection. BDD100K's x2, y2 are
the last pixel of the box (its toolkit adds 1 for the width); ours are exclusive, hence the -1.
"""
from __future__ import annotations

import json
from pathlib import Path

from perception_mtl.tasks.base import Exporter

FILE = "detections_bdd100k.json"


class Bdd100kFrames(Exporter):
    """DIR/detections_bdd100k.json; `classes` are the category names of the label indices."""

    def __init__(self, out: Path, classes: list[str]):
        self.out, self.classes = out, classes
        self.frames: list[dict] = []

    def add(self, batch: dict, i: int, frame: str, prediction: dict) -> None:
        """prediction: boxes (D, 4) xyxy exclusive pixels at the label resolution, scores (D,), labels (D,)."""
        labels = [{"id": str(k), "category": self.classes[label], "score": score,
                   "box2d": {"x1": x1, "y1": y1, "x2": x2 - 1, "y2": y2 - 1}}
                  for k, ((x1, y1, x2, y2), score, label) in enumerate(zip(
                      prediction["boxes"].tolist(), prediction["scores"].tolist(), prediction["labels"].tolist()))]
        self.frames.append({"name": f"{frame}.jpg", "labels": labels})

    def close(self) -> None:
        if self.frames:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / FILE).write_text(json.dumps(self.frames))
