"""tools/bench_speed.py's timer measures the real step: a hook on the trainer's own loop, which
changes nothing that is trained, with every part of every timed step present."""
from __future__ import annotations

import torch

from perception_mtl.engine.step_timer import STEP_PARTS, StepTimer, lower_bound
from perception_mtl.engine.trainer import Trainer

from helpers import tiny_config


def test_the_timer_times_every_part_of_the_real_step_and_changes_nothing(tiny_world, tmp_path):
    timer = StepTimer(warmup=2)
    timed = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=5", "tasks=[det,seg]"), hooks=[timer])
    timed.fit()
    plain = Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=5", "tasks=[det,seg]"), hooks=[])
    plain.fit()
    for p, q in zip(timed.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)  # the same training, bit for bit
    assert set(STEP_PARTS) | {"backbone", "neck", "head/det", "head/seg"} == set(timer.parts)
    assert all(len(v) == 3 and min(v) > 0 for v in timer.parts.values())  # 5 steps, 2 left out
    forward = timer.median("backbone") + timer.median("neck")
    assert forward < timer.median("forward + losses") < timer.step()
    assert timer.last_batch is not None and 0 < lower_bound(timed, timer.last_batch)
