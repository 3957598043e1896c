"""The run's training and evaluation sets from its config: one dataset (`data.dataset`) or a
mix of several (`data.mix`), with `data.train_fraction`, `data.drop_labels` and `data.train_limit`.

A mix is one training set: its parts are concatenated and a frame of part k is drawn with
probability weight_k / (sum of weights * n_k), so each part's share of the batches follows its
weight whatever its size. Evaluation runs per part on that part's tasks (see `metric_key`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from perception_mtl.core import distributed
from perception_mtl.data.collate import collate
from perception_mtl.data.derived import open_dataset
from perception_mtl.data.partial import Concat, LabelView, drop_labels, fraction_of, label_counts


@dataclass
class Part:
    """One dataset of the run: where it is, which of the run's tasks it serves, how often it is drawn."""
    name: str
    dataset: str
    root: str
    tasks: tuple[str, ...]
    weight: float
    data: DictConfig  # the run's `data` with this part's overrides (class_map)


def parts(cfg: DictConfig) -> list[Part]:
    """The run's datasets: `data.mix`'s entries, else `data.dataset` at `data.root` for every task."""
    if not cfg.data.mix:
        return [Part(cfg.data.dataset, cfg.data.dataset, cfg.data.root, tuple(cfg.tasks), 1.0, cfg.data)]
    found = []
    for entry in cfg.data.mix:
        data = OmegaConf.merge(cfg.data, {"class_map": entry.class_map or cfg.data.class_map, "mix": []})
        found.append(Part(entry.name or entry.dataset, entry.dataset, entry.root,
                          tuple(entry.tasks or cfg.tasks), entry.weight, data))
    return found


def train_set(cfg: DictConfig) -> tuple[Dataset, torch.Tensor | None]:
    """-> (the training frames, per-frame sampling weights (N,) or None for uniform)."""
    found = parts(cfg)
    sets = [open_dataset(p.dataset, p.root, "train", p.tasks, p.data, True) for p in found]
    dataset = Concat(sets) if len(sets) > 1 else sets[0]
    weights = None
    if len(sets) > 1:
        total = sum(p.weight for p in found)
        weights = torch.cat([torch.full((len(s),), p.weight / (total * len(s)), dtype=torch.float64)
                             for p, s in zip(found, sets)])
    keep = list(range(len(dataset)))
    if cfg.data.train_fraction < 1:
        keep = fraction_of(len(dataset), cfg.data.train_fraction)
    if cfg.data.train_limit is not None:
        keep = keep[:cfg.data.train_limit]
    if len(keep) < len(dataset):
        dataset = LabelView(dataset, keep)
        weights = weights[keep] if weights is not None else None
    fractions = {t: f for t, f in cfg.data.drop_labels.items() if t in cfg.tasks and f > 0}
    if fractions:
        dataset = drop_labels(dataset, fractions)
    report("train", found, sets, dataset, list(cfg.tasks))
    return dataset, weights


def report(split: str, found: list[Part], sets: list[Dataset], dataset: Dataset, tasks: list[str]) -> None:
    """Print how many frames carry each task's labels, per part and in the set used."""
    if not distributed.is_main():
        return
    for part, ds in zip(found, sets):
        counts = label_counts(ds, tasks)
        print(f"{split} {part.name} ({part.root}): {len(ds)} frames; labels: "
              + ", ".join(f"{t} {n}" for t, n in counts.items() if t in part.tasks))
    if len(sets) > 1 or dataset is not sets[0]:
        counts = label_counts(dataset, tasks)
        print(f"{split} set used: {len(dataset)} frames; labels: " + ", ".join(f"{t} {n}" for t, n in counts.items()))


def first_of_each_label_set(dataset: Dataset, limit: int) -> list[int]:
    """`limit` frames taken in turn from each group of frames that carry the same tasks, in
    dataset order: KITTI and BDD100K list their benchmarks one after another, and a plain prefix
    would evaluate only the first. Where every frame carries the same tasks, the first `limit`."""
    groups: dict[frozenset[str], list[int]] = {}
    for i in range(len(dataset)):
        groups.setdefault(frozenset(dataset.tasks_of(i)), []).append(i)
    turns = [i for turn in itertools.zip_longest(*groups.values()) for i in turn if i is not None]
    return sorted(turns[:limit])


def val_loaders(cfg: DictConfig, split: str = "val", limit: int | None = None) -> dict[str, tuple[DataLoader, list[str]]]:
    """{part name: (loader of its frames at label resolution, its tasks)}; each rank takes every
    N-th frame under torchrun (the metrics sync in compute())."""
    loaders = {}
    for part in parts(cfg):
        ds: Dataset = open_dataset(part.dataset, part.root, split, part.tasks, part.data, False)
        if limit is not None:
            ds = torch.utils.data.Subset(ds, first_of_each_label_set(ds, limit))
        if distributed.active():
            ds = torch.utils.data.Subset(ds, range(distributed.rank(), len(ds), distributed.world_size()))
        loaders[part.name] = (DataLoader(ds, batch_size=cfg.train.batch_size, collate_fn=collate,
                                         num_workers=cfg.data.workers), list(part.tasks))
    return loaders
