"""torch.distributed helpers for runs launched by torchrun or by `srun --ntasks=N`
(`env_from_slurm`); every helper is a no-op (or the identity) in a single process, so the training
code calls them unconditionally. A leaf of the package: it imports nothing of perception_mtl but
`errors.py`, so that balancers, tasks, data and tracking can use it without reaching up into the
engine.

Devices: the model, the balancer, batches and gradients live on `train.device` (a GPU per process
under torchrun with nccl); loss tables, metric states and flags stay on the CPU and travel
through a gloo group (`cpu_group`). Gradients and buffers go in coalesced buckets.

Conventions: `train.batch_size` is the batch of one process; the global batch is
`batch_size * world_size`. Every task loss is a mean over the local batch, so the loss of
the global batch is the mean over ranks, and so is its gradient (`average_gradients`).
"""
from __future__ import annotations

import os
import random
import subprocess
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from perception_mtl.core.errors import ConfigError


class DeviceError(ConfigError):
    """`train.device` names a device this machine or this torch build does not have."""


_CPU_GROUP = None  # a gloo group for CPU tensors and objects when the default backend is nccl


def resolve_device(name: str) -> torch.device:
    """`train.device` -> torch.device: "auto" is this process's GPU (LOCAL_RANK) when CUDA is
    available, else the CPU; "cuda" is the GPU of LOCAL_RANK; "cuda:N" is GPU N in one process,
    and refused under torchrun (every rank would share GPU N); "cpu" is itself. A GPU this
    machine does not have is a DeviceError."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"train.device={name} but this torch has no CUDA device "
                           f"(torch {torch.__version__}); run with train.device=cpu (or auto)")
    if name.startswith("cuda:") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DeviceError(f"train.device={name} under torchrun would put every rank on one GPU; use "
                          "train.device=cuda (or auto): each rank takes the GPU of its LOCAL_RANK")
    device = torch.device(f"cuda:{local}" if name == "cuda" else name)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index >= count:
            which = f"LOCAL_RANK={local}" if name == "cuda" else f"train.device={name}"
            raise DeviceError(f"{which} asks for GPU {device.index}, but {count} GPU(s) are visible here "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at "
                              f"most {count} process(es) per node, or name a GPU below {count}")
        torch.cuda.set_device(device)
    return device


def env_from_slurm() -> bool:
    """Under `srun --ntasks=N` (N > 1) without torchrun, export what torchrun would set, from
    SLURM's step variables: RANK = SLURM_PROCID, WORLD_SIZE = SLURM_STEP_NUM_TASKS, LOCAL_RANK =
    SLURM_LOCALID, MASTER_ADDR = the step's first node (`scontrol show hostnames`), MASTER_PORT drawn
    from the job and step ids (the same on every rank; MASTER_ADDR/PORT already set are kept).
    A batch script (no step) and torchrun inside an allocation (WORLD_SIZE set) are left alone.
    Returns whether it exported."""
    env = os.environ
    if "WORLD_SIZE" in env or int(env.get("SLURM_STEP_NUM_TASKS", "1")) <= 1:
        return False
    if "MASTER_ADDR" not in env:
        hosts = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_STEP_NODELIST"]], capture_output=True,
                               text=True, check=True).stdout.split()
        env["MASTER_ADDR"] = hosts[0]
    env.setdefault("MASTER_PORT", str(random.Random(f"{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}").randint(
        20000, 59999)))
    env.update(RANK=env["SLURM_PROCID"], WORLD_SIZE=env["SLURM_STEP_NUM_TASKS"], LOCAL_RANK=env["SLURM_LOCALID"])
    return True


def init_from_env(device: torch.device = torch.device("cpu")) -> bool:
    """Join the process group that torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR, ...): nccl
    when the model is on a GPU, else gloo. With nccl a second, gloo group carries the CPU-side
    collectives (flags, loss tables, metric states, objects), as detectron2 does, so that the
    bookkeeping never has to move to the GPU. Returns whether a group is active."""
    global _CPU_GROUP
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    nccl = device.type == "cuda"
    dist.init_process_group("nccl" if nccl else "gloo", device_id=device if nccl else None)
    _CPU_GROUP = dist.new_group(backend="gloo") if nccl else None
    return True


def cpu_group():
    """The process group for CPU tensors: None (the default group) unless the default is nccl."""
    return _CPU_GROUP


def _group(tensor: torch.Tensor):
    return _CPU_GROUP if tensor.device.type == "cpu" else None


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the process that logs, plots and writes checkpoints."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; returns `tensor`."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_group(tensor))
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks, in place; returns `tensor`."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_group(tensor))
        tensor /= dist.get_world_size()
    return tensor


def global_values(losses: dict[str, torch.Tensor], tasks: list[str]) -> dict[str, float]:
    """{task: loss of the global batch} for every task of `tasks` labelled on some rank: the mean
    of the local batch-mean losses over the ranks that have it (in one process: the local values)."""
    table = torch.zeros(2, len(tasks), dtype=torch.float64)
    for t, loss in losses.items():
        table[:, tasks.index(t)] = torch.tensor([float(loss.detach()), 1.0], dtype=torch.float64)
    all_reduce_sum(table)
    return {t: float(table[0, i] / table[1, i]) for i, t in enumerate(tasks) if table[1, i] > 0}


def require_same_tasks(present: list[str], tasks: list[str]) -> None:
    """Gradient-space methods combine per-task gradients across ranks, so every rank must have a
    loss for the same tasks at a step; raise a clear error otherwise."""
    if not active():
        return
    local = torch.tensor([t in present for t in tasks], dtype=torch.int32)
    low, high = local.clone(), local.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=_CPU_GROUP)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=_CPU_GROUP)
    if not torch.equal(low, high):
        uneven = [t for t, a, b in zip(tasks, low.tolist(), high.tolist()) if a != b]
        raise RuntimeError(f"task(s) {uneven} are labelled in some ranks' batches but not others; gradient "
                           "methods under DDP need every task in every rank's batch: use a loss-space balancer "
                           "or a larger train.batch_size")


def any_rank(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise OR over ranks of a bool tensor (so every rank takes the same branch)."""
    out = flags.to("cpu", torch.int32).clone()
    if active():
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=_CPU_GROUP)
    return out.bool()


def global_gramian(jac: torch.Tensor) -> torch.Tensor:
    """Gramian of the global batch from the local Jacobian J_r (T, D_r) of the local mean losses
    on the local shared features: the global Jacobian is [J_0, ..., J_{N-1}] / N, so
    G = sum_r J_r J_r^T / N^2."""
    gram = jac @ jac.T
    if active():
        all_reduce_sum(gram)
        gram /= world_size() ** 2
    return gram


def global_jacobian(jac: torch.Tensor) -> tuple[torch.Tensor, slice]:
    """The global Jacobian [J_0, ..., J_{N-1}] / N (T, sum D_r) and the columns of this rank.
    A direction d on it is pushed through this rank's features as N * d[columns] (the
    gradients are then averaged over ranks)."""
    if not active():
        return jac, slice(0, jac.shape[1])
    widths = [torch.zeros((), dtype=torch.long) for _ in range(world_size())]
    dist.all_gather(widths, torch.tensor(jac.shape[1]), group=_CPU_GROUP)
    widths = [int(w) for w in widths]
    parts = [jac.new_zeros(jac.shape[0], w) for w in widths]
    dist.all_gather(parts, jac.contiguous())
    start = sum(widths[:rank()])
    return torch.cat(parts, dim=1) / world_size(), slice(start, start + widths[rank()])


def gather_objects(items: list) -> list:
    """Every rank's `items` (picklable), concatenated in rank order, on every rank."""
    if not active():
        return list(items)
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(items), group=_CPU_GROUP)
    return [item for part in parts for item in part]


BUCKET_BYTES = 25 * 2**20  # DDP's default bucket_cap_mb: one collective per bucket, not per tensor


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """`tensors` grouped by device and dtype into runs of at most BUCKET_BYTES (a larger tensor
    is a bucket of its own)."""
    groups: dict[tuple, list[list[torch.Tensor]]] = {}
    for t in tensors:
        runs = groups.setdefault((t.device, t.dtype), [[]])
        if runs[-1] and sum(x.numel() for x in runs[-1]) * t.element_size() + t.nbytes > BUCKET_BYTES:
            runs.append([])
        runs[-1].append(t)
    return [run for runs in groups.values() for run in runs]


def _coalesced(tensors: list[torch.Tensor], collective) -> None:
    """Apply `collective(flat)` in place to `tensors`, one flattened bucket at a time. By hand
    because DDP's reducer only serves DistributedDataParallel's own backward, and our balancers
    run theirs (several backward passes, Jacobians)."""
    for bucket in _buckets(tensors):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        collective(flat)
        for t, piece in zip(bucket, flat.split([t.numel() for t in bucket])):
            t.copy_(piece.view_as(t))


def all_reduce_mean_many(tensors: Iterable[torch.Tensor]) -> None:
    """`all_reduce_mean` of every tensor, in place, in coalesced buckets."""
    if active():
        _coalesced(list(tensors), all_reduce_mean)


def average_gradients(params: Iterable[nn.Parameter], averaged: Iterable[nn.Parameter] = ()) -> None:
    """Replace every `.grad` by its mean over ranks, in coalesced buckets; `averaged`: parameters
    whose gradient is already the global one (a balancer averaged it), left alone. A parameter
    without a grad on this rank counts as zeros if another rank has one, and stays None otherwise."""
    if not active():
        return
    done = {id(p) for p in averaged}
    params = [p for p in params if id(p) not in done]
    has = any_rank(torch.tensor([p.grad is not None for p in params], dtype=torch.bool))
    params = [p for p, h in zip(params, has.tolist()) if h]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_mean_many(p.grad for p in params)


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics, updated from each rank's own
    batch) over ranks, so that every rank, the checkpoint and the evaluation share one model."""
    all_reduce_mean_many(b.data for b in module.buffers() if b.is_floating_point())


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        _coalesced([t.data for t in [*module.parameters(), *module.buffers()]], lambda flat: dist.broadcast(
            flat, src=0, group=_group(flat)))


def barrier() -> None:
    if active():
        dist.barrier(group=_CPU_GROUP)


def shutdown() -> None:
    """Leave the process group (end of a torchrun run)."""
    global _CPU_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CPU_GROUP = None
