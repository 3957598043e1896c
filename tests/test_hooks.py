"""The trainer's core calls its hooks at the documented points, in list order, and a user's hook
sees the loss graph before the balancer's backward."""
from __future__ import annotations

import inspect

import torch

from perception_mtl.engine.hooks import Hook, default_hooks
from perception_mtl.engine.trainer import Trainer

from helpers import tiny_config


class Recorder(Hook):
    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    def before_train(self, trainer):
        self.calls.append((self.name, "before_train", trainer.step))

    def before_backward(self, trainer, losses, features, batch):
        assert all(v.requires_grad for v in losses.values())  # the graph is alive
        assert features.shared and all(f.requires_grad for f in features.tensors())  # and reaches the features
        self.calls.append((self.name, "before_backward", trainer.step))
        return {f"train/{self.name}/loss_sum": float(sum(v.detach() for v in losses.values()))}

    def after_step(self, trainer, batch, stats):
        assert f"train/{self.name}/loss_sum" in stats and trainer.step >= 1
        self.calls.append((self.name, "after_step", trainer.step))

    def after_train(self, trainer):
        self.calls.append((self.name, "after_train", trainer.step))


def test_hooks_run_at_their_points_in_list_order(tiny_world, tmp_path):
    calls: list = []
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "train.steps=2", "tasks=[seg,depth]"),
                      hooks=[Recorder("a", calls), Recorder("b", calls)])
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert trainer.fit() == {}  # no evaluation hook: no metrics
    expected = [("a", "before_train", 0), ("b", "before_train", 0)]
    for step in (0, 1):
        expected += [("a", "before_backward", step), ("b", "before_backward", step),
                     ("a", "after_step", step + 1), ("b", "after_step", step + 1)]
    assert calls == expected + [("a", "after_train", 2), ("b", "after_train", 2)]
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.model.parameters()))  # it trained
    assert not (tmp_path / "last.pt").exists()  # checkpointing is a hook too, and was left out


def test_default_hooks_and_a_core_step_that_fits_on_one_screen():
    assert [type(h).__name__ for h in default_hooks()] == [
        "GradientProbe", "AffinityProbe", "Logging", "Evaluation", "Checkpointing", "Plots"]
    assert len(inspect.getsource(Trainer.train_step).splitlines()) <= 30
