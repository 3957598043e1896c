"""Deterministic, resumable sampling: the order and the augmentation of every sample follow
from (seed, step) alone, so a resumed run sees exactly the batches an uninterrupted run sees."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class StepSampler(Sampler):
    """Endless (index, augmentation seed) pairs: epoch e is a permutation drawn from (seed, e);
    iteration starts at sample `start_step * batch_size`."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int = 0):
        self.size, self.batch_size, self.seed, self.start_step = size, batch_size, seed, start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start_step * self.batch_size
        epoch, offset = divmod(position, self.size)
        while True:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            order = torch.randperm(self.size, generator=g).tolist()
            for index in order[offset:]:
                yield index, (self.seed * 1_000_003 + epoch) * 1_000_003 + index
            epoch, offset = epoch + 1, 0


class SeededDataset(Dataset):
    """Wraps a dataset so that item (index, seed) is transformed under torch seed `seed`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % (2**63))
            return self.dataset[index]
