"""Sharing schemes: soft sharing (beta = 0 is independent training, a large beta pulls the
backbones together), cross-stitch at identity is the per-task networks, and every scheme
trains under loss-space and gradient-space balancers."""
from __future__ import annotations

import functools

import pytest
import torch
from torchjd.aggregation import Mean

from perception_mtl.balancing.aggregators import AggregatorBalancer
from perception_mtl.core.config import ConfigError
from perception_mtl.data.collate import collate
from perception_mtl.engine.builders import build_model, build_tasks
from perception_mtl.engine.trainer import Trainer

from helpers import tiny_config


def _trained(world, out, *extra) -> Trainer:
    trainer = Trainer(tiny_config(world, out, "train.steps=4", "optim.clip_grad=1e9", "data.hflip=0", *extra))
    trainer.fit()
    return trainer


def test_soft_sharing_with_beta_zero_is_independent_training(tiny_world, tmp_path):
    joint = _trained(tiny_world, tmp_path / "joint", "model.sharing=soft", "model.soft.beta=0", "tasks=[seg,depth]")
    alone = _trained(tiny_world, tmp_path / "alone", "model.sharing=soft", "model.soft.beta=0", "tasks=[seg]")
    for part in ("backbones", "necks", "heads"):
        mine = dict(getattr(joint.model, part)["seg"].named_parameters())
        for name, p in getattr(alone.model, part)["seg"].named_parameters():
            torch.testing.assert_close(mine[name], p, rtol=1e-5, atol=1e-6, msg=f"{part}.seg.{name}")


def test_soft_sharing_with_a_large_beta_pulls_the_backbones_together(tiny_world, tmp_path):
    start = build_model(tiny_config(tiny_world, tmp_path, "model.sharing=soft", "tasks=[seg,depth]"),
                        build_tasks(tiny_config(tiny_world, tmp_path, "tasks=[seg,depth]"))).distance().item()
    free = _trained(tiny_world, tmp_path / "free", "model.sharing=soft", "model.soft.beta=0", "tasks=[seg,depth]")
    pulled = _trained(tiny_world, tmp_path / "pulled", "model.sharing=soft", "model.soft.beta=10",
                      "tasks=[seg,depth]")
    after_free, after_pulled = free.model.distance().item(), pulled.model.distance().item()
    assert after_pulled < 0.9 * start, (start, after_pulled)
    assert after_pulled < after_free, (after_free, after_pulled)


def test_cross_stitch_at_identity_equals_the_per_task_networks(tiny_world, tmp_path):
    cfg = tiny_config(tiny_world, tmp_path, "tasks=[det,seg,depth]", "model.cross_stitch_init=1.0")
    tasks = build_tasks(cfg)
    stitched = build_model(tiny_config(tiny_world, tmp_path, "tasks=[det,seg,depth]", "model.sharing=cross_stitch",
                                       "model.cross_stitch_init=1.0"), tasks).eval()
    separate = build_model(tiny_config(tiny_world, tmp_path, "tasks=[det,seg,depth]", "model.sharing=soft"),
                           tasks).eval()
    images = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        a, b = stitched(images), separate(images)
    torch.testing.assert_close(a["seg"], b["seg"], rtol=0, atol=1e-6)
    torch.testing.assert_close(a["depth"], b["depth"], rtol=0, atol=1e-6)
    torch.testing.assert_close(a["det"]["cls_logits"], b["det"]["cls_logits"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("sharing, extra", [
    ("soft", ["balancer.name=gradnorm"]),
    ("soft", ["balancer.name=pcgrad", "model.soft.penalty=features", "model.soft.beta=1"]),
    ("cross_stitch", ["balancer.name=pcgrad"]),
    ("cross_stitch", ["balancer.name=uncertainty"]),
])
def test_every_scheme_trains_under_balancers(tiny_world, tmp_path, sharing, extra):
    """Two steps on one fixed batch change the shared and every task's parameters and lower the sum
    of the task losses on that batch."""
    trainer = Trainer(tiny_config(tiny_world, tmp_path, f"model.sharing={sharing}", "tasks=[seg,depth]",
                                  "train.steps=2", "optim.clip_grad=1e9", *extra))
    batch = collate([trainer.train_set[i] for i in range(3)])

    def total_loss() -> float:
        with torch.no_grad():
            return float(sum(trainer.losses(batch).values()))

    def snapshot(params) -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    parts = {"shared": trainer.model.shared_parameters, **{t: functools.partial(trainer.model.task_parameters, t)
                                                            for t in ("seg", "depth")}}
    before, loss_before = {k: snapshot(params()) for k, params in parts.items()}, total_loss()
    for _ in range(2):
        trainer.run_step(batch)
    loss_after = total_loss()
    for part, params in parts.items():
        after = list(params())
        assert all(torch.isfinite(p).all() for p in after), part
        assert any(not torch.equal(b, a) for b, a in zip(before[part], after)), f"{part} parameters did not change"
    assert loss_after < loss_before, (loss_before, loss_after)


def test_representation_space_needs_hard_sharing(tiny_world, tmp_path):
    with pytest.raises(ConfigError, match="space=parameter"):
        tiny_config(tiny_world, tmp_path, "model.sharing=soft", "balancer.name=pcgrad",
                    "balancer.params.space=representation")


@pytest.mark.parametrize("sharing", ["hard", "soft", "cross_stitch"])
def test_the_model_returns_its_features_and_stores_nothing(tiny_world, tmp_path, sharing):
    """forward is task_outputs(shared_features(images)); the features say whether every task reads
    them, and a representation-space method refuses per-task ones."""
    cfg = tiny_config(tiny_world, tmp_path, f"model.sharing={sharing}", "tasks=[seg,depth]")
    torch.manual_seed(0)
    model = build_model(cfg, build_tasks(cfg)).eval()
    images = torch.rand(2, 3, 64, 128)
    before = [dict(vars(m)) for m in model.modules()]
    with torch.no_grad():
        features = model.shared_features(images)
        split, whole = model.task_outputs(features), model(images)
    for m, attributes in zip(model.modules(), before):  # no forward sets an attribute
        assert vars(m).keys() == attributes.keys() and all(vars(m)[k] is v for k, v in attributes.items())
    torch.testing.assert_close(split, whole, rtol=0, atol=0)
    assert features.shared == (sharing == "hard") and features.levels
    if sharing == "hard":
        assert all(isinstance(stride, int) for stride in features.levels)
    else:
        assert {t for t, _ in features.levels} == {"seg", "depth"}
        features = model.shared_features(images)
        losses = {t: out.mean() for t, out in model.task_outputs(features).items()}
        with pytest.raises(ValueError, match="parameter space"):
            AggregatorBalancer(["seg", "depth"], Mean(), "representation").backward(losses, features, model)


@pytest.mark.parametrize("branch", ["neck", "backbone"])
def test_representation_gradients_count_each_path_once(tiny_world, tmp_path, branch):
    """The mean aggregator on the representation must equal the gradient of the mean loss, also
    when the representation is the backbone's levels (which feed each other)."""
    cfg = tiny_config(tiny_world, tmp_path, f"model.branch={branch}", "tasks=[seg,depth]")
    torch.manual_seed(0)
    model = build_model(cfg, build_tasks(cfg))
    images = torch.rand(2, 3, 64, 128)

    def losses(out):
        return {"seg": out["seg"].pow(2).mean(), "depth": out["depth"].sin().mean()}

    sum(l / 2 for l in losses(model(images)).values()).backward()
    expected = [p.grad.clone() for p in model.backbone.parameters()]
    model.zero_grad()
    features = model.shared_features(images)
    AggregatorBalancer(["seg", "depth"], Mean(), "representation").backward(
        losses(model.task_outputs(features)), features, model)
    for e, p in zip(expected, model.backbone.parameters()):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-7)
