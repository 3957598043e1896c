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
    expect: [{better_than_equal: [uncertainty]}, {harms: {noise: [seg]}}, {harmless: {edges: [seg]}}]
                 # optional: known answers the results must show; checked into controls.md (analysis/controls.py)
    seeds: {min: 3, max: 10, margin: 2}  # instead of a list: sequential seeds 0, 1, ... (analysis/sequential.py);
                 # every method runs `min`, and one more seed at a time while it is undecided against `equal`
    tune: {optim.lr: [0.001, 0.002, 0.004]}  # the same grid for every method without its own `tune`: the
                 # row keeps its label, its grid runs at the first `tune_seeds` seeds (default: all), and the
                 # point kept on val runs at every further seed (benchmark/plan.py)
    tune_seeds: 1
    power: {margin: 2}  # the Δm difference the power statement sizes the seeds for, and the TOST margin

Several experiments in one file (the `controls` suite): `experiments` maps a name to the keys
that make that experiment differ (tasks, methods, baselines, pairs, seeds, sweep, delta_metrics,
test, expect, description, and `config`, merged key by key over the suite's). Every other key
(world, config, seeds, test, wandb, ...) is shared. Each experiment is a suite of its own named
"<suite>-<experiment>", with its runs, leaderboard and transfer report in
<output_dir>/<experiment>/; controls.md in <output_dir> collects the verdicts of every `expect`.

    name: controls
    world: {...}
    config: {...}
    seeds: [0, 1, 2]
    experiments:
      scale: {tasks: [seg, depth], config: {train.loss_scale: {depth: 100}}, methods: [equal, imtl_g],
              expect: [{better_than_equal: [imtl_g]}]}
      distractor: {tasks: [seg, depth, noise], pairs: true, methods: [equal],
                   expect: [{harms: {noise: [seg, depth]}}]}
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from perception_mtl.benchmark.suite_checks import (EXPERIMENT_KEYS, KEYS, check_expect, check_keys, check_methods,
                                                   check_runs, check_test, check_types, check_world, method_label)
from perception_mtl.core.config import ConfigError
from perception_mtl.engine.builders import load_config


@dataclass
class Run:
    """One training run of the suite: a balancer (or a single task) and a seed."""

    label: str  # "equal", "pcgrad-rep", "stl-det"
    kind: str  # "mtl", "stl", "pair" or "tune" (a grid point of a method with `tune`)
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
    key: str = ""  # an experiment's key in its suite's `experiments` ("" for a suite)

    @classmethod
    def load(cls, path: str | Path) -> "Suite":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no suite file {path}; suites: {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
        try:
            spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except Exception as err:  # noqa: BLE001 (yaml's reader, scanner, parser errors; OmegaConf's on interpolations)
            raise ConfigError(f"{path} is not a YAML suite: {' '.join(str(err).split())}") from err
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{path}: a suite is a mapping with a 'name'; see perception_mtl/benchmark/suite.py")
        check_keys(path, spec, KEYS, "the suite")
        check_types(path, spec, "the suite")
        check_world(path, spec.get("world"))
        suite = cls(spec["name"], path, spec)
        suite.validate()
        return suite

    def validate(self) -> None:
        """Check the suite (or each of its experiments) and every run's config before any work."""
        experiments = self.experiments()
        for experiment in experiments:
            experiment.validate()
        if experiments:
            return
        check_runs(self.path, self.spec, f"experiment '{self.key}'" if self.key else "the suite")
        check_methods(self.path, self.spec["methods"])
        check_test(self.path, self.spec.get("test"))
        check_expect(self.path, self.spec.get("expect"), self.spec)
        for run in self.runs():
            self.config(run, "/tmp/unused")

    def experiments(self) -> list["Suite"]:
        """The experiments of a suite with `experiments`, each a suite of its own (its keys over the
        suite's, `config` merged key by key, results in <output_dir>/<experiment>); [] otherwise."""
        out = []
        for key, own in (self.spec.get("experiments") or {}).items():
            if not isinstance(own, dict):
                raise ConfigError(f"{self.path}: experiment '{key}' must be a mapping of suite keys")
            check_keys(self.path, own, EXPERIMENT_KEYS, f"experiment '{key}'")
            shared = {k: v for k, v in self.spec.items() if k not in ("experiments", "description", "expect")}
            spec = {**shared, **own, "name": f"{self.name}-{key}", "output_dir": str(self.output_dir / key),
                    "config": {**(self.spec.get("config") or {}), **(own.get("config") or {})}}
            out.append(Suite(spec["name"], self.path, spec, key))
        return out

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.get("output_dir", f"runs/benchmark/{self.name}"))

    @property
    def test(self) -> dict | None:
        """{"split": ..., "limit": ...} of the held-out evaluation, or None without `test`."""
        test = self.spec.get("test")
        return None if test is None else {"split": test.get("split", "test"), "limit": test.get("limit")}

    @property
    def seeds(self) -> list[int]:
        """Every seed a run may get: the list, or 0 .. max - 1 of a sequential plan."""
        seeds = self.spec["seeds"]
        return list(range(seeds["max"])) if isinstance(seeds, dict) else list(seeds)

    def runs(self) -> list[Run]:
        """Every run a suite may train (all seeds of a sequential plan, every grid point at every seed;
        `plan.py` picks those it needs); with a `sweep`, every run at each swept value."""
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
        for seed in self.seeds:
            if self.spec.get("baselines", True):
                runs += [Run(f"stl-{t}", "stl", "equal", [t], seed) for t in tasks]
            if self.spec.get("pairs"):
                runs += [Run(f"pair-{a}+{b}", "pair", "equal", [a, b], seed, ["balancer.name=equal"])
                         for a, b in itertools.combinations(tasks, 2)]
            for method in self.spec["methods"]:
                runs += method_runs({"name": method} if isinstance(method, str) else method, tasks, seed,
                                    self.spec.get("tune"))
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


def method_runs(method: dict, tasks: list[str], seed: int, suite_grid: dict | None = None) -> list[Run]:
    """The run of a `methods` entry at `seed`, or with `tune` (its own, else the suite's grid) one
    run per grid point."""
    params = [f"balancer.params.{k}={_value(v)}" for k, v in (method.get("params") or {}).items()]
    extra = [f"{k}={_value(v)}" for k, v in (method.get("config") or {}).items()]
    overrides = [f"balancer.name={method['name']}", *params, *extra]
    grid, row = method.get("tune") or suite_grid, method_label(method)
    if not grid:
        return [Run(row, "mtl", method["name"], tasks, seed, overrides)]
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    budget = ", ".join(grid) + f" x{len(points)}"
    return [Run(f"{row}:{point_text(point)}", "tune", method["name"], tasks, seed,
                [*overrides, *(f"{k}={_value(v)}" for k, v in point.items())],
                tune={"row": row, "point": point_text(point), "budget": budget}) for point in points]


def point_text(point: dict[str, Any]) -> str:
    """"optim.lr=0.001,optim.weight_decay=0" of a grid point."""
    return ",".join(f"{k}={_value(v)}" for k, v in point.items())


def _value(v: Any) -> str:
    """A YAML value back as the text of a key=value override."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return "null" if v is None else str(v)
