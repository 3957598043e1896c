"""GPU-aware launchers on a CPU machine (GPUs faked by monkeypatching torch.cuda): the local
backend's one GPU per worker, the default backend and workers on a GPU host, submitit's GPU request."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from perception_mtl.benchmark.launch import gpus, local, settings
from perception_mtl.benchmark.launch.settings import job_parameters, launcher_config, make_backend


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(settings, "cores", lambda: 16)


def test_a_gpu_host_runs_a_process_per_run_one_worker_per_gpu(four_gpus, monkeypatch):
    launcher = launcher_config({"config": {}})  # train.device=auto: the GPU
    assert (launcher.backend, launcher.workers, launcher.threads) == ("local", 4, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert gpus.visible_gpus() == ["2", "5"] and launcher_config({"config": {}}).workers == 2
    assert gpus.gpu_slots(3) == ["2", "5", "2"]
    on_cpu = launcher_config({"config": {"train.device": "cpu"}})
    assert on_cpu.backend == settings.DEFAULT_CPU_BACKEND and on_cpu.gpus_per_run == 0


def test_submitit_asks_for_a_gpu_per_run_when_the_suite_trains_on_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node without a GPU
    spec = {"config": {"train.device": "cuda"}, "launcher": {"backend": "submitit", "cluster": "local"}}
    assert job_parameters(launcher_config(spec), "s")["gpus_per_node"] == 1
    spec["config"]["train.device"] = "cpu"
    assert job_parameters(launcher_config(spec), "s")["gpus_per_node"] == 0
    spec["launcher"]["gpus_per_run"] = 2
    assert job_parameters(launcher_config(spec), "s")["gpus_per_node"] == 2


class _Job:
    name = "run"

    def __init__(self, folder: Path):
        self.folder = folder

    def log_file(self, logs: Path) -> Path:
        return self.folder / "run.log"


def test_runs_at_once_never_share_a_gpu(tmp_path, monkeypatch):
    """Two attempts at once take GPUs 0 and 1; a third, after them, takes a freed one."""
    seen: list[str] = []
    together = threading.Barrier(2)

    class Process:
        exitcode = 0

        def __init__(self, target, args, name):
            self.gpu = args[2]

        def start(self):
            seen.append(self.gpu)

        def join(self):
            if len(seen) <= 2:
                together.wait(timeout=10)

    monkeypatch.setattr(local.CONTEXT, "Process", Process)
    backend = local.LocalBackend(tmp_path, ["0", "1"])
    threads = [threading.Thread(target=backend.attempt, args=(_Job(tmp_path),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == ["0", "1"]
    assert backend.attempt(_Job(tmp_path)) is None and seen[2] in ("0", "1")


def test_the_runner_gives_local_workers_their_gpus(four_gpus, tmp_path):
    backend = make_backend(launcher_config({"config": {}}), tmp_path, "s")
    assert sorted(backend.free.queue) == ["0", "1", "2", "3"]
    on_cpu = make_backend(launcher_config({"config": {"train.device": "cpu"}, "launcher": {"backend": "local"}}),
                          tmp_path, "s")
    assert not on_cpu.gpus
