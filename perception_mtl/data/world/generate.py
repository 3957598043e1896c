"""Generate the driving world on disk in the Cityscapes layout, on all cores, reproducibly.

Frame i of split s is drawn from its own seed sequence (seed, s, i), so the bytes on disk
depend only on the arguments, never on the number of worker processes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_mtl.data.world.layout import sample_scene
from perception_mtl.data.world.render import Frame, render
from perception_mtl.data.world.writer import write_frame

SPLITS = ("train", "val", "test")
FRAMES_PER_CITY = 500


@dataclass(frozen=True)
class WorldSpec:
    """What to generate; saved as `world.json` at the root."""

    train: int = 3000
    val: int = 500
    test: int = 0
    seed: int = 0
    height: int = 256
    width: int = 512
    difficulty: float = 0.5
    max_objects: int = 15


def frame_name(split: str, index: int) -> tuple[str, str]:
    """(city, stem) of frame `index` in `split`, following Cityscapes' naming."""
    city = f"{split}world{index // FRAMES_PER_CITY:02d}"
    return city, f"{city}_{index:06d}_000019"


def render_frame(spec: WorldSpec, split: str, index: int) -> Frame:
    """Render frame `index` of `split`, deterministically from `spec.seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, SPLITS.index(split), index]))
    scene, camera = sample_scene(rng, spec.height, spec.width, spec.difficulty, spec.max_objects)
    return render(scene, camera)


def _work(job: tuple[WorldSpec, str, str, int]) -> None:
    spec, root, split, index = job
    city, stem = frame_name(split, index)
    write_frame(render_frame(spec, split, index), Path(root), split, city, stem, {"difficulty": spec.difficulty})


def generate(root: str | Path, spec: WorldSpec, workers: int | None = None, progress: bool = True) -> Path:
    """Write `spec.train` + `spec.val` + `spec.test` frames under `root`; returns `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, str(root), split, i) for split in SPLITS for i in range(getattr(spec, split))]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="rendering", unit="frame", disable=not progress)
    if workers == 1:
        for job in jobs:
            _work(job)
            bar.update()
    else:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_work, jobs, chunksize=8):
                bar.update()
    bar.close()
    (root / "world.json").write_text(json.dumps(asdict(spec), indent=2))
    return root
