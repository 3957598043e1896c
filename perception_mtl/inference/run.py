"""Predict on every frame of an image, a folder or a video and write what `tools/predict.py`
promises: DIR/overlays/<frame>.png, DIR/<video stem>_overlay.mp4 for a video, and with `raw` the
files of `tools/evaluate.py --save-predictions` under DIR/raw (semantic/<frame>.png label ids,
depth/<frame>.png uint16 depth*256, detections.json; detections_gt.json lists the images only)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from perception_mtl.engine.prediction_files import PredictionWriter
from perception_mtl.inference.frames import FrameSource, write_video
from perception_mtl.inference.overlay import overlay
from perception_mtl.inference.predictor import Predictor


def raw_writer(predictor: Predictor, out_dir: str | Path) -> PredictionWriter:
    """The writer of raw predictions under out_dir/raw (a ValueError for a task whose format the
    model cannot fill, e.g. label ids from a 7-class seg head)."""
    return PredictionWriter(Path(out_dir) / "raw", predictor.tasks)


def predict_frames(predictor: Predictor, source: FrameSource, out_dir: str | Path,
                   writer: PredictionWriter | None = None, score_thresh: float = 0.4,
                   progress: bool = True) -> dict[str, int | str]:
    """Write overlays of every frame of `source` under `out_dir` (and raw predictions through
    `writer`); returns {"frames": count, "video": path of the annotated video or ""}."""
    out = Path(out_dir)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    count = 0

    def overlays() -> Iterator[np.ndarray]:
        nonlocal count
        for name, rgb in tqdm(source, total=source.count or None, desc="predicting", unit="frame",
                              disable=not progress):
            preds = predictor.frame(rgb)
            if writer is not None:
                image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None]
                has = {t: torch.ones(1, dtype=torch.bool) for t in preds}
                writer.add({"image": image, "frame": [name], "has": has},
                           {t: [p] if isinstance(p, dict) else p[None] for t, p in preds.items()})  # a batch of one
            picture = overlay(rgb, preds, predictor.tasks, score_thresh, name)
            Image.fromarray(picture).save(out / "overlays" / f"{name}.png")
            count += 1
            yield picture

    video = ""
    if source.video is not None:
        video = str(out / f"{source.video.stem}_overlay.mp4")
        write_video(overlays(), video, source.fps)
    else:
        for _ in overlays():
            pass
    if writer is not None:
        writer.close()
    return {"frames": count, "video": video}
