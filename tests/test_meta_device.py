"""Stray CPU tensors without a GPU: every task's head, loss, prediction and metric, and every
balancer, run on a second device (tests/virtual_device.py: CPU data reported as the meta device,
refusing CPU operands as CUDA does); a tensor made without `device=` fails, naming the module.
And `.to(device)` of the trainer leaves no parameter, buffer or state tensor behind."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from perception_mtl.balancing import BALANCERS
from perception_mtl.data.collate import collate, move_batch
from perception_mtl.engine.builders import build_balancer, build_data, build_model, build_tasks
from perception_mtl.tasks import TASKS

from helpers import tiny_config
from virtual_device import DEVICE, Remote, StrayTensorError, VirtualDevice, where

ALL_TASKS = sorted(TASKS.names())


@pytest.fixture(scope="module")
def parts(tiny_world, tmp_path_factory):
    """The config of every task and a CPU batch with a label of each: the tiny world's (a
    Cityscapes layout) and a random drivable-area map, which only BDD100K has."""
    world_tasks = [t for t in ALL_TASKS if t != "drivable"]
    data = build_data(tiny_config(tiny_world, tmp_path_factory.mktemp("meta"), f"tasks=[{','.join(world_tasks)}]"))
    batch = next(iter(DataLoader(data.train, batch_size=3, collate_fn=collate)))
    batch["drivable"] = torch.randint(0, 3, batch["semantic"].shape, generator=torch.Generator().manual_seed(0))
    batch["has"]["drivable"] = torch.ones(3, dtype=torch.bool)
    return tiny_config(tiny_world, tmp_path_factory.mktemp("meta"), f"tasks=[{','.join(ALL_TASKS)}]"), batch


def _model(cfg, tasks):
    torch.manual_seed(0)
    return build_model(cfg, tasks)


def _on_device(module: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers of `module` not on the virtual device."""
    return [n for n, t in [*module.named_parameters(), *module.named_buffers()] if not isinstance(t, Remote)]


def test_the_virtual_device_refuses_a_cpu_operand_and_names_the_module():
    class Stray(torch.nn.Module):
        def forward(self, x):
            return x + torch.ones(x.shape[-1])  # no device=

    with VirtualDevice(), pytest.raises(StrayTensorError, match="Stray"):
        Stray()(torch.zeros(2, 3, device=DEVICE))


def test_every_head_loss_prediction_and_metric_runs_on_the_device(parts):
    cfg, cpu_batch = parts
    tasks = build_tasks(cfg)
    with VirtualDevice():
        model = _model(cfg, tasks).to(DEVICE)
        assert not _on_device(model)
        batch = move_batch(cpu_batch, DEVICE)
        outputs = model(batch["image"])
        for t, task in tasks.items():
            with where(f"task {t}: loss"):
                parts_ = task.loss(model.heads[t], outputs[t], batch)
                assert parts_ and all(isinstance(v, Remote) for v in parts_.values()), t
            with torch.no_grad(), where(f"task {t}: predict and metric"):
                preds = task.predict(model.heads[t], outputs[t], batch["image"], tuple(batch["image"].shape[-2:]))
                metric = task.metric().to(DEVICE)
                task.update(metric, preds, batch)
                values = metric.compute()
                assert all(torch.isfinite(torch.as_tensor(float(v))) or t == "det" for v in values.values()), t
        sum(parts_.values()).backward()


@pytest.mark.parametrize("name", sorted(BALANCERS.names()))
def test_every_balancer_runs_on_the_device(parts, name):
    """Loss-space balancers (all of them) and gradient-space ones with state take a step and, where
    they have one, their post-step hook on the device; their state stays there."""
    cfg, cpu_batch = parts
    sub = cfg.copy()
    sub.tasks = ["seg", "depth", "scene"]  # balancers do not depend on the tasks; det's matcher is slow here
    sub.balancer.name = name
    tasks = build_tasks(sub)
    with VirtualDevice():
        model = _model(sub, tasks).to(DEVICE)
        balancer = build_balancer(sub).to(DEVICE)
        assert not _on_device(balancer), name
        batch = move_batch(cpu_batch, DEVICE)

        def losses(features):
            outputs = model.task_outputs(features)
            return {t: sum(task.loss(model.heads[t], outputs[t], batch).values()) for t, task in tasks.items()}

        with where(f"balancer {name}"):
            features = model.shared_features(batch["image"])
            result = balancer.backward(losses(features), features, model)
            with torch.no_grad():
                balancer.after_step(lambda: losses(model.shared_features(batch["image"])))
        assert set(result["weights"]) == set(tasks)
        assert not _on_device(balancer), name
        assert all(p.grad is None or isinstance(p.grad, Remote) for p in model.parameters())


@pytest.mark.parametrize("balancer", ["uncertainty", "imtl_l", "dwa"])
def test_the_trainer_leaves_no_parameter_or_buffer_on_the_cpu(tiny_world, tmp_path, monkeypatch, balancer):
    """Trainer(train.device=<the device>): model, balancer (uncertainty's log_var, IMTL-L's
    log_scale, DWA's history) and what the optimizer steps all live on the device."""
    from perception_mtl.core import distributed
    from perception_mtl.engine.trainer import Trainer

    monkeypatch.setattr(distributed, "resolve_device", lambda name: DEVICE)
    with VirtualDevice():
        trainer = Trainer(tiny_config(tiny_world, tmp_path, f"balancer.name={balancer}", "train.steps=1"), hooks=[])
        assert trainer.device == DEVICE
        assert not _on_device(trainer.model)
        assert not _on_device(trainer.balancer), balancer
        stepped = [p for group in trainer.optimizer.param_groups for p in group["params"]]
        assert all(isinstance(p, Remote) for p in stepped)


def test_a_run_trains_and_evaluates_on_the_device(tiny_world, tmp_path, monkeypatch):
    """fit() with the default hooks (gradient probe, TAG affinity every step, evaluation,
    checkpoint): the guards, clip, optimizer, balancer and hooks make no CPU tensor that meets the
    device's. torch refuses to build even a disabled autocast for the meta device type: it is
    replaced by a null context (train.amp is off)."""
    import contextlib

    from perception_mtl.core import distributed
    from perception_mtl.engine.trainer import Trainer

    monkeypatch.setattr(distributed, "resolve_device", lambda name: DEVICE)
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
    cfg = tiny_config(tiny_world, tmp_path, "tasks=[seg,depth,scene]", "balancer.name=uncertainty",
                      "train.steps=2", "train.affinity_every=1")
    with VirtualDevice():
        metrics = Trainer(cfg).fit()
    assert "seg/mIoU" in metrics and (tmp_path / "last.pt").is_file()
