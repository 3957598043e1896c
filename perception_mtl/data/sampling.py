"""Deterministic, resumable sampling: the order and the augmentation of every sample follow
from (seed, step) alone, so a resumed run sees exactly the batches an uninterrupted run sees."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class StepSampler(Sampler):
    """Endless (index, augmentation seed) pairs: epoch e is a permutation drawn from (seed, e);
    iteration starts at sample `start_step * batch_size * world_size`.

    Sharded like `DistributedSampler`: the global stream is cut into global batches of
    `batch_size * world_size` and rank r takes the r-th slice of `batch_size` of each, so N ranks
    with batch B see exactly the samples (and augmentation seeds) one process with batch N*B sees.

    With `weights` (size,), an epoch is `size` draws with replacement, frame i with probability
    proportional to weights[i] (a mix of datasets with per-dataset sampling weights).
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, weights: torch.Tensor | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.size, self.batch_size, self.seed, self.start_step = size, batch_size, seed, start_step
        self.rank, self.world_size, self.weights = rank, world_size, weights

    def _stream(self) -> Iterator[tuple[int, int]]:
        position = self.start_step * self.batch_size * self.world_size
        epoch, offset = divmod(position, self.size)
        while True:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            order = (torch.randperm(self.size, generator=g) if self.weights is None
                     else torch.multinomial(self.weights, self.size, replacement=True, generator=g)).tolist()
            for index in order[offset:]:
                yield index, (self.seed * 1_000_003 + epoch) * 1_000_003 + index
            epoch, offset = epoch + 1, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for k, item in enumerate(self._stream()):
            if lo <= k % (self.batch_size * self.world_size) < hi:
                yield item


class SeededDataset(Dataset):
    """Wraps a dataset so that item (index, seed) is transformed under torch seed `seed`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: torch.manual_seed would also
            torch.default_generator.manual_seed(seed % (2**63))  # reseed (unrestored) every GPU's
            return self.dataset[index]
