"""Run a suite: every (run, seed) not yet finished, then the leaderboard and transfer report.

A run is finished when its `result.json` exists and parses (the contract in
`analysis/results.py`; it is written to a temporary file and renamed, so a kill never leaves a
half-written one); an unfinished run resumes from its `last.pt`, so a killed suite loses at most
the steps since the last checkpoint and never redoes a finished run.

With the suite's `test`, each finished run's selected checkpoint (`best.pt`, which training keeps
for the best `train.best_metric` on val, else `last.pt`) is evaluated once on the held-out split
(`engine/checkpoint_eval.py`, the code of `tools/evaluate.py`) and stored in result.json under
"test"; a run already evaluated on that split and limit is not evaluated again. Then its last.pt
and best.pt are deleted (the reports read result.json only), unless the suite says
`keep_checkpoints: true`.

The suite's `launcher:` (launch/settings.py) picks the backend that executes the runs: one after
another here, several at once as child processes, or submitit jobs (SLURM, or local processes);
every backend goes through `launch/job.py`'s `execute`, so run folders do not depend on it.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf

from perception_mtl.benchmark.launch.settings import (LauncherConfig, launcher_config, make_backend, on_this_machine,
                                                      run_threads)
from perception_mtl.benchmark.plan import planned_runs
from perception_mtl.benchmark.suite import Suite
from perception_mtl.core.config import ConfigError
from perception_mtl.data.build import val_loaders
from perception_mtl.data.files import DatasetError
from perception_mtl.data.world.generate import WorldSpec, generate


def ensure_world(suite: Suite) -> None:
    """Render the suite's driving world into `data.root` when the suite asks and it is absent; a
    world already there must be the one the suite describes."""
    spec = suite.spec.get("world")
    if not spec:
        return
    root = Path((suite.spec.get("config") or {}).get("data.root", "datasets/generated/world"))
    world = WorldSpec(**spec)
    if (root / "world.json").exists():
        found = WorldSpec(**json.loads((root / "world.json").read_text()))  # keys added since: their defaults
        if found != world:
            raise ConfigError(f"{root} holds a world rendered as {asdict(found)}, the suite's world: is "
                              f"{asdict(world)}; delete {root} to render the suite's, or point data.root elsewhere")
        return
    print(f"rendering the suite's world into {root} ...", flush=True)
    generate(root, world, workers=1 if world.train + world.val + world.test <= 200 else None, progress=True)


def check_test_split(suite: Suite) -> None:
    """Before any training: the suite's `test` split must exist under its data root."""
    if suite.test is None:
        return
    cfg = suite.config(suite.runs()[0], "/tmp/unused")
    try:
        val_loaders(cfg, suite.test["split"], limit=1)
    except DatasetError as err:
        root = cfg.data.root
        raise DatasetError(f"the suite's test split '{suite.test['split']}' is missing under {root} "
                           f"({str(err).splitlines()[0]}). Render a world with one: python tools/make_synthetic.py "
                           f"--out {root} --train 3000 --val 500 --test 500 (or give the suite's world: a test: "
                           "<frames> and delete the folder)") from err


class RunsFailed(RuntimeError):
    """Runs failed every attempt; the reports were written from the others and name them."""


def run_suite(suite: Suite, results_dir: Path | None = None, launch: list[str] | tuple[str, ...] = ()) -> Path:
    """Run what is unfinished (of each experiment, in <results_dir>/<experiment>, for a suite with
    `experiments`) through the suite's launcher (`launch`: launcher.<key>=<value> overrides over its
    `launcher:`), writing the leaderboard and the transfer report of each; then, where the suite
    states expectations, controls.md with their verdicts. Raises RunsFailed, after the reports, when
    runs failed every attempt."""
    launcher = launcher_config(suite.spec, launch)
    results_dir = Path(results_dir or suite.output_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(suite.path, results_dir / "suite.yaml")
    ensure_world(suite)
    experiments = [(e, results_dir / e.key) for e in suite.experiments()] or [(suite, results_dir)]
    os.environ.setdefault("WANDB_SILENT", "true")  # suite runs: no W&B banner per run (console capture is off)
    at_once = launcher.workers if on_this_machine(launcher) else f"up to {launcher.parallel or 'every'} SLURM job(s)"
    print(f"launcher: {launcher.backend}, {at_once} at once, {run_threads(launcher) or 'default'} threads each, "
          f"{launcher.retries} retries", flush=True)
    failed: list[str] = []
    for experiment, folder in experiments:
        if experiment is not suite:
            print(f"== experiment {experiment.key}: {folder}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.create(experiment.spec), folder / "suite.yaml")
        failed += [f"{experiment.key}: {name}" if experiment.key else name
                   for name in run_experiment(experiment, folder, launcher)]
    expected = [(e.key or e.name, folder, e.spec.get("description", ""), e.spec["expect"])
                for e, folder in experiments if e.spec.get("expect")]
    if expected:
        from perception_mtl.analysis.controls import write_controls

        write_controls(results_dir, expected)
    if failed:
        raise RunsFailed(f"{len(failed)} run(s) failed every attempt: {', '.join(failed)}; their errors and logs "
                         f"are in failed.json in their run folders, the reports name them; rerun the suite to retry them")
    return results_dir


def run_experiment(suite: Suite, results_dir: Path, launcher: LauncherConfig) -> list[str]:
    """Train and test what is unfinished of one suite (or experiment) through `launcher`'s backend,
    then write its leaderboard and transfer report (from the finished runs, naming the others);
    returns the runs that failed every attempt."""
    from perception_mtl.benchmark.launch.dispatch import dispatch, write_manifest
    from perception_mtl.benchmark.launch.job import Job

    check_test_split(suite)
    keep = suite.spec.get("keep_checkpoints", False)
    if not isinstance(keep, bool):
        raise ConfigError(f"{suite.path}: keep_checkpoints must be true or false, got {keep!r}")
    logs = results_dir / "launch"
    backend = make_backend(launcher, logs, suite.name)
    failed: list[Job] = []
    given_up: set[tuple[str, int]] = set()
    for round_ in itertools.count():  # a plan that depends on results (tuning or sequential seeds) grows
        runs = planned_runs(suite, results_dir)
        write_manifest(results_dir, runs)
        jobs = []
        for k, run in enumerate(runs, 1):
            job = Job(suite, run, results_dir, run_threads(launcher), keep)
            if job.finished():
                if not round_:
                    print(f"[{k}/{len(runs)}] {job.name}: done, skipped", flush=True)
            elif (run.label, run.seed) not in given_up:
                jobs.append((k, job))
        if not jobs:
            break
        workers = launcher.workers if on_this_machine(launcher) else (launcher.parallel or max(1, len(jobs)))
        failed += dispatch(jobs, len(runs), backend, workers, launcher.retries)
        given_up |= {(job.run.label, job.run.seed) for job in failed}
    from perception_mtl.analysis.leaderboard import write_leaderboard
    from perception_mtl.analysis.transfer import write_transfer_report

    if len(failed) == len(runs):
        return [job.name for job in failed]  # nothing to report on
    write_transfer_report(results_dir)  # first: leaderboard.html embeds it
    write_leaderboard(results_dir)
    return [job.name for job in failed]
