"""The loop calls its hooks at the documented points, in list order; a user's hook sees the loss graph
before the balancer's backward; hooks hold the loop weakly and keep their own state in last.pt."""
from __future__ import annotations

import gc
import inspect
import weakref

import torch

from perception_mtl.engine import loop, trainer as default_trainer
from perception_mtl.engine.hooks import Evaluation, default_hooks
from perception_mtl.engine.loop import Hook, TrainLoop
from perception_mtl.engine.trainer import Trainer

from helpers import tiny_config


class Recorder(Hook):
    def __init__(self, name: str, calls: list):
        self.name, self.calls = name, calls

    def before_train(self):
        self.calls.append((self.name, "before_train", self.trainer.step))

    def before_step(self, batch):
        assert batch["image"].device == self.trainer.device
        self.calls.append((self.name, "before_step", self.trainer.step))

    def before_backward(self, losses, features, batch):
        assert all(v.requires_grad for v in losses.values())  # the graph is alive
        assert features.shared and all(f.requires_grad for f in features.tensors())  # and reaches the features
        self.calls.append((self.name, "before_backward", self.trainer.step))
        return {f"train/{self.name}/loss_sum": float(sum(v.detach() for v in losses.values()))}

    def after_step(self, batch, stats):
        assert f"train/{self.name}/loss_sum" in stats and self.trainer.step >= 1
        self.calls.append((self.name, "after_step", self.trainer.step))

    def after_train(self):
        self.calls.append((self.name, "after_train", self.trainer.step))


def test_hooks_run_at_their_points_in_list_order(tiny_world, tmp_path):
    calls: list = []
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "train.steps=2", "tasks=[seg,depth]"),
                      hooks=[Recorder("a", calls), Recorder("b", calls)])
    before = [p.detach().clone() for p in trainer.model.parameters()]
    assert trainer.fit() == {}  # no evaluation hook: no metrics
    expected = [("a", "before_train", 0), ("b", "before_train", 0)]
    for step in (0, 1):
        expected += [("a", "before_step", step), ("b", "before_step", step),
                     ("a", "before_backward", step), ("b", "before_backward", step),
                     ("a", "after_step", step + 1), ("b", "after_step", step + 1)]
    assert calls == expected + [("a", "after_train", 2), ("b", "after_train", 2)]
    assert any(not torch.equal(p, q) for p, q in zip(before, trainer.model.parameters()))  # it trained
    assert not (tmp_path / "last.pt").exists()  # checkpointing is a hook too, and was left out


def test_hooks_hold_the_loop_weakly(tiny_world, tmp_path):
    hook = Recorder("a", [])
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "train.steps=1"), hooks=[hook])
    assert isinstance(hook.trainer, weakref.ProxyType) and hook.trainer.step == 0
    alive = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert alive() is None  # no reference cycle through the hooks keeps a run alive


def test_evaluation_owns_best_and_early_stopping_and_resumes_them(tiny_world, tmp_path):
    cfg = ["train.steps=2", "train.eval_every=1", "tasks=[seg,depth]", "train.early_stopping.patience=5"]
    first = Trainer(tiny_config(tiny_world, tmp_path, *cfg))
    first.fit()
    evaluation = next(h for h in first.hooks if isinstance(h, Evaluation))
    assert math_finite(evaluation.best) and (tmp_path / "best.pt").exists()
    saved = torch.load(tmp_path / "last.pt", weights_only=False)["hooks"]["Evaluation"]
    assert saved["best"] == evaluation.best and saved["early_stopping"]["best"] == evaluation.early_stopping.best
    resumed = Trainer(tiny_config(tiny_world, tmp_path, *cfg, "resume=true"))
    again = next(h for h in resumed.hooks if isinstance(h, Evaluation))
    assert again.best == evaluation.best and again.early_stopping.best == evaluation.early_stopping.best


def math_finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def test_default_hooks_are_assembled_outside_the_loop_and_the_core_step_fits_on_one_screen():
    assert [type(h).__name__ for h in default_hooks()] == [
        "GradientProbe", "AffinityProbe", "Logging", "Evaluation", "Checkpointing", "Plots"]
    assert "hooks" not in {n.split(".")[-1] for n in loop.__dict__ if not n.startswith("_")}
    assert "from perception_mtl.engine.hooks" not in inspect.getsource(loop)  # the loop knows only the base
    assert issubclass(default_trainer.Trainer, TrainLoop)
    assert len(inspect.getsource(TrainLoop.run_step).splitlines()) <= 30
