"""Where a real training step's time goes, measured by a hook on the loop (tools/bench_speed.py).

Parts of a step, from the hook points and two torch hooks: data wait (the previous step's end to
`before_step`), forward + losses (to `before_backward`), backward (the balancer's, the gradient
sync and the clip: to the optimizer's step pre-hook), optimizer + after-step (the step, the
schedule, the balancer's after-step, BatchNorm sync: to `after_step`); inside the forward, the
backbone, the neck and each head (module forward hooks). Readings wait for queued CUDA kernels.
"""
from __future__ import annotations

import statistics

from perception_mtl.engine.clock import now
from perception_mtl.engine.loop import Hook, Losses
from perception_mtl.models.features import Features

STEP_PARTS = ("data wait", "forward + losses", "backward", "optimizer + after-step")


class StepTimer(Hook):
    """Per-part wall times (s) of every step after the first `warmup`; keeps the last batch."""

    def __init__(self, warmup: int = 3):
        self.warmup = warmup
        self.parts: dict[str, list[float]] = {}
        self.last_batch: dict | None = None

    def attach(self) -> None:
        t = self.trainer
        self.device = t.device
        modules = {"backbone": getattr(t.model, "backbone", None), "neck": getattr(t.model, "neck", None),
                   **{f"head/{name}": head for name, head in t.model.heads.items()}}
        self._open: dict[str, float] = {}
        for name, module in modules.items():
            if module is not None:
                module.register_forward_pre_hook(lambda *_, n=name: self._open.__setitem__(n, now(self.device)))
                module.register_forward_hook(lambda *_, n=name: self._close(n))
        t.optimizer.register_step_pre_hook(lambda *_: self._mark("backward"))

    def _close(self, name: str) -> None:
        self._step.setdefault(name, 0.0)
        self._step[name] += now(self.device) - self._open[name]

    def _mark(self, part: str) -> None:
        tic = now(self.device)
        self._step[part], self._tic = tic - self._tic, tic

    def before_train(self) -> None:
        self._tic, self._step = now(self.device), {}

    def before_step(self, batch: dict) -> None:
        self._mark("data wait")

    def before_backward(self, losses: Losses, features: Features, batch: dict) -> dict[str, float]:
        self._mark("forward + losses")
        return {}

    def after_step(self, batch: dict, stats: dict[str, float]) -> None:
        self._mark("optimizer + after-step")
        if self.trainer.step > self.warmup:
            for name, seconds in self._step.items():
                self.parts.setdefault(name, []).append(seconds)
        self._step, self.last_batch = {}, batch

    def median(self, name: str) -> float:
        return statistics.median(self.parts[name])

    def step(self) -> float:
        """Median seconds of a whole step (the sum of the parts' medians)."""
        return sum(self.median(p) for p in STEP_PARTS)


def lower_bound(trainer, batch: dict, repeats: int = 5) -> float:
    """Median seconds of the model's forward + backward of the summed losses on `batch` (already in
    memory), the first call left out: what the loop cannot go below."""
    times = []
    for _ in range(repeats):
        start = now(trainer.device)
        sum(trainer.losses(batch).values()).backward()
        times.append(now(trainer.device) - start)
    trainer.optimizer.zero_grad(set_to_none=True)
    return statistics.median(times[1:])
