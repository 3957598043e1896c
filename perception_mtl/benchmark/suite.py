"""A benchmark suite: the shared settings, the seeds, the single-task baselines and one
multi-task run per balancer, read from `configs/benchmark/<name>.yaml`.

    name: smoke
    world: {train: 24, val: 12, height: 64, width: 128, seed: 3}  # optional: generate data.root if absent
    config: {model.backbone: test_resnet, train.steps: 20, ...}   # key=value for every run
    tasks: [det, seg, depth]
    seeds: [0, 1]
    baselines: true                                                # one single-task run per task
    methods: [equal, gradnorm, {label: pcgrad-rep, name: pcgrad, params: {space: representation}},
              {name: equal, label: equal-tag, config: {train.affinity_every: 10}},  # config: run-only keys
              {name: equal, label: equal-tuned, tune: {optim.lr: [0.001, 0.002, 0.004]}}]
        # tune: a grid (every combination of the listed values): one run per point and seed, kind "tune",
        # label "<label>:optim.lr=0.001"; the analysis keeps the point with the best mean val Δm over
        # seeds as the row <label> (analysis/tuning.py). Default label "<name>-tuned".
    delta_metrics: {det: [mAP50], seg: [mIoU], depth: [abs_rel, delta1]}
    sweep: {data.train_fraction: [0.1, 0.25, 1.0]}  # optional: every run at each value (label "<run>@<value>"),
                                                     # compared with the baselines of the same value
    pairs: true  # optional, 3+ tasks: one equal-weight run per task pair ("pair-<a>+<b>", kind "pair"), for
                 # the pairwise transfer matrix of Standley et al. 2020 in the transfer report
    test: {split: test, limit: 500}  # optional: after training, each run's selected checkpoint (best.pt on val,
                                     # else last.pt) is evaluated once on this held-out split; the leaderboard and
                                     # the transfer report then report it. `world:` renders it with `test: <frames>`
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from perception_mtl.config import ConfigError, load_config
from perception_mtl.data.world.generate import WorldSpec

KEYS = {"name", "description", "world", "config", "tasks", "seeds", "baselines", "methods", "delta_metrics",
        "output_dir", "wandb", "sweep", "pairs", "test"}
TEST_KEYS = {"split", "limit"}
METHOD_KEYS = {"name", "label", "params", "config", "tune"}


@dataclass
class Run:
    """One training run of the suite: a balancer (or a single task) and a seed."""

    label: str  # "equal", "pcgrad-rep", "stl-det"
    kind: str  # "mtl", "stl" or "pair"
    method: str
    tasks: list[str]
    seed: int
    overrides: list[str] = field(default_factory=list)
    sweep: dict[str, Any] = field(default_factory=dict)  # {"key": ..., "value": ...} of a swept setting
    tune: dict[str, str] = field(default_factory=dict)  # a grid point of `tune`: {"row", "point", "budget"}

    @property
    def folder(self) -> str:
        return f"runs/{self.label}/seed{self.seed}"


@dataclass
class Suite:
    name: str
    path: Path
    spec: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Suite":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no suite file {path}; suites: {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        unknown = sorted(set(spec) - KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; valid: {sorted(KEYS)}")
        for key in ("name", "tasks", "seeds", "methods"):
            if key not in spec:
                raise ConfigError(f"{path}: missing '{key}'")
        sweep = spec.get("sweep")
        if sweep is not None and (not isinstance(sweep, dict) or len(sweep) != 1
                                  or not isinstance(next(iter(sweep.values())), list)):
            raise ConfigError(f"{path}: sweep must be one key with a list of values, e.g. "
                              "{data.train_fraction: [0.1, 0.25, 1.0]}")
        if spec.get("pairs") and len(spec["tasks"]) < 3:
            raise ConfigError(f"{path}: pairs needs 3 or more tasks; with {len(spec['tasks'])} the pair is the "
                              "multi-task run itself")
        check_methods(path, spec["methods"])
        check_world(path, spec.get("world"))
        check_test(path, spec.get("test"))
        suite = cls(spec["name"], path, spec)
        for run in suite.runs():  # every run's config must be valid before any work starts
            suite.config(run, "/tmp/unused")
        return suite

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.get("output_dir", f"runs/benchmark/{self.name}"))

    @property
    def test(self) -> dict | None:
        """{"split": ..., "limit": ...} of the held-out evaluation, or None without `test`."""
        test = self.spec.get("test")
        return None if test is None else {"split": test.get("split", "test"), "limit": test.get("limit")}

    def runs(self) -> list[Run]:
        """Every run; with a `sweep`, every run at each swept value."""
        if not self.spec.get("sweep"):
            return self._runs()
        (key, values), = self.spec["sweep"].items()
        runs = []
        for value in values:
            for run in self._runs():
                run.label, run.sweep = f"{run.label}@{value}", {"key": key, "value": value}
                run.overrides.append(f"{key}={_value(value)}")
                if run.tune:
                    run.tune["row"] = f"{run.tune['row']}@{value}"
                runs.append(run)
        return runs

    def _runs(self) -> list[Run]:
        tasks = list(self.spec["tasks"])
        runs = []
        for seed in self.spec["seeds"]:
            if self.spec.get("baselines", True):
                runs += [Run(f"stl-{t}", "stl", "equal", [t], seed) for t in tasks]
            if self.spec.get("pairs"):
                runs += [Run(f"pair-{a}+{b}", "pair", "equal", [a, b], seed, ["balancer.name=equal"])
                         for a, b in itertools.combinations(tasks, 2)]
            for method in self.spec["methods"]:
                runs += method_runs({"name": method} if isinstance(method, str) else method, tasks, seed)
        return runs

    def config(self, run: Run, output_dir: str | Path):
        """The training config of `run` (defaults <- suite config <- run's balancer and seed)."""
        common = [f"{k}={_value(v)}" for k, v in (self.spec.get("config") or {}).items()]
        wandb = self.spec.get("wandb") or {}
        tags = [run.label, f"seed{run.seed}", "+".join(run.tasks), run.kind]
        return load_config(None, [*common, f"tasks=[{','.join(run.tasks)}]", *run.overrides,
                                  f"train.seed={run.seed}", f"output_dir={output_dir}", "resume=true",
                                  f"wandb.group={self.name}", f"wandb.tags=[{','.join(repr(t) for t in tags)}]",
                                  *(f"wandb.{k}={_value(v)}" for k, v in wandb.items())])


def method_runs(method: dict, tasks: list[str], seed: int) -> list[Run]:
    """The run of a `methods` entry at `seed`, or with `tune` one run per grid point."""
    params = [f"balancer.params.{k}={_value(v)}" for k, v in (method.get("params") or {}).items()]
    extra = [f"{k}={_value(v)}" for k, v in (method.get("config") or {}).items()]
    overrides = [f"balancer.name={method['name']}", *params, *extra]
    grid = method.get("tune")
    if not grid:
        return [Run(method.get("label", method["name"]), "mtl", method["name"], tasks, seed, overrides)]
    row = method.get("label", f"{method['name']}-tuned")
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    budget = ", ".join(grid) + f" x{len(points)}"
    return [Run(f"{row}:{point_text(point)}", "tune", method["name"], tasks, seed,
                [*overrides, *(f"{k}={_value(v)}" for k, v in point.items())],
                tune={"row": row, "point": point_text(point), "budget": budget}) for point in points]


def point_text(point: dict[str, Any]) -> str:
    """"optim.lr=0.001,optim.weight_decay=0" of a grid point."""
    return ",".join(f"{k}={_value(v)}" for k, v in point.items())


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


def _value(v: Any) -> str:
    """A YAML value back as the text of a key=value override."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return "null" if v is None else str(v)
