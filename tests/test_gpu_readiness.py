"""CUDA/NCCL paths checked on the CPU: what a first GPU run would otherwise find (issue 25)."""
from __future__ import annotations

import contextlib

import pytest
import torch
from torchmetrics import Metric

from perception_mtl.core import distributed
from perception_mtl.engine import evaluator
from perception_mtl.engine.builders import build_tasks
from perception_mtl.tasks import TASKS

from helpers import tiny_config


def test_every_metric_inside_a_metric_syncs_over_the_cpu_group(tmp_path, monkeypatch):
    """Edges' BinaryStatScores and scene's MulticlassAccuracy sit inside the task's metric: their
    states are CPU tensors too, and must not go through the nccl group."""
    group = object()
    monkeypatch.setattr(distributed, "cpu_group", lambda: group)
    made: list[Metric] = []
    tasks = build_tasks(tiny_config(tmp_path, tmp_path, f"tasks=[{','.join(sorted(TASKS.names()))}]"))
    for task in tasks.values():
        monkeypatch.setattr(task, "metric", lambda make=task.metric: made.append(make()) or made[-1])
    model = torch.nn.Linear(1, 1)
    with pytest.warns(UserWarning):  # torchmetrics: compute before any update
        evaluator.evaluate(model, tasks, [], (64, 128), progress=False)
    inner = [(type(m).__name__, type(p).__name__) for m in made for p in m.modules() if isinstance(p, Metric)]
    assert {"BinaryStatScores", "MulticlassAccuracy"} <= {name for _, name in inner}
    assert all(p.process_group is group for m in made for p in m.modules() if isinstance(p, Metric)), inner


def test_a_sample_reseeds_the_cpu_generator_only(monkeypatch):
    """With data.workers=0 the samples are read in the training process: torch.manual_seed there
    would reseed the GPUs' generators per sample (GradDrop's draws, dropout), unrestored by
    fork_rng(devices=[])."""
    from perception_mtl.data.sampling import SeededDataset

    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", reseeded.append)
    data = SeededDataset(_Draw())
    assert torch.equal(data[(0, 5)], data[(1, 5)]) and not torch.equal(data[(0, 5)], data[(0, 6)])
    assert not reseeded


class _Draw(torch.utils.data.Dataset):
    """Every item is a draw from torch's global generator."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def _gpus(monkeypatch, count: int) -> list:
    """Pretend `count` GPUs are visible; returns the list of devices set."""
    chosen: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_each_torchrun_rank_takes_its_local_rank_gpu(monkeypatch):
    chosen = _gpus(monkeypatch, 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert distributed.resolve_device("cuda") == torch.device("cuda:2") == distributed.resolve_device("auto")
    with pytest.raises(distributed.DeviceError, match="every rank on one GPU; use train.device=cuda"):
        distributed.resolve_device("cuda:0")
    assert chosen == [torch.device("cuda:2")] * 2


def test_a_gpu_this_host_lacks_is_a_device_error(monkeypatch):
    _gpus(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(distributed.DeviceError, match="LOCAL_RANK=3 asks for GPU 3, but 2 GPU"):
        distributed.resolve_device("auto")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(distributed.DeviceError, match="train.device=cuda:3 asks for GPU 3, but 2 GPU"):
        distributed.resolve_device("cuda:3")


def test_a_checkpoint_saved_on_cuda_3_evaluates_and_predicts_here(tiny_checkpoint, tmp_path):
    """The device a run trained on is no statement about this host: evaluate and predict take
    train.device=auto unless told otherwise."""
    from perception_mtl.engine.checkpoint import load_checkpoint, save_checkpoint
    from perception_mtl.engine.checkpoint_eval import evaluate_checkpoint, open_checkpoint
    from perception_mtl.inference.predictor import Predictor

    state = load_checkpoint(tiny_checkpoint)
    state["config"]["train"]["device"] = "cuda:3"
    saved = tmp_path / "cuda3.pt"
    save_checkpoint(saved, state)
    opened = open_checkpoint(saved, limit=1)
    assert opened.device == distributed.resolve_device("auto")
    assert "seg/mIoU" in evaluate_checkpoint(opened, progress=False)
    assert open_checkpoint(saved, limit=1, overrides=["train.device=cpu"]).device == torch.device("cpu")
    assert next(Predictor.from_checkpoint(saved).model.parameters()).device == distributed.resolve_device("auto")


def _two_ranks_saved(monkeypatch) -> tuple[dict, list]:
    """run_state of 2 ranks on GPUs 0 and 1 (the GPU generator faked by a recorder)."""
    from perception_mtl.engine import rng

    restored: list = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.tensor([device.index], dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device)))
    ranks = []
    for r in (0, 1):
        torch.manual_seed(100 + r)
        ranks.append(rng.process_state(torch.device("cuda", r)))
    return {"ranks": ranks}, restored


def test_each_rank_restores_its_own_generators_on_a_host_with_other_gpus(monkeypatch, recwarn):
    """Rank 1 saved on GPU 1 resumes as rank 1 on this host's GPU 0 (CUDA_VISIBLE_DEVICES, fewer
    GPUs): it gets its own CPU and GPU state, exactly, without a warning."""
    from perception_mtl.engine import rng

    saved, restored = _two_ranks_saved(monkeypatch)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    rng.restore(saved, torch.device("cuda", 0))
    torch.manual_seed(101)
    expected = torch.rand(3)
    rng.restore(saved, torch.device("cuda", 0))
    assert torch.equal(torch.rand(3), expected)
    assert restored == [(1, torch.device("cuda", 0))] * 2
    assert not [w for w in recwarn if issubclass(w.category, rng.InexactResumeWarning)]


def test_a_resume_that_cannot_be_exact_says_why(monkeypatch):
    from perception_mtl.engine import rng

    saved, _ = _two_ranks_saved(monkeypatch)
    with pytest.warns(rng.InexactResumeWarning, match="2 process.*this run has 1.*not exact"):
        rng.restore(saved, torch.device("cuda", 0))
    with pytest.warns(rng.InexactResumeWarning, match="trained on cuda and resumes on cpu"):
        rng.restore({"ranks": saved["ranks"][:1]}, torch.device("cpu"))
    old = {**{k: saved["ranks"][0][k] for k in ("torch", "numpy", "python")}, "cuda": [torch.zeros(1)] * 2}
    with pytest.warns(rng.InexactResumeWarning, match="2 GPU.*GPU 3"):  # was an IndexError
        rng.restore(old, torch.device("cuda", 3))


def test_a_ddp_step_all_reduces_each_gradient_once_in_a_few_buckets(tiny_world, tmp_path, monkeypatch):
    """PCGrad (parameter space) all-reduces the shared Jacobian, which makes the shared gradient
    global: the trainer must not all-reduce it again, and no collective goes per parameter. The
    process group is faked (one rank whose all-reduce records what it carries)."""
    import torch.distributed as dist

    from perception_mtl.data.collate import move_batch
    from perception_mtl.engine.trainer import Trainer

    trainer = Trainer(tiny_config(tiny_world, tmp_path, "balancer.name=pcgrad", "train.steps=1"), hooks=[])
    batch = move_batch(next(trainer.batches()), trainer.device)
    reduced: list[torch.Tensor] = []
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None, group=None: reduced.append(t))
    trainer.run_step(batch)
    floats = [t for t in reduced if t.dtype == torch.float32]
    shared = sum(p.numel() for p in trainer.model.shared_parameters() if p.requires_grad)
    own = sum(p.numel() for t in trainer.tasks for p in trainer.model.task_parameters(t))
    buffers = sum(b.numel() for b in trainer.model.buffers() if b.dtype == torch.float32)
    assert sum(t.numel() for t in floats) == len(trainer.tasks) * shared + own + buffers  # the Jacobian, not the grad too
    assert len(floats) <= 6, [t.numel() for t in floats]


def test_bench_balancers_steps_on_the_trainers_device(tiny_world, monkeypatch, capsys):
    """Its batch and its freshly installed balancer (uncertainty's log_var) go to the trainer's
    device, here the virtual one (a CPU batch there is what a CUDA trainer would refuse)."""
    from helpers import TINY_TRAIN
    from virtual_device import DEVICE, VirtualDevice

    from perception_mtl.benchmark import balancer_cost as tool  # tools/bench_balancers.py's logic

    monkeypatch.setattr(distributed, "resolve_device", lambda name: DEVICE)
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())  # off (train.amp=false),
    with VirtualDevice():  # but torch refuses to build it for the meta device type
        tool.child("uncertainty", [*TINY_TRAIN, f"data.root={tiny_world}", "tasks=[seg,depth]"])
    assert "peak_mib" in capsys.readouterr().out


def test_the_bench_clock_waits_for_the_gpu(monkeypatch):
    from perception_mtl.engine.clock import now

    waited: list = []
    monkeypatch.setattr(torch.cuda, "synchronize", waited.append)
    now("cpu")
    now(torch.device("cuda", 1))
    assert waited == [torch.device("cuda", 1)]


def test_the_gpu_smoke_script_parses_and_refuses_without_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "gpu_smoke.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no CUDA GPU visible" in done.stderr, done.stderr
