"""Task-based early stopping: a task whose validation metric has not improved for `patience`
evaluations stops. Its loss leaves the balancer, its own parameters (`model.task_parameters`)
are frozen, the other tasks go on, and at the end of training its best parameters come back.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from perception_mtl.tasks.base import Task


class TaskEarlyStopping:
    """Tracks each task's `metrics[task]` (default: the task's first metric) over evaluations."""

    def __init__(self, tasks: dict[str, Task], patience: int, metrics: dict[str, str] | None = None):
        self.patience = patience
        self.metric = {t: (metrics or {}).get(t) or next(iter(task.directions)) for t, task in tasks.items()}
        for t, name in self.metric.items():
            if name not in tasks[t].directions:
                raise ValueError(f"train.early_stopping.metrics.{t}={name!r}; choose from {list(tasks[t].directions)}")
        self.higher = {t: tasks[t].directions[name] for t, name in self.metric.items()}
        self.best = {t: -math.inf for t in tasks}
        self.bad = {t: 0 for t in tasks}
        self.stopped: dict[str, int] = {}  # task -> step at which it stopped
        self.best_params: dict[str, list[torch.Tensor]] = {}

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def update(self, results: dict[str, float], model: nn.Module, step: int) -> list[str]:
        """Record an evaluation's `results` ({"<task>/<metric>": value}); returns the tasks that stop now."""
        newly = []
        for t, name in self.metric.items():
            key = f"{t}/{name}"
            if t in self.stopped or key not in results or math.isnan(results[key]):
                continue
            score = results[key] if self.higher[t] else -results[key]
            if score > self.best[t]:
                self.best[t], self.bad[t] = score, 0
                self.best_params[t] = [p.detach().clone() for p in model.task_parameters(t)]
            else:
                self.bad[t] += 1
                if self.bad[t] >= self.patience:
                    self.stopped[t] = step
                    newly.append(t)
        self.freeze(model)
        return newly

    def freeze(self, model: nn.Module) -> None:
        """Stopped tasks' own parameters get no gradient (so the optimizer leaves them alone)."""
        for t in self.stopped:
            for p in model.task_parameters(t):
                p.requires_grad_(False)
                p.grad = None

    def restore_best(self, model: nn.Module) -> None:
        """Put back each stopped task's parameters from its best evaluation."""
        with torch.no_grad():
            for t in self.stopped:
                for p, best in zip(model.task_parameters(t), self.best_params.get(t, [])):
                    p.copy_(best)

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad, "stopped": self.stopped, "best_params": self.best_params}

    def load_state_dict(self, state: dict, model: nn.Module) -> None:
        self.best, self.bad = dict(state["best"]), dict(state["bad"])
        self.stopped, self.best_params = dict(state["stopped"]), dict(state["best_params"])
        self.freeze(model)
