"""Checks of a suite file's keys (format in `suite.py`), each raising ConfigError with what is valid."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from perception_mtl.analysis.controls import EXPECTATIONS
from perception_mtl.analysis.leaderboard import REFERENCE
from perception_mtl.core.config import ConfigError
from perception_mtl.data.world.generate import WorldSpec

KEYS = {"name", "description", "world", "config", "tasks", "seeds", "baselines", "methods", "delta_metrics",
        "output_dir", "wandb", "sweep", "pairs", "test", "expect", "experiments", "launcher", "keep_checkpoints",
        "tune", "tune_seeds", "power"}
EXPERIMENT_KEYS = KEYS - {"name", "world", "output_dir", "wandb", "experiments",  # one world, one W&B project,
                          "launcher", "keep_checkpoints"}  # one launcher
TEST_KEYS = {"split", "limit"}
METHOD_KEYS = {"name", "label", "params", "config", "tune"}
TYPES = {"name": str, "description": str, "config": dict, "tasks": list, "seeds": (list, dict), "baselines": bool,
         "pairs": bool, "delta_metrics": dict, "output_dir": str, "wandb": dict, "launcher": dict,
         "keep_checkpoints": bool, "experiments": dict, "tune": dict, "tune_seeds": int, "power": dict}  # suite key -> its type (null: the key's default)


def check_keys(path: Path, spec: dict, valid: set[str], where: str) -> None:
    """No key outside `valid` in `spec` (`where`: "the suite" or "experiment '<name>'")."""
    unknown = sorted(map(str, set(spec) - valid))  # str: YAML keys may be numbers
    if unknown:
        raise ConfigError(f"{path}: {where} has unknown key(s) {unknown}; valid: {sorted(valid)}")


def check_runs(path: Path, spec: dict, where: str) -> None:
    """A suite without experiments (or an experiment, merged over its suite) names its tasks,
    seeds and methods; its sweep and pairs are well formed."""
    for key in ("tasks", "seeds", "methods"):
        if key not in spec:
            raise ConfigError(f"{path}: {where} is missing '{key}'")
    check_types(path, spec, where, required=("tasks", "seeds"))
    if not spec["tasks"] or not all(isinstance(t, str) for t in spec["tasks"]):
        raise ConfigError(f"{path}: tasks of {where} must be a list of task names, e.g. [det, seg], "
                          f"got {spec['tasks']!r}")
    if isinstance(spec["seeds"], dict):
        check_seed_plan(path, spec["seeds"], where)
    elif not spec["seeds"] or not all(type(s) is int for s in spec["seeds"]):
        raise ConfigError(f"{path}: seeds of {where} must be a list of integers, e.g. [0, 1], or a sequential plan "
                          f"{{min: 3, max: 10, margin: 2}}, got {spec['seeds']!r}")
    check_tuning(path, spec, where)
    sweep = spec.get("sweep")
    if sweep is not None and (not isinstance(sweep, dict) or len(sweep) != 1
                              or not isinstance(next(iter(sweep.values())), list)):
        raise ConfigError(f"{path}: sweep must be one key with a list of values, e.g. "
                          "{data.train_fraction: [0.1, 0.25, 1.0]}")
    if spec.get("pairs") and len(spec["tasks"]) < 3:
        raise ConfigError(f"{path}: pairs needs 3 or more tasks; with {len(spec['tasks'])} the pair is the "
                          "multi-task run itself")


def check_types(path: Path, spec: dict, where: str, required: tuple[str, ...] = ()) -> None:
    """Each key of TYPES in `spec` of its type; those `required` also not null."""
    for key, kind in TYPES.items():
        if (spec.get(key) is not None or key in required) and not isinstance(spec.get(key), kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{path}: {key} of {where} must be a {names}, got {spec.get(key)!r}")
    names = {"config": (r"[A-Za-z_][\w.]*", "dotted config keys, e.g. train.steps"),
             "experiments": (r"[\w.-]+", "folder names (letters, digits, '_', '-', '.')")}
    for key, (pattern, words) in names.items():
        bad = [k for k in spec.get(key) or {} if not (isinstance(k, str) and re.fullmatch(pattern, k))]
        if bad:
            raise ConfigError(f"{path}: the keys of {key} of {where} must be {words}, got {bad!r}")


def check_seed_plan(path: Path, seeds: dict, where: str) -> None:
    """Sequential seeds {min, max, margin}: integers 2 <= min <= max, a positive margin (Δm points)."""
    ok = set(seeds) == {"min", "max", "margin"} and type(seeds["min"]) is int and type(seeds["max"]) is int \
        and 2 <= seeds["min"] <= seeds["max"] and isinstance(seeds["margin"], (int, float)) and seeds["margin"] > 0
    if not ok:
        raise ConfigError(f"{path}: seeds of {where} as a sequential plan must be {{min: <int >= 2>, max: <int >= min>, "
                          f"margin: <Δm points > 0>}}, got {seeds!r}")


def check_tuning(path: Path, spec: dict, where: str) -> None:
    """The suite-wide `tune` grid (config key -> non-empty list), `tune_seeds` within the seeds, `power.margin`."""
    grid = spec.get("tune")
    if grid is not None and (not grid or not all(isinstance(v, list) and v for v in grid.values())):
        raise ConfigError(f"{path}: tune of {where} must map config keys to non-empty lists of values, e.g. "
                          "{optim.lr: [0.001, 0.002, 0.004]}")
    first = spec["seeds"]["min"] if isinstance(spec["seeds"], dict) else len(spec["seeds"])
    count = spec.get("tune_seeds")
    if count is not None and not 1 <= count <= first:
        raise ConfigError(f"{path}: tune_seeds of {where} must be between 1 and the {first} seeds every method runs")
    power = spec.get("power")
    if power is not None and (set(power) != {"margin"} or not isinstance(power["margin"], (int, float))
                              or power["margin"] <= 0):
        raise ConfigError(f"{path}: power of {where} must be {{margin: <Δm points > 0>}}, got {power!r}")


def check_methods(path: Path, methods: Any) -> None:
    """Each `methods` entry is a balancer name or a mapping with `name`; a `tune` is a mapping of
    config keys to non-empty lists of values."""
    if not isinstance(methods, list):
        raise ConfigError(f"{path}: methods must be a list, e.g. [equal, {{name: pcgrad, label: pcgrad-rep}}]")
    for method in methods:
        if isinstance(method, str):
            continue
        unknown = sorted(set(method) - METHOD_KEYS) if isinstance(method, dict) else None
        if unknown is None or "name" not in method or unknown:
            raise ConfigError(f"{path}: methods entry {method!r} must be a balancer name or a mapping with 'name' "
                              f"and keys from {sorted(METHOD_KEYS)}")
        grid = method.get("tune")
        if grid is not None and (not isinstance(grid, dict) or not grid
                                 or not all(isinstance(v, list) and v for v in grid.values())):
            raise ConfigError(f"{path}: tune of {method['name']} must map config keys to non-empty lists of "
                              "values, e.g. {optim.lr: [0.001, 0.002, 0.004]}")


def check_world(path: Path, world: Any) -> None:
    """`world` is absent or a mapping of `WorldSpec` fields (train, val, test frames, size, seed, ...)."""
    valid = [f.name for f in fields(WorldSpec)]
    if world is not None and (not isinstance(world, dict) or set(world) - set(valid)):
        raise ConfigError(f"{path}: world must be a mapping with keys from {valid}, e.g. "
                          "{train: 24, val: 12, test: 12, height: 64, width: 128, seed: 11}")


def check_test(path: Path, test: Any) -> None:
    """`test` is absent or {split: <a split other than train and val>, limit: <frames or null>}."""
    if test is None:
        return
    if not isinstance(test, dict) or set(test) - TEST_KEYS:
        raise ConfigError(f"{path}: test must be a mapping with keys {sorted(TEST_KEYS)}, e.g. "
                          "{split: test, limit: 500}")
    if test.get("split", "test") in ("train", "val"):
        raise ConfigError(f"{path}: test.split={test['split']} is not held out (val selects the checkpoints); "
                          "use a split of its own, e.g. test")
    limit = test.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{path}: test.limit={limit!r} must be a frame count >= 1 or null (all frames)")


def method_label(method: str | dict) -> str:
    """The run label of a `methods` entry: its `label`, else its name ("<name>-tuned" with `tune`)."""
    if isinstance(method, str):
        return method
    return method.get("label", f"{method['name']}-tuned" if method.get("tune") else method["name"])


def check_expect(path: Path, expect: Any, spec: dict) -> None:
    """`expect` is absent or a list of the expectations of analysis/controls.py, naming the suite's
    method labels and tasks."""
    if expect is None:
        return
    labels = [method_label(m) for m in spec.get("methods", [])]
    tasks = list(spec.get("tasks", []))
    for item in expect if isinstance(expect, list) else [expect]:
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in EXPECTATIONS:
            raise ConfigError(f"{path}: expect entries are one-key mappings from {list(EXPECTATIONS)}, e.g. "
                              "{better_than_equal: [uncertainty]} or {harms: {noise: [seg]}}; got " + repr(item))
        (kind, value), = item.items()
        if kind == "better_than_equal":
            unknown = [m for m in value or [] if m not in labels] if isinstance(value, list) else [value]
            if not value or unknown or REFERENCE not in labels:
                raise ConfigError(f"{path}: better_than_equal needs a list of the suite's method labels {labels} "
                                  f"(and '{REFERENCE}' among them); unknown: {unknown}")
            continue
        pairs = [(a, b) for a, bs in value.items() for b in bs] if isinstance(value, dict) else None
        if not pairs or any(a not in tasks or b not in tasks or a == b for a, b in pairs) or not spec.get("pairs"):
            raise ConfigError(f"{path}: {kind} maps a task to the tasks it trains with, e.g. {{noise: [seg, depth]}}, "
                              f"all from tasks {tasks}, and needs pairs: true; got {value!r}")
