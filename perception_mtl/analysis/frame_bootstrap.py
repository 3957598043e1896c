"""Frame bootstrap of detection mAP50: how far a run's number would move on another test set of the
same size (evaluation noise), apart from how far it moves with the training seed (seed noise).

The input is a run's per-frame matches (`tasks/det_frames.py`, saved as `test_frames.json` by the
suite's test evaluation). AP50 of a resample is recomputed as pycocotools' `COCOeval.accumulate`
does (101 recall points, precision made monotone, classes without ground truth left out), so the
resample of all frames, once each, gives COCOeval's mAP50 exactly. Written here because
pycocotools evaluates a fixed image set, and re-running COCOeval per replicate would take minutes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECALLS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)  # COCOeval's recThrs
FILE = "test_frames.json"


@dataclass
class Matches:
    """One class's detections over all frames in COCOeval's order: frame (D,), true positive (D,),
    and its non-ignored ground truth per frame (F,)."""
    frame: np.ndarray
    tp: np.ndarray
    gt: np.ndarray


def by_class(table: dict) -> dict[int, Matches]:
    """The per-frame table -> {class: Matches}, detections sorted by score as COCOeval sorts them."""
    frames = table["frames"]
    classes = sorted({c for f in frames for c, *_ in f["gt"] + f["dt"]})
    out = {}
    for c in classes:
        rows = [(i, score, tp) for i, f in enumerate(frames) for k, score, tp in f["dt"] if k == c]
        frame = np.array([r[0] for r in rows], dtype=np.int64)
        scores = np.array([r[1] for r in rows], dtype=np.float64)
        order = np.argsort(-scores, kind="mergesort")
        gt = np.zeros(len(frames), dtype=np.int64)
        for i, f in enumerate(frames):
            gt[i] = sum(n for k, n in f["gt"] if k == c)
        out[c] = Matches(frame[order], np.array([r[2] for r in rows], dtype=bool)[order], gt)
    return out


def _ap(tp: np.ndarray, n_gt: int) -> float:
    """COCOeval's interpolated AP of detections in score order with `n_gt` ground-truth boxes."""
    tps, fps = np.cumsum(tp, dtype=np.float64), np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_gt
    precision = tps / (fps + tps + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALLS, side="left")
    q = np.zeros(len(RECALLS))
    valid = idx < len(tp)
    q[valid] = precision[idx[valid]]
    return float(q.mean())


def map50(matches: dict[int, Matches], counts: np.ndarray) -> float:
    """mAP50 of the resample in which frame i appears `counts[i]` times (all ones: the test set)."""
    aps = []
    for m in matches.values():
        n_gt = int((m.gt * counts).sum())
        if n_gt == 0:
            continue
        aps.append(_ap(np.repeat(m.tp, counts[m.frame]), n_gt))
    return float(np.mean(aps)) if aps else math.nan


def resamples(n_frames: int, n: int, seed: int) -> np.ndarray:
    """(n, F) frame counts of `n` bootstrap resamples of `n_frames` frames."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_frames, n_frames), minlength=n_frames) for _ in range(n)])


def bootstrap(tables: list[dict], n: int = 500, seed: int = 0) -> np.ndarray:
    """(n, len(tables)) mAP50 of every table on the same `n` resamples: tables of one test set, so
    a difference between columns is a paired bootstrap. Raises ValueError if their frames differ."""
    return _resampled([by_class(t) for t in tables], one_test_set(tables), n, seed)


def one_test_set(tables: list[dict]) -> int:
    """The frame count the tables share; ValueError if they are not of one test set."""
    sizes = {len(t["frames"]) for t in tables}
    if len(sizes) != 1:
        raise ValueError(f"per-frame tables over different test sets ({sorted(sizes)} frames)")
    gts = [[sorted(map(tuple, f["gt"])) for f in t["frames"]] for t in tables]
    if any(g != gts[0] for g in gts[1:]):
        raise ValueError("per-frame tables whose ground truth differs frame by frame: not one test set")
    return sizes.pop()


def _resampled(matches: list[dict[int, Matches]], n_frames: int, n: int, seed: int) -> np.ndarray:
    return np.array([[map50(m, c) for m in matches] for c in resamples(n_frames, n, seed)])


def read_table(run_dir: Path, task: str = "det") -> dict | None:
    """The run's per-frame table of `task`, or None when its test evaluation kept none."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(task)


def noise_lines(records: list[dict], reference: str | None, n: int = 200, seed: int = 0) -> list[str]:
    """One note per multi-task run with per-frame tables: the frame-bootstrap SE of its det mAP50
    and of its difference to `reference` at the same seed (paired), next to their seed std."""
    tables = {(r["run"], r["seed"]): t for r in records if r["kind"] == "mtl" and "dir" in r
              and (t := read_table(Path(r["dir"]))) is not None}
    matches = {key: by_class(t) for key, t in tables.items()}  # each table read and sorted once
    lines = []
    for run in sorted({run for run, _ in tables}):
        seeds = sorted(s for r, s in tables if r == run)
        frame_se, diff_se, values, diffs = [], [], [], []
        for s in seeds:
            paired = reference not in (None, run) and (reference, s) in tables
            frames = one_test_set([tables[(run, s)]] + ([tables[(reference, s)]] if paired else []))
            cols = [matches[(run, s)]] + ([matches[(reference, s)]] if paired else [])
            boot = _resampled(cols, frames, n, seed)
            full = [map50(m, np.ones(frames, dtype=np.int64)) for m in cols]
            frame_se.append(boot[:, 0].std(ddof=1))
            values.append(full[0])
            if paired:
                diff_se.append((boot[:, 0] - boot[:, 1]).std(ddof=1))
                diffs.append(full[0] - full[1])
        line = (f"det mAP50 noise of {run} ({len(seeds)} seeds, {n} frame resamples): frame-bootstrap SE "
                f"{np.mean(frame_se):.4f}, seed std {_std(values)}")
        if diff_se:
            line += (f"; its difference to {reference} at the same seed: frame-bootstrap SE {np.mean(diff_se):.4f}, "
                     f"seed std {_std(diffs)}")
        lines.append(line)
    return lines


def _std(values: list[float]) -> str:
    return f"{np.std(values, ddof=1):.4f}" if len(values) > 1 else "n/a (1 seed)"
