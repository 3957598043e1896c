"""A dataset as a list of frames, each carrying a fixed set of tasks (KITTI, BDD100K): frames
are indexed from the official label files at construction, where a bad label is an error naming
the file or, with on_bad_label="skip", is left out and counted."""
from __future__ import annotations

from collections import Counter

from torch.utils.data import Dataset

from perception_mtl.data.files import DatasetError

ON_BAD_LABEL = ("error", "skip")


class FrameDataset(Dataset):
    """Subclasses fill `self.frames` (objects with a `tasks` set) and call `_bad` on a bad label."""

    def __init__(self, on_bad_label: str):
        if on_bad_label not in ON_BAD_LABEL:
            raise ValueError(f"on_bad_label must be 'error' or 'skip', got {on_bad_label!r}")
        self.on_bad_label = on_bad_label
        self.skipped: Counter[str] = Counter()
        self.frames: list = []

    def __len__(self) -> int:
        return len(self.frames)

    def tasks_of(self, index: int) -> set[str]:
        """The tasks frame `index` has labels of, without reading its files."""
        return set(self.frames[index].tasks)

    def _bad(self, kind: str, message: str) -> None:
        """A bad label or frame: raise (on_bad_label="error") or count it under `kind`."""
        if self.on_bad_label == "error":
            raise DatasetError(f"{message} (data.on_bad_label=skip skips such labels and frames, counting them)")
        self.skipped[kind] += 1

    def _report_skipped(self, name: str) -> None:
        if self.skipped:
            print(f"{name} {self.split}: skipped bad labels/frames: {dict(self.skipped)}")
