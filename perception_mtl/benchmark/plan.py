"""Which of a suite's possible runs to train now, given the results so far.

A plain suite wants every run of `Suite.runs()`. Two keys make the plan depend on results:

- `tune_seeds: k` with a tuning grid (the suite's `tune`, or a method's own): every grid point runs
  at the first k seeds only; once they have all finished, the point kept on val
  (`analysis/tuning.py`) runs at the other seeds the row needs.
- `seeds: {min, max, margin}`: every row runs `min` seeds; then, each time all its runs have
  finished, a method still undecided against `equal` (`analysis/sequential.py`) gets one more
  seed, up to `max`. `equal` and the single-task baselines run at every seed any method reaches.

The runner asks again after each round (`runner.run_experiment`) until the plan stops growing.
"""
from __future__ import annotations

from pathlib import Path

from perception_mtl.analysis.leaderboard import REFERENCE, build_rows
from perception_mtl.analysis.reported import Reported, reported
from perception_mtl.analysis.sequential import SeedPlan
from perception_mtl.analysis.verdicts import duplicates, reference_differences
from perception_mtl.benchmark.record import read_record
from perception_mtl.benchmark.suite import Run, Suite


def row_of(run: Run) -> str:
    """The leaderboard row a run belongs to."""
    return run.tune["row"] if run.tune else run.label


def planned_runs(suite: Suite, results_dir: Path) -> list[Run]:
    """The runs the suite wants now, in `Suite.runs()` order."""
    runs = suite.runs()
    plan = SeedPlan.parse(suite.spec["seeds"])
    seeds = suite.seeds
    tune_seeds = set(seeds[:suite.spec.get("tune_seeds") or len(seeds)])
    done = {(r.label, r.seed) for r in runs if read_record(results_dir / r.folder) is not None}
    rep = reported(results_dir) if done else None  # read once per round, for both questions
    kept = kept_points(suite, rep, runs, tune_seeds, done)
    count = seed_counts(suite, rep, runs, plan) if plan else {}
    wanted = []
    for run in runs:
        row = row_of(run)
        if seeds.index(run.seed) >= count.get(row, count.get("*", len(seeds))):
            continue
        if run.tune and run.seed not in tune_seeds and kept.get(row) != run.tune["point"]:
            continue  # a grid point beyond the tuning seeds: only the kept one
        if run.tune and len(tune_seeds) < len(seeds):
            run.tune["budget"] = f"{run.tune['budget']} at {len(tune_seeds)} seed(s)"
        wanted.append(run)
    return wanted


def kept_points(suite: Suite, rep: Reported | None, runs: list[Run], tune_seeds: set[int],
                done: set[tuple[str, int]]) -> dict[str, str]:
    """{tuned row: the grid point kept on val} of the rows whose tuning runs have all finished."""
    rows = {row_of(r) for r in runs if r.tune}
    finished = {row for row in rows if all((r.label, r.seed) in done for r in runs
                                           if r.tune and row_of(r) == row and r.seed in tune_seeds)}
    if not finished or rep is None or len(tune_seeds) == len(suite.seeds):
        return {}
    # the reported records have each tuned group already reduced to its kept point
    return {r["run"]: r["chosen"] for r in rep.records if r["run"] in finished and r.get("chosen")}


def seed_counts(suite: Suite, rep: Reported | None, runs: list[Run], plan: SeedPlan) -> dict[str, int]:
    """{row: seeds it should have}, "*" for the reference and baselines (the most any method needs)."""
    rows = list(dict.fromkeys(row_of(r) for r in runs if r.kind in ("mtl", "tune")))
    count = {row: plan.first for row in rows}
    if rep and rep.records:
        built, _ = build_rows([r for r in rep.records if r["kind"] != "pair"], rep.chosen, suite.spec)
        reference = next((r for r in built if r["run"] == REFERENCE and r["delta_m_seeds"]), None)
        same = duplicates([r for r in built if r["kind"] == "mtl"], rep.records)
        differences = reference_differences(built, reference, set(same))
        for row, n in plan.wanted(differences).items():
            count[row] = max(count[row], n)
    count["*"] = max(count.values(), default=plan.first)
    count[REFERENCE] = count["*"]
    return count
