"""Balancer registry: `build_balancer(name, tasks, params)`. One module per method family:

static.py (static, equal), uncertainty.py, dwa.py, famo.py, scalarized.py (rlw, gls),
gradnorm.py, aggregators.py (torchjd: pcgrad, mgda, cagrad, nashmtl, imtl_g, aligned_mtl,
upgrad, graddrop, dualproj, config). A new method: a file here with `@BALANCERS.register`.
"""
from __future__ import annotations

import inspect

from perception_mtl.registry import Registry

BALANCERS: Registry = Registry("balancer")


def balancer_options(name: str) -> list[str]:
    """The hyperparameter names `name` accepts (`balancer.params.<option>`)."""
    factory = BALANCERS.get(name)
    if hasattr(factory, "options"):
        return list(factory.options)
    return [p for p in inspect.signature(factory).parameters if p != "tasks"]


def build_balancer(name: str, tasks: list[str], params: dict | None = None):
    """Instantiate a registered balancer; an unknown parameter lists the valid ones."""
    params = dict(params or {})
    valid = balancer_options(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(f"balancer {name!r} has no parameter(s) {unknown}; valid: {valid}")
    return BALANCERS.get(name)(list(tasks), **params)


from perception_mtl.balancing import (aggregators, dwa, famo, gradnorm, scalarized, static,  # noqa: E402,F401
                                      uncertainty)
