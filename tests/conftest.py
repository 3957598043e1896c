"""Shared fixtures: a tiny driving world on disk, generated once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from perception_mtl.data.world.generate import WorldSpec, generate

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2`: one torch thread per test process (and per process a test starts), so that two
    # processes share 2 cores instead of four threads fighting over them
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

TINY = WorldSpec(train=6, val=3, seed=7, height=64, width=128)

# hypothesis: "ci" (the default) keeps the fuzz tests' share of CI under a minute; HYPOTHESIS_PROFILE=long
# tries 20 times as many examples (docs/FAULTS.md, "Fuzzed inputs"); a test's own max_examples is a multiple of these
settings.register_profile("ci", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train + 3 val frames at 64x128 in the Cityscapes layout."""
    return generate(tmp_path_factory.mktemp("world"), TINY, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.pt of 3 training steps of timm's test_resnet on the tiny world (det, seg, depth)."""
    from helpers import tiny_config

    from perception_mtl.engine.trainer import Trainer

    out = tmp_path_factory.mktemp("tiny_run")
    Trainer(tiny_config(tiny_world, out, "train.steps=3")).fit()
    return out / "last.pt"
