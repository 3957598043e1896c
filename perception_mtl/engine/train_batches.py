"""A run's training batches as a pure function of the step, surviving dead data workers."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from perception_mtl.core import distributed
from perception_mtl.data.collate import collate, move_batch
from perception_mtl.data.sampling import SeededDataset, StepSampler

WORKER_RESTARTS = 3  # times a run rebuilds its data loader after a worker died, before it stops


class TrainBatches:
    """This rank's shard of each global batch, from a given step on; `restarts` counts the loaders
    rebuilt after a data worker died (at most WORKER_RESTARTS, then the run stops with a message)."""

    def __init__(self, dataset: Dataset, frame_weights: torch.Tensor | None, cfg: DictConfig,
                 device: torch.device, run_dir: Path):
        self.dataset, self.frame_weights, self.cfg, self.device, self.run_dir = (
            dataset, frame_weights, cfg, device, run_dir)
        self.restarts = 0

    def loader(self, step: int) -> Iterator[dict]:
        """Batches on the CPU from `step` on."""
        train = self.cfg.train
        sampler = StepSampler(len(self.dataset), train.batch_size, train.seed, step,
                              distributed.rank(), distributed.world_size(), self.frame_weights)
        return iter(DataLoader(SeededDataset(self.dataset), batch_size=train.batch_size, collate_fn=collate,
                               sampler=sampler, num_workers=self.cfg.data.workers,
                               pin_memory=self.device.type == "cuda"))

    def __call__(self, step: Callable[[], int]) -> Iterator[dict]:
        """Batches on the device from step `step()` on. A dead data worker (the OOM killer, a crashing
        decoder) gets a new loader from the step the loop has reached: the batches stay the same."""
        loader = self.loader(step())
        while True:
            try:
                yield move_batch(next(loader), self.device)
            except StopIteration:
                return
            except RuntimeError as err:
                loader = self._restart(err, step())

    def _restart(self, err: RuntimeError, step: int) -> Iterator[dict]:
        if "DataLoader worker (pid" not in str(err):  # torch's words for a dead worker; a worker's own error is re-raised
            raise err
        self.restarts += 1
        if self.restarts > WORKER_RESTARTS:
            raise RuntimeError(f"data loader workers died {self.restarts} times (last at step {step + 1}: "
                               f"{err}); {self.run_dir / 'last.pt'} is intact. Lower data.workers or free memory "
                               "(see `dmesg` for the OOM killer), then rerun with --resume") from err
        warnings.warn(f"a data loader worker died at step {step + 1} ({err}); restarting the loader "
                      f"({self.restarts}/{WORKER_RESTARTS}), the batches stay the same")
        return self.loader(step)
