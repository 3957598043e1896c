"""The leaderboard of a benchmark results folder: leaderboard.{md,csv,html}, pareto.png,
delta_m.png and a W&B Table.

One row per multi-task run label, then the single-task baselines as reference rows. Each
delta-m metric is mean ± std over seeds (std with ddof=1, blank for one seed). Delta-m (both
conventions, see `delta_m.py`) is computed per seed against the mean over seeds of the
single-task runs, then averaged over seeds. Each row's per-task Δm is compared with the run
labelled `equal` seed by seed (`paired.py`: mean difference and paired-t 95% interval), and rows
are ranked by per-task Δm with ties (`ranking.py`), with the spread of per-seed ranks and
Kendall's W between the seeds' rankings. Each row also gets its verdict against the reference
(better, worse, equivalent within the suite's margin, or undecided: `verdicts.py`), its count of
collapsed seeds (`collapse.py`) and the share of steps where the gradient clip bound; the notes
carry the power statement (`power.py`) and, where runs kept per-frame detection matches, the
frame-bootstrap noise of det mAP50 (`frame_bootstrap.py`); per_seed.csv holds the per-seed data (`per_seed.py`).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from perception_mtl.analysis.collapse import collapse_counts
from perception_mtl.analysis.delta_m import (baselines, delta_m_flat, delta_m_per_task, metric_changes,
                                             task_changes)
from perception_mtl.analysis.label_efficiency import plot_label_efficiency
from perception_mtl.analysis.missing import missing_notes
from perception_mtl.analysis.paired import mean_interval, paired_differences
from perception_mtl.analysis.frame_bootstrap import noise_lines
from perception_mtl.analysis.per_seed import write_per_seed
from perception_mtl.analysis.power import power_statement
from perception_mtl.analysis.ranking import concordance, seed_ranks, tied_ranks
from perception_mtl.analysis.render import (numeric_table, plot_delta_m, plot_pareto, transfer_html, write_csv,
                                            write_html, write_markdown)
from perception_mtl.analysis.reported import reported, split_words
from perception_mtl.analysis.tuning import UNTUNED
from perception_mtl.analysis.verdicts import (duplicates, reference_differences, suite_margin, verdict_text,
                                              verdicts)
from perception_mtl.balancing import BALANCERS, balancer_variant
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.tracking.wandb_table import log_wandb_table

Stat = tuple[float, float]  # (mean, std) over seeds; NaN where undefined
MAKE_RESULTS = "python tools/benchmark.py --suite configs/benchmark/smoke.yaml"
REFERENCE = "equal"  # the run label every row is compared with, seed by seed


def stats(values: list[float]) -> Stat:
    """Mean and sample std (ddof=1) of the finite values; std is NaN for fewer than 2."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def metric_keys(chosen: dict[str, list[str]], tasks: list[str] | None = None) -> list[str]:
    """["<task>/<metric>", ...] of the delta-m metrics, optionally only of `tasks`."""
    return [f"{t}/{m}" for t, names in chosen.items() if tasks is None or t in tasks for m in names]


def baseline_notes(records: list[dict], base: dict[str, float], chosen: dict[str, list[str]]) -> list[str]:
    """Why delta-m stays empty: tasks of multi-task runs whose baselines are missing or zero."""
    tasks = dict.fromkeys(t for r in records if r["kind"] == "mtl" for t in r["tasks"] if t in chosen)
    notes = []
    for task in tasks:
        keys = metric_keys(chosen, [task])
        missing, zero = [k for k in keys if k not in base], [k for k in keys if base.get(k) == 0]
        if len(missing) == len(keys):
            notes.append(f"no single-task baseline for {task}: run stl-{task} (`baselines: true` in the suite); "
                         f"delta-m is left empty for the runs with {task}")
        elif missing:
            notes.append(f"the stl-{task} results lack {', '.join(missing)}; delta-m is left empty for the "
                         f"runs with {task}")
        if zero:
            notes.append(f"stl-{task} scores 0 on {', '.join(zero)}, so the relative change is undefined; delta-m "
                         f"is left empty for the runs with {task} (train longer or drop it from delta_metrics)")
    return notes


def variant(record: dict) -> str:
    """How the run's balancer departs from its paper (`balancing.balancer_variant`): "as published",
    a short label, or "unrecorded" for results written before the runner stored the balancer."""
    balancer = record.get("balancer")
    if balancer is None:
        return "unrecorded"
    if balancer["name"] not in BALANCERS:
        return f"{balancer['name']} is no longer registered"
    return balancer_variant(balancer["name"], balancer["params"]) or "as published"


def build_row(runs: list[dict], base: dict[str, float], chosen: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """The row of one run label (all its seeds) and the notes on what it lacks; `base` holds the
    usable (non-zero) baselines."""
    first, notes = runs[0], []
    keys = metric_keys(chosen, first["tasks"])
    row = {"run": first["run"], "kind": first["kind"], "tasks": first["tasks"], "seeds": len(runs), "rank": None,
           "metrics": {k: stats([r["metrics"].get(k, math.nan) for r in runs]) for k in metric_keys(chosen)},
           "params": statistics.fmean(r["params"] for r in runs),
           "train_time_s": stats([r["train_time_s"] for r in runs]),
           "latency_ms": stats([r["latency_ms"] for r in runs]),
           "delta_m_per_task": (math.nan, math.nan), "delta_m_flat": (math.nan, math.nan), "task_change": {},
           "tuned": first["tuned"], "chosen": first.get("chosen", ""),
           "variant": variant(first) if first["kind"] == "mtl" else "",
           "delta_m_seeds": {}, "reference": False, "vs_reference": None, "seed_ranks": (), "concordance": None,
           "verdict": "", "same_as": "", "collapses": {},
           "clipped": stats([r["clipped_steps"] / r["steps"] * 100 if r.get("clipped_steps") is not None
                             and r["steps"] else math.nan for r in runs])}
    if first["kind"] != "mtl":
        return row, notes
    lacking = [k for k in keys if any(k not in r["metrics"] for r in runs)]
    if lacking:
        notes.append(f"{first['run']}: {', '.join(lacking)} missing from its results; its delta-m is left empty")
    usable = [k for k in keys if k in base and k not in lacking]
    changes = [metric_changes(r["metrics"], base, r["directions"], usable) for r in runs]
    if keys and len(usable) == len(keys):
        row["delta_m_seeds"] = {r["seed"]: delta_m_per_task(c) for r, c in zip(runs, changes)}
        row["delta_m_per_task"] = stats(list(row["delta_m_seeds"].values()))
        row["delta_m_flat"] = stats([delta_m_flat(c) for c in changes])
    per_seed = [task_changes(c) for c in changes]
    complete = [t for t in first["tasks"] if chosen.get(t) and all(k in usable for k in metric_keys(chosen, [t]))]
    row["task_change"] = {t: stats([tc[t] for tc in per_seed]) for t in complete}
    return row, notes


def aux_metrics(records: list[dict], chosen: dict[str, list[str]]) -> dict[str, list[str]]:
    """{aux task: [metric, ...]} of the auxiliary tasks not already chosen: shown as columns, never
    in delta-m (a run's delta-m uses only its `tasks`, which exclude its `aux_tasks`)."""
    shown: dict[str, list[str]] = {}
    for record in records:
        for key in record["metrics"]:
            k = MetricKey.parse(key)
            task, name = k.task, k.qualified_metric
            if task in record.get("aux_tasks", ()) and task not in chosen and name not in shown.setdefault(task, []):
                shown[task].append(name)
    return shown


def sweep_value(record: dict):
    """The swept setting's value of a record (None outside a sweep)."""
    return (record.get("sweep") or {}).get("value")


def build_rows(records: list[dict], chosen: dict[str, list[str]], spec: dict | None = None
               ) -> tuple[list[dict], list[str]]:
    """Per swept value (one group without a sweep): its ranked multi-task rows, then its
    single-task reference rows; delta-m against the baselines of the same value. `spec` (the
    suite) gives the verdicts their margin and seed plan."""
    rows, notes = [], []
    for value in dict.fromkeys(sweep_value(r) for r in records):
        group_rows, group_notes = build_group_rows([r for r in records if sweep_value(r) == value], chosen,
                                                   spec or {})
        rows += group_rows
        notes += group_notes if value is None else [f"at {value}: {note}" for note in group_notes]
    return rows, notes


def build_group_rows(records: list[dict], chosen: dict[str, list[str]], spec: dict
                     ) -> tuple[list[dict], list[str]]:
    """Ranked multi-task rows then single-task reference rows, and the notes on empty delta-m."""
    base = baselines(records)
    notes = baseline_notes(records, base, chosen)
    usable = {k: v for k, v in base.items() if v}
    rows = []
    for label in dict.fromkeys(r["run"] for r in records):
        row, row_notes = build_row([r for r in records if r["run"] == label], usable, chosen)
        rows.append(row)
        notes += row_notes
    counts = collapse_counts(records, usable)
    for row in rows:
        row["collapses"] = counts.get(row["run"], {})
    mtl = [r for r in rows if r["kind"] == "mtl"]
    notes += compare(mtl, duplicates(mtl, records), spec)
    ranked = sorted(mtl, key=lambda r: (r["rank"] is None, r["rank"] or 0, r["delta_m_per_task"][0]))
    order = list(chosen)
    stl = sorted((r for r in rows if r["kind"] != "mtl"),
                 key=lambda r: (order.index(r["tasks"][0]) if r["tasks"][0] in order else len(order), r["run"]))
    return ranked + stl, notes


def is_reference(label: str) -> bool:
    """Whether a run label is the reference (`equal`, or `equal@<value>` in a sweep)."""
    return label.rsplit("@", 1)[0] == REFERENCE


def compare(rows: list[dict], same: dict[str, str] | None = None, spec: dict | None = None) -> list[str]:
    """Fill each multi-task row's rank (ties), its paired difference to the reference run, its
    verdict, its per-seed ranks and the group's rank concordance; rows in `same` (label -> the
    earlier row of the same configuration) share that row's rank and enter no test. Returns the
    notes: power statement, duplicates, and what stays undefined."""
    same, spec = same or {}, spec or {}
    scores = {r["run"]: r["delta_m_seeds"] for r in rows if r["delta_m_seeds"] and r["run"] not in same}
    ranks, per_seed, agreement = tied_ranks(scores), seed_ranks(scores), concordance(scores)
    reference = next((r for r in rows if is_reference(r["run"]) and r["delta_m_seeds"]), None)
    differences = reference_differences(rows, reference, set(same))
    margin, stated = suite_margin(spec)
    decided = verdicts(differences, spec)
    for row in rows:
        row["same_as"] = same.get(row["run"], "")
        row["rank"] = ranks.get(same.get(row["run"], row["run"]))
        row["verdict"] = verdict_text(decided.get(row["run"]), margin)
        row["seed_ranks"] = tuple(per_seed.get(row["run"], {}).values())
        row["concordance"] = agreement if row["run"] in scores else None
        row["reference"] = row is reference
        if reference is not None and row["run"] in scores and row is not reference:
            row["vs_reference"] = mean_interval(paired_differences(row["delta_m_seeds"], reference["delta_m_seeds"]))
    notes = [f"{label} is the same configuration as {first} (one config digest at every seed): it shares its "
             "rank and enters no test, power pool or rank concordance" for label, first in same.items()]
    if differences:
        power = power_statement(differences, (spec.get("power") or {}).get("margin"))
        notes += power.lines()
        notes.append(f"verdicts against {REFERENCE}: better/worse by a two-sided paired t-test, equivalent by TOST "
                     f"within ±{margin:g} Δm points ({'the suite' if stated else 'default'} margin), each a Holm family "
                     "over the methods (sequential suites: the per-look level of their seed rule); undecided otherwise")
        if power.underpowered:
            notes.insert(0, f"UNDERPOWERED: this suite cannot detect a Δm difference of {power.margin:g} with Holm "
                            f"at its {power.seeds} seeds; read its ranks and verdicts as a demo")
    if scores and reference is None:
        notes.append(f"no run labelled '{REFERENCE}' with a delta-m: the Δm − {REFERENCE} column stays empty")
    if scores and max(len(s) for s in scores.values()) < 2:
        notes.append("one seed: no paired interval is defined, so no two methods are told apart (all share rank 1)")
    if agreement is None and len(scores) > 1:
        notes.append("rank stability across seeds is undefined: it needs 3+ ranked methods and 2+ seeds that all ran")
    elif agreement is not None:
        notes.append(f"rank stability: Kendall's W = {agreement.w:.2f} between the {agreement.seeds} seeds' rankings "
                     f"of {agreement.methods} methods (1 = every seed ranks them alike, 0 = no agreement; "
                     f"Friedman p = {agreement.p:.3g})")
    return notes


def leaderboard_notes(results_dir: Path, notes: list[str], records: list[dict], rows: list[dict],
                      aux: list[str]) -> list[str]:
    """The notes under the table: missing runs first, then `notes` (the results' and the rows'),
    the tuning budget, the frame-bootstrap noise split and the auxiliary tasks."""
    notes = missing_notes(results_dir) + notes
    if {r["tuned"] == UNTUNED for r in rows} == {True, False}:
        notes.append("only rows marked in the tuned column had a hyperparameter search (on val, budget shown); "
                     "the others ran with the suite's settings as given")
    notes += noise_lines(records, next((r["run"] for r in rows if r.get("reference")), None))
    if aux:
        notes.append(f"auxiliary tasks ({', '.join(aux)}): their columns are reported, never part of delta-m")
    return notes


def draw_plots(rows: list[dict], records: list[dict], chosen: dict, out: Path) -> dict[str, Path]:
    """pareto.png, delta_m.png and label_efficiency.png in `out`; a plot with nothing to draw is
    removed (a stale one of an earlier call must not survive). Returns {name: path}."""
    plots = {"pareto": lambda path: plot_pareto(rows, path), "delta_m": lambda path: plot_delta_m(rows, path),
             "label_efficiency": lambda path: plot_label_efficiency(records, chosen, path)}
    paths = {}
    for name, plot in plots.items():
        paths[name] = out / f"{name}.png"
        if not plot(paths[name]):
            paths[name].unlink(missing_ok=True)
    return paths


def write_leaderboard(results_dir: str | Path, wandb_mode: str | None = None) -> dict[str, Path]:
    """Write leaderboard.{md,csv,html}, pareto.png and delta_m.png into `results_dir` (the page
    embeds transfer_report.md and its figures when the folder has them), log the
    W&B Table (`tracking/wandb_table.py`; mode: `wandb_mode`, else WANDB_MODE, else the suite's, else
    `tracking.wandb.resolve_mode`'s default), and return
    {"md", "csv", "html", "pareto", "delta_m", "label_efficiency"} -> path of the files written (a plot with nothing
    to draw is left out).

    Raises FileNotFoundError when there are no results, ResultsError naming a corrupt file.
    """
    results_dir = Path(results_dir)
    rep = reported(results_dir)
    if not rep.records:
        raise FileNotFoundError(f"no runs/*/seed*/result.json under {results_dir}; make them with {MAKE_RESULTS}")
    records = [r for r in rep.records if r["kind"] != "pair"]  # task-pair runs feed the transfer report only
    spec, split = rep.spec, rep.split
    aux = aux_metrics(records, rep.chosen)
    chosen = {**rep.chosen, **aux}
    rows, notes = build_rows(records, chosen, spec)
    notes = leaderboard_notes(results_dir, rep.notes + notes, records, rows, list(aux))
    keys = metric_keys(chosen)
    directions = {k: up for r in records for k, up in r["directions"].items()}
    paths = {name: results_dir / f"leaderboard.{name}" for name in ("md", "csv", "html")}
    plots = draw_plots(rows, records, chosen, results_dir)
    paths.update(plots)
    drawn = [path for path in plots.values() if path.exists()]
    title = f"perception_mtl leaderboard: {spec.get('name', results_dir.name)} ({split_words(split)})"
    write_markdown(rows, keys, directions, notes, title, drawn, paths["md"])
    columns, data = numeric_table(rows, keys)
    write_csv(columns, data, paths["csv"])
    paths["per_seed"] = write_per_seed(records, rows, results_dir / "per_seed.csv")
    write_html(rows, keys, directions, notes, title, drawn, paths["html"],
               transfer_html(results_dir / "transfer_report.md"))
    log_wandb_table(results_dir, columns, data, spec, wandb_mode)
    return {name: path for name, path in paths.items() if path.exists()}
