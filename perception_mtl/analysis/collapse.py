"""Collapsed seeds: a multi-task run whose task fell far below what the task reaches alone.

A seed of a run collapsed when, for one of its tasks, the task's primary metric (`Task.primary`,
mAP50 for detection) is worse than half the single-task mean: below 0.5 B when higher is better,
above 2 B when lower is better. A collapse is counted and shown, never filtered out.
"""
from __future__ import annotations

from perception_mtl.tasks import TASKS

FACTOR = 0.5


def collapsed(record: dict, base: dict[str, float]) -> list[str]:
    """The tasks of `record` whose primary metric collapsed against the baselines `base`."""
    out = []
    for task in record["tasks"]:
        if task not in TASKS:
            continue
        key = f"{task}/{TASKS.get(task).primary}"
        value, reference = record["metrics"].get(key), base.get(key)
        if value is None or not reference:
            continue
        higher = record["directions"].get(key, True)
        if (value < FACTOR * reference) if higher else (value > reference / FACTOR):
            out.append(task)
    return out


def collapse_counts(records: list[dict], base: dict[str, float]) -> dict[str, dict[str, int]]:
    """{run label: {task: seeds where it collapsed}} over the multi-task records."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        if record["kind"] != "mtl":
            continue
        per_task = counts.setdefault(record["run"], {})
        for task in collapsed(record, base):
            per_task[task] = per_task.get(task, 0) + 1
    return counts
