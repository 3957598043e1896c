"""DDP (torchrun, gloo on CPU): the sharded sampler, the helpers without a process group, and
2 ranks with batch B ending with the weights and metrics of 1 process with batch 2B."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception_mtl.core import distributed
from perception_mtl.core.config import ConfigError
from perception_mtl.data.collate import move_batch
from perception_mtl.data.sampling import StepSampler
from perception_mtl.engine.trainer import Trainer

from ddp_worker import DDP_EQUIVALENT, spec_overrides
from helpers import TINY_TRAIN, tiny_config

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["equal", "uncertainty", "gradnorm", "pcgrad", "pcgrad:representation", "equal+resume"]
TOLERANCE = 1e-5


def _take(sampler: StepSampler, n: int) -> list:
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def test_ranks_see_exactly_the_global_batch():
    """2 ranks x batch 3 = 1 process x batch 6, over epoch boundaries and from a resumed step."""
    for start in (0, 5):
        single = _take(StepSampler(7, 6, seed=4, start_step=start), 6 * 4)
        shards = [_take(StepSampler(7, 3, seed=4, start_step=start, rank=r, world_size=2), 3 * 4) for r in (0, 1)]
        for step in range(4):
            assert shards[0][3 * step:3 * step + 3] + shards[1][3 * step:3 * step + 3] == single[6 * step:6 * step + 6]
    with pytest.raises(ValueError, match="rank 2 is not in"):
        StepSampler(7, 3, 0, rank=2, world_size=2)


def test_helpers_are_the_identity_without_a_process_group():
    jac = torch.randn(3, 10)
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert torch.equal(distributed.global_gramian(jac), jac @ jac.T)
    full, mine = distributed.global_jacobian(jac)
    assert full is jac and mine == slice(0, 10)
    assert distributed.global_values({"b": torch.tensor(2.5)}, ["a", "b"]) == {"b": 2.5}
    assert distributed.any_rank(torch.tensor([True, False])).tolist() == [True, False]


def test_train_device_resolves_or_says_what_to_do(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert distributed.resolve_device("auto") == torch.device("cuda:0")
    else:
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="train.device=cpu"):
            distributed.resolve_device("cuda:1")


def test_a_batch_moves_to_a_device_with_its_structure():
    """Tensors in dicts and lists move (here to the shape-only "meta" device); frame names stay."""
    batch = {"image": torch.rand(2, 3, 8, 8), "frame": ["a", "b"], "has": {"det": torch.tensor([True, False])},
             "boxes": [torch.rand(3, 4), torch.zeros(0, 4)]}
    moved = move_batch(batch, "meta")
    assert moved["frame"] == ["a", "b"] and moved["image"].is_meta and moved["has"]["det"].is_meta
    assert [b.shape for b in moved["boxes"]] == [(3, 4), (0, 4)] and all(b.is_meta for b in moved["boxes"])
    assert not batch["image"].is_meta  # the original is untouched


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_runs(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(ROOT / "tests" / "ddp_worker.py"), str(tiny_world), str(out), *SPECS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.parametrize("spec", SPECS)
def test_two_ranks_match_one_process_with_the_doubled_batch(ddp_runs, tiny_world, tmp_path, spec):
    ranks = [torch.load(ddp_runs / f"{spec}-rank{r}.pt") for r in (0, 1)]
    single = Trainer(tiny_config(tiny_world, tmp_path, *DDP_EQUIVALENT, *spec_overrides(spec), "train.batch_size=4",
                                 "wandb.mode=disabled"))
    metrics = single.fit()
    reference = single.model.state_dict()
    for key in reference:  # every rank holds the same weights
        assert torch.equal(ranks[0]["model"][key], ranks[1]["model"][key]), key
    diff = max(float((reference[k].float() - ranks[0]["model"][k].float()).abs().max()) for k in reference)
    print(f"\n{spec}: max |w_ddp - w_single| = {diff:.2e}")
    assert diff < TOLERANCE
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # synchronised validation metrics
    assert ranks[0]["metrics"].keys() == metrics.keys()
    assert all(abs(ranks[0]["metrics"][k] - metrics[k]) < 1e-4 for k in metrics), (ranks[0]["metrics"], metrics)
    run = ddp_runs / spec
    assert (run / "last.pt").exists() and (run / "config.yaml").exists()
    lines = (run / "train.jsonl").read_text().splitlines()
    assert len(lines) == 3  # rank 0 alone writes the log (log_every=1, 3 steps)


def test_torchrun_train_cli_rank0_writes_and_metrics_match_one_process(tiny_world, tmp_path):
    """The real launch: det (COCO mAP gathers uneven shards: 3 val frames on 2 ranks), seg, depth on
    test_resnet (BatchNorm statistics averaged over ranks): the synchronised validation metrics equal
    a single-process evaluation of the saved checkpoint."""
    import json

    from perception_mtl.engine.checkpoint import load_checkpoint
    from perception_mtl.engine.evaluator import evaluate_parts
    from perception_mtl.data.build import val_loaders
    from perception_mtl.engine.builders import build_model, build_tasks

    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(ROOT / "tools" / "train.py"), *TINY_TRAIN, f"data.root={tiny_world}", f"output_dir={out}",
           "train.steps=2", "train.batch_size=2", "train.threads=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("final metrics after 2 steps") == 1  # rank 0 reports
    reported = json.loads((out / "metrics.json").read_text())
    state = load_checkpoint(out / "last.pt")
    cfg = tiny_config(tiny_world, tmp_path / "eval", "train.batch_size=2")
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks)
    model.load_state_dict(state["model"])
    metrics, _ = evaluate_parts(model, tasks, val_loaders(cfg), tuple(cfg.data.size), progress=False)
    assert all(abs(reported[k] - v) < 1e-5 for k, v in metrics.items()), (reported, metrics)
