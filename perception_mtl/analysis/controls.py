"""Planted known answers: a suite's `expect` states what its results must show; `write_controls`
checks every statement and writes controls.md with PASS, FAIL or n/a and the p-values.

Expectations, each a one-key mapping in the list `expect` of a suite or of one of its experiments:

- `better_than_equal: [method, ...]`: each method's per-task Δm is below that of the run `equal` at
  the same seeds. One-sided paired t-test on the per-seed differences (H1: mean < 0; `paired.py`),
  Holm over the methods of the list. PASS when the Holm-adjusted p < 0.05.
- `harms: {partner: [task, ...]}`: the transfer report flags the task as worse when trained with the
  partner alone than alone (the pairwise matrix, so the experiment needs `pairs: true`; Welch's
  one-sided test, Holm over every test of that report, `transfer.py`). PASS when flagged.
- `harmless: {partner: [task, ...]}`: the report does not flag it. PASS when not flagged; with few
  seeds an unflagged pair is weak evidence (a `harms` control shows whether the suite can flag at
  all), so the p-values are shown.

A check whose runs are missing, or that has fewer than two seeds, is n/a: it neither passes nor fails.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from perception_mtl.analysis.leaderboard import REFERENCE, build_rows
from perception_mtl.analysis.multiplicity import holm
from perception_mtl.analysis.paired import p_below_zero, paired_differences
from perception_mtl.analysis.reported import Reported, reported, split_words
from perception_mtl.analysis.transfer import ALPHA, transfer_tests

EXPECTATIONS = ("better_than_equal", "harms", "harmless")


@dataclass(frozen=True)
class Verdict:
    claim: str
    effect: str  # the measured difference, in words and numbers
    p: float
    p_holm: float
    outcome: str  # "PASS" | "FAIL" | "n/a"


def better_than_equal(rep: Reported, methods: list[str]) -> list[Verdict]:
    """The paired one-sided tests of each method's Δm against `equal`'s, Holm over `methods`."""
    rows, _ = build_rows([r for r in rep.records if r["kind"] != "pair"], rep.chosen)
    scores = {row["run"]: row["delta_m_seeds"] for row in rows}
    reference = scores.get(REFERENCE, {})
    diffs = {m: paired_differences(scores.get(m, {}), reference) for m in methods}
    adjusted = holm([p_below_zero(d) for d in diffs.values()])
    verdicts = []
    for (method, d), q in zip(diffs.items(), adjusted):
        effect = (f"Δm({method}) − Δm({REFERENCE}) = {statistics.fmean(d):+.2f} over {len(d)} seeds" if d
                  else "no paired seeds")
        outcome = "n/a" if math.isnan(q) else "PASS" if q < ALPHA else "FAIL"
        verdicts.append(Verdict(f"{method} beats {REFERENCE} (Δm, paired by seed)", effect, p_below_zero(d), q,
                                outcome))
    return verdicts


def pairwise(rep: Reported, mapping: dict[str, list[str]], harmful: bool) -> list[Verdict]:
    """Whether the transfer report flags each (partner, task) of `mapping` (`harmful`) or not."""
    _, pairs = transfer_tests(rep.records)
    verdicts = []
    for partner, tasks in mapping.items():
        for task in tasks:
            claim = f"{partner} {'harms' if harmful else 'does not harm'} {task} (pairwise, flagged after Holm)"
            found = pairs.get((partner, task))
            if found is None or math.isnan(found["p"]):
                verdicts.append(Verdict(claim, "pair runs missing or one seed", math.nan, math.nan, "n/a"))
                continue
            effect = f"{task} with {partner} vs alone: {found['change']:+.2f}% (+ = worse, {found['seeds']} seeds)"
            passed = found["negative"] == harmful
            verdicts.append(Verdict(claim, effect, found["p"], found["p_holm"], "PASS" if passed else "FAIL"))
    return verdicts


def check(results_dir: Path, expect: list[dict]) -> tuple[Reported, list[Verdict]]:
    """Every expectation of `expect` checked against the results in `results_dir`."""
    rep = reported(results_dir)
    verdicts = []
    for item in expect:
        (kind, value), = item.items()
        verdicts += better_than_equal(rep, value) if kind == "better_than_equal" else \
            pairwise(rep, value, harmful=kind == "harms")
    return rep, verdicts


def write_controls(out: Path, experiments: list[tuple[str, Path, str, list[dict]]]) -> Path:
    """controls.md in `out` from (experiment name, its results folder, its description, its
    expectations); returns the path."""
    lines = ["# Controls: planted known answers", "",
             "Each experiment plants an effect whose answer is known in advance. A comparison that cannot recover "
             "these answers cannot be trusted on the methods' real differences. Tests: `better_than_equal` is a "
             "one-sided paired t-test on per-seed Δm differences, Holm over the methods it lists; `harms` / "
             "`harmless` read the flags of the experiment's transfer report (Welch, Holm over all of that report's "
             f"tests). α = {ALPHA}. n/a: runs missing or fewer than 2 seeds.", ""]
    passed = total = 0
    for name, folder, description, expect in experiments:
        rep, verdicts = check(folder, expect)
        lines += [f"## {name}", "", *([description, ""] if description else []),
                  f"Results in `{folder.name}/` ({split_words(rep.split)}).", "",
                  "| expectation | measured | p (raw) | p (Holm) | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {v.claim} | {v.effect} | {v.p:.3g} | {v.p_holm:.3g} | **{v.outcome}** |" for v in verdicts]
        lines.append("")
        passed += sum(v.outcome == "PASS" for v in verdicts)
        total += len(verdicts)
    lines.insert(2, f"**{passed} of {total} expectations pass.**\n")
    path = out / "controls.md"
    path.write_text("\n".join(lines) + "\n")
    return path
