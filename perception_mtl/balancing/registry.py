"""The balancer registry and what it knows of each method: options, spaces, variant labels
(the package's docstring describes the family)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from perception_mtl.core.registry import Registry

BALANCERS: Registry = Registry("balancer")
F = TypeVar("F", bound=Callable)
REPRESENTATION = "representation space (MGDA-UB approximation)"


def balancer_options(name: str) -> list[str]:
    """The hyperparameter names `name` accepts (`balancer.params.<option>`)."""
    factory = BALANCERS.get(name)
    if hasattr(factory, "options"):
        return list(factory.options)
    return [p for p in inspect.signature(factory).parameters if p != "tasks"]


def balancer_spaces(name: str) -> list[str]:
    """Where `name` combines the tasks: ["loss"], or its gradient spaces, the default first."""
    return list(getattr(BALANCERS.get(name), "spaces", ("loss",)))


def _defaults(factory: Callable) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()
            if p.default is not inspect.Parameter.empty}


def variants(base: str = "", **by_option: dict[Any, str]) -> Callable[[F], F]:
    """Class or factory decorator: `base` labels a departure from the paper whatever the options;
    `by_option` maps an option's values to labels (e.g. space={"representation": REPRESENTATION}).
    Sets `factory.variant`, the label of the default settings."""
    def mark(factory: F) -> F:
        factory.variant_base, factory.variant_options = base, by_option
        factory.variant = _label(factory, {})
        return factory
    return mark


def _label(factory: Callable, params: dict) -> str:
    chosen = {**_defaults(factory), **params}
    labels = [getattr(factory, "variant_base", "")]
    labels += [table.get(chosen.get(key), "") for key, table in getattr(factory, "variant_options", {}).items()]
    return "; ".join(label for label in labels if label)


def balancer_variant(name: str, params: dict | None = None) -> str:
    """"" when `name` with `params` (missing ones at their defaults) is its paper's method, else a
    short label of how it departs (for the leaderboard)."""
    return _label(BALANCERS.get(name), dict(params or {}))


def build_balancer(name: str, tasks: list[str], params: dict | None = None):
    """Instantiate a registered balancer; an unknown parameter lists the valid ones."""
    params = dict(params or {})
    valid = balancer_options(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TypeError(f"balancer {name!r} has no parameter(s) {unknown}; valid: {valid}")
    return BALANCERS.get(name)(list(tasks), **params)
