"""Metric keys, `<task>/<metric>` or `<task>/<metric>@<dataset>` (a task evaluated on several
datasets of a mix), parsed and printed here only."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKey:
    task: str
    metric: str
    part: str | None = None  # the dataset, when several evaluate the task

    @classmethod
    def parse(cls, key: str) -> "MetricKey":
        """"seg/mIoU@kitti" -> MetricKey("seg", "mIoU", "kitti"); a key without "/" is an error."""
        task, sep, rest = key.partition("/")
        if not sep or not task or not rest:
            raise ValueError(f"metric key {key!r} is not '<task>/<metric>[@<dataset>]'")
        metric, at, part = rest.partition("@")
        return cls(task, metric, part if at else None)

    @property
    def qualified_metric(self) -> str:
        """The metric with its dataset, "mIoU@kitti" (or "mIoU")."""
        return self.metric + (f"@{self.part}" if self.part is not None else "")

    def __str__(self) -> str:
        return f"{self.task}/{self.qualified_metric}"
