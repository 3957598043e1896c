"""Tasks whose labels are another task's (`Task.reads`, published to data/targets.READS): a loader
is asked for the task they read, and each frame carrying that task carries them too. Loaders
never learn their names, so such a task needs no change in any loader."""
from __future__ import annotations

from torch.utils.data import Dataset

from perception_mtl.data.registry import DATASETS
from perception_mtl.data.targets import READS


class DerivedTasks(Dataset):
    """`dataset`, loaded with the tasks that the derived tasks `reads` ({task: the task it reads})
    read; a frame carries a derived task where it carries what that task reads, and the tasks in
    `hidden` (loaded only for others) are not reported as carried."""

    def __init__(self, dataset: Dataset, reads: dict[str, str], hidden: set[str]):
        self.dataset, self.reads, self.hidden = dataset, reads, hidden

    def __len__(self) -> int:
        return len(self.dataset)

    def _carried(self, loaded: set[str]) -> set[str]:
        return (loaded - self.hidden) | {t for t, source in self.reads.items() if source in loaded}

    def tasks_of(self, index: int) -> set[str]:
        return self._carried(self.dataset.tasks_of(index))

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        sample["has"] = self._carried(sample["has"])
        return sample


def open_dataset(name: str, root: str, split: str, tasks: tuple[str, ...], data, train: bool) -> Dataset:
    """`DATASETS.get(name)(root, split, tasks, data, train)` (data/__init__.py), a task that reads
    another's labels (READS) replaced by that task for the loader."""
    reads = {t: READS[t] for t in tasks if t in READS}
    loaded = tuple(dict.fromkeys(READS.get(t, t) for t in tasks))
    dataset = DATASETS.get(name)(root, split, loaded, data, train)
    return DerivedTasks(dataset, reads, set(loaded) - set(tasks)) if reads else dataset
