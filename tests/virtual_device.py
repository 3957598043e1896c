"""A second device on a CPU-only machine, for tests: tensors that compute on the CPU but report
`torch.device("meta")`, and that refuse, as CUDA does, to meet a CPU tensor in an op.

PyTorch's own meta tensors carry no data, so a loss with a boolean mask or a box matcher cannot
run on them; and no other device type ships with a CPU build. `VirtualDevice` is a
TorchDispatchMode (PyTorch's hook for every aten op) plus a wrapper tensor subclass: a factory
call with `device="meta"` and `.to("meta")` give wrapped tensors; an op on wrapped tensors runs
on their CPU data and wraps its outputs; an op that mixes a wrapped tensor with a CPU tensor
raises `StrayTensorError` naming the op and the module (or the `where()` label) it ran in. The
rules follow CUDA's: a 0-dim CPU tensor is a scalar and may mix, and index tensors may stay on
the CPU. Hand-written because no library offers a data-carrying fake device on a CPU build.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")
INDEX_OPS = {"aten::index.Tensor", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_"}


class StrayTensorError(RuntimeError):
    """A CPU tensor met tensors of the virtual device in one op."""


class Remote(torch.Tensor):
    """A tensor on the virtual device: CPU data (`inner`) that reports `DEVICE`."""

    inner: torch.Tensor

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> "Remote":
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, strides=inner.stride(), dtype=inner.dtype,
                                                   device=DEVICE, requires_grad=inner.requires_grad,
                                                   storage_offset=inner.storage_offset())

    def __init__(self, inner: torch.Tensor):
        self.inner = inner

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})

    def __getitem__(self, index):
        return torch.Tensor.__getitem__(self, _host_lists(index))

    def __setitem__(self, index, value) -> None:
        torch.Tensor.__setitem__(self, _host_lists(index), value)

    def tolist(self) -> Any:  # as a CUDA tensor's: a copy to the host
        return self.inner.tolist()

    def __repr__(self) -> str:
        return f"Remote({self.inner!r})"


def _host_lists(index):
    """Python lists in an index as CPU tensors: torch would build them on the tensor's device
    outside the dispatcher, which for this device means a tensor without data."""
    if isinstance(index, list):
        return torch.tensor(index)
    return tuple(_host_lists(i) for i in index) if isinstance(index, tuple) else index


_WHERE: list[str] = []


def _pre(module, args):
    _WHERE.append(type(module).__qualname__)


def _post(module, args, output):
    _WHERE.pop()


@contextlib.contextmanager
def where(label: str) -> Iterator[None]:
    """Name the code in the block (a task's loss, a balancer) in StrayTensorError's message."""
    _WHERE.append(label)
    try:
        yield
    finally:
        _WHERE.pop()


def _is_target(device) -> bool:
    return device is not None and torch.device(device).type == DEVICE.type


def _run(func, args: tuple, kwargs: dict):
    """Run `func` on the CPU data; wrap the outputs when an input or the target device is virtual."""
    leaves = _leaves(args, kwargs)
    if any(isinstance(a, torch.Tensor) and not isinstance(a, Remote) and a.is_meta for a in leaves):
        raise RuntimeError(f"{func}: a data-less meta tensor reached the virtual device (made outside the "
                           "dispatcher); teach tests/virtual_device.py that path")
    remote = [a for a in leaves if isinstance(a, Remote)]
    target = _is_target(kwargs.get("device"))
    if remote:
        _check(func, args, kwargs)
    if target:
        kwargs = {**kwargs, "device": torch.device("cpu")}
    unwrapped_args = tree_map(lambda a: a.inner if isinstance(a, Remote) else a, args)
    unwrapped_kwargs = tree_map(lambda a: a.inner if isinstance(a, Remote) else a, kwargs)
    out = func(*unwrapped_args, **unwrapped_kwargs)
    to_cpu = "device" in kwargs and not target  # .to("cpu"), .cpu(): back to the host
    if not (remote or target) or to_cpu:
        return out
    wrap = lambda o: Remote(o) if isinstance(o, torch.Tensor) and not isinstance(o, Remote) else o  # noqa: E731
    if isinstance(out, tuple) and hasattr(type(out), "n_fields"):  # (values, indices) of min, max, sort
        return type(out)([wrap(o) for o in out])
    return tree_map(wrap, out)


def _leaves(args: tuple, kwargs: dict) -> list:
    found: list = []
    tree_map(found.append, (args, kwargs))
    return found


def _check(func, args: tuple, kwargs: dict) -> None:
    name = func._schema.name + (f".{func._schema.overload_name}" if func._schema.overload_name else "")
    index_op = name in INDEX_OPS
    for i, a in enumerate(_leaves(args, kwargs)):
        if not isinstance(a, torch.Tensor) or isinstance(a, Remote) or a.dim() == 0:
            continue
        if index_op and (a.dtype in (torch.bool, torch.long, torch.int32) and i > 0):
            continue  # CUDA takes CPU index tensors
        raise StrayTensorError(f"{name}: a {a.device} tensor {tuple(a.shape)} {a.dtype} meets tensors on the device, "
                               f"in {' > '.join(_WHERE) or 'top level'}")


class _FromData(TorchFunctionMode):
    """torch.tensor and torch.as_tensor copy their data to the device outside the dispatcher:
    make them on the CPU, then move them (through the dispatcher)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and _is_target(kwargs.get("device")):
            return func(*args, **{**kwargs, "device": "cpu"}).to(DEVICE)
        return func(*args, **kwargs)


class VirtualDevice(TorchDispatchMode):
    """While active: factory calls with device="meta" make wrapped tensors; mixed ops raise."""

    def __enter__(self):
        _WHERE.clear()
        self._hooks = [register_module_forward_pre_hook(_pre), register_module_forward_hook(_post)]
        self._data = _FromData()
        self._data.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        self._data.__exit__(*exc)
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})
