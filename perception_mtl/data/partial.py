"""Views of a dataset that keep some frames and remove some tasks' labels (partial labels).

Label removal is a fixed draw, the same for every run and seed, so runs compare on the same
labels: task t's labels are removed from the first round(f * n_t) of its n_t labelled frames in
a permutation drawn from a seed derived from t's name, hence a smaller fraction's frames are among
a larger one's, and different tasks lose labels on different frames.
"""
from __future__ import annotations

import bisect
import zlib

import torch
from torch.utils.data import ConcatDataset, Dataset

from perception_mtl.data.targets import TASK_TARGETS

class Concat(ConcatDataset):
    """torch's ConcatDataset that also answers `tasks_of(index)` and says which part a frame is from."""

    def part(self, index: int) -> tuple[int, int]:
        """-> (part number, index within that part)."""
        k = bisect.bisect_right(self.cumulative_sizes, index)
        return k, index - (self.cumulative_sizes[k - 1] if k else 0)

    def tasks_of(self, index: int) -> set[str]:
        k, i = self.part(index)
        return self.datasets[k].tasks_of(i)


class LabelView(Dataset):
    """Frames `indices` of `dataset`; on frame i the tasks in `dropped[i]` lose their labels."""

    def __init__(self, dataset: Dataset, indices: list[int], dropped: dict[int, set[str]] | None = None):
        self.dataset, self.indices, self.dropped = dataset, list(indices), dropped or {}

    def __len__(self) -> int:
        return len(self.indices)

    def tasks_of(self, index: int) -> set[str]:
        return self.dataset.tasks_of(self.indices[index]) - self.dropped.get(index, set())

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[self.indices[index]]
        gone = self.dropped.get(index)
        if gone:
            sample["has"] = sample["has"] - gone
            kept = {key for t in sample["has"] for key in TASK_TARGETS[t]}
            for key in {key for t in gone for key in TASK_TARGETS[t]} - kept:
                sample.pop(key, None)
        return sample


def fraction_of(size: int, fraction: float) -> list[int]:
    """A fixed `fraction` of range(size), drawn with seed 0 (nested: smaller fractions are subsets)."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(0)).tolist()
    return sorted(order[:max(1, round(fraction * size))])


def drop_labels(dataset: Dataset, fractions: dict[str, float]) -> LabelView:
    """All frames of `dataset`; task t's labels removed from a fraction fractions[t] of the frames
    that carry them."""
    dropped: dict[int, set[str]] = {}
    carrying = {t: [i for i in range(len(dataset)) if t in dataset.tasks_of(i)] for t in fractions}
    for task, fraction in fractions.items():
        frames = carrying[task]
        seed = zlib.crc32(task.encode())  # a different draw per task, the same in every run
        order = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed)).tolist()
        for k in order[:round(fraction * len(frames))]:
            dropped.setdefault(frames[k], set()).add(task)
    return LabelView(dataset, list(range(len(dataset))), dropped)


def label_counts(dataset: Dataset, tasks: list[str]) -> dict[str, int]:
    """{task: number of frames carrying its labels}."""
    counts = dict.fromkeys(tasks, 0)
    for i in range(len(dataset)):
        for t in dataset.tasks_of(i) & counts.keys():
            counts[t] += 1
    return counts
