"""Which tasks train at a step (`train.schedule`): all of them (`joint`), one in turn
(`round_robin`), or one drawn with probability proportional to its loss relative to its first
loss (`loss_proportional`, so tasks that lag behind are drawn more; per-step task sampling as
in multi-dataset MTL). The draw is a function of (seed, step), so resumed runs draw the same.
"""
from __future__ import annotations

import torch

SCHEDULES = ("joint", "round_robin", "loss_proportional")


class TaskSchedule:
    def __init__(self, kind: str, seed: int):
        if kind not in SCHEDULES:
            raise ValueError(f"train.schedule={kind!r}; choose from {list(SCHEDULES)}")
        self.kind, self.seed = kind, seed
        self.first: dict[str, float] = {}
        self.latest: dict[str, float] = {}

    def active(self, step: int, candidates: list[str]) -> list[str]:
        """The tasks to train at `step` among `candidates` (tasks not stopped, in config order)."""
        if self.kind == "joint" or len(candidates) <= 1:
            return list(candidates)
        if self.kind == "round_robin":
            return [candidates[step % len(candidates)]]
        rates = torch.tensor([self.latest.get(t, 1.0) / max(self.first.get(t, 1.0), 1e-12) for t in candidates])
        g = torch.Generator().manual_seed(self.seed * 7919 + step)
        return [candidates[int(torch.multinomial(rates.clamp_min(1e-8), 1, generator=g))]]

    def observe(self, losses: dict[str, float]) -> None:
        """Record the losses of the tasks trained this step."""
        for t, value in losses.items():
            self.first.setdefault(t, value)
            self.latest[t] = value

    def state_dict(self) -> dict:
        return {"first": dict(self.first), "latest": dict(self.latest)}

    def load_state_dict(self, state: dict) -> None:
        self.first, self.latest = dict(state["first"]), dict(state["latest"])
