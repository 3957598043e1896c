"""Planted known answers: a suite's `expect` states what its results must show; `write_controls`
checks every statement and writes controls.md with PASS, FAIL or UNDECIDED and the p-values.

Every verdict needs evidence both ways: PASS when the data show the expected effect, FAIL when
they show the opposite, UNDECIDED when they show neither (too few seeds, too much noise). A lack
of evidence never passes. Expectations, each a one-key mapping in the list `expect`:

- `better_than_equal: [method, ...]`: the method's per-task Δm is below `equal`'s at the same
  seeds. One-sided paired t-tests on the per-seed differences (`paired.py`): PASS when "better"
  is shown, FAIL when "worse" is.
- `harms: {partner: [task, ...]}`: the task is worse when trained with the partner alone than
  alone (the pairwise runs of `pairs: true`; Welch's one-sided test, `transfer.py`). PASS when
  "worse" is shown, FAIL when "not worse by margin % or more" is shown (non-inferiority).
- `harmless: {partner: [task, ...]}`: the claim is "does not harm", so its test is non-inferiority
  (the upper half of TOST, Welch): PASS when the change is shown to lie below +margin % of the
  task's primary metric, better included; FAIL when "worse" is shown. TOST would also demand
  "does not help by more than margin", a claim no harmless control makes: a partner that helps a
  task by 3% would read UNDECIDED or FAIL under it.

One Holm family per claim type over the whole controls file: all `better_than_equal` tests
together, all `harms` tests, all `harmless` tests (each family's PASS tests and FAIL tests are
adjusted separately). The margin is the suite's `power.margin` (default 2, in %). A check whose
runs are missing, or that has fewer than two seeds, is n/a.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from perception_mtl.analysis.leaderboard import REFERENCE, build_rows
from perception_mtl.analysis.multiplicity import holm
from perception_mtl.analysis.paired import p_below_zero, paired_differences
from perception_mtl.analysis.reported import Reported, reported, split_words
from perception_mtl.analysis.transfer import ALPHA, transfer_tests
from perception_mtl.analysis.verdicts import suite_margin

EXPECTATIONS = ("better_than_equal", "harms", "harmless")


@dataclass(frozen=True)
class Test:
    """One expectation's raw evidence: p for the expected effect, p against it."""

    kind: str
    claim: str
    effect: str
    p_for: float
    p_against: float


@dataclass(frozen=True)
class Verdict:
    claim: str
    effect: str  # the measured difference, in words and numbers
    p: float  # for the expectation, raw
    p_holm: float  # for the expectation, Holm over its claim type
    p_against_holm: float  # against it, Holm over its claim type
    outcome: str  # "PASS" | "FAIL" | "UNDECIDED" | "n/a"


def welch_noninferior(changes: list[float], base: list[float], margin: float) -> float:
    """Non-inferiority p of H1: mean(changes) - mean(base) < margin (Welch's one-sided test);
    `changes`, `base`: per-seed % changes, + = worse. NaN for fewer than two of either."""
    if len(changes) < 2 or len(base) < 2:
        return math.nan
    return float(stats.ttest_ind([c - margin for c in changes], base, equal_var=False, alternative="less").pvalue)


def better_than_equal(rep: Reported, methods: list[str]) -> list[Test]:
    """Paired one-sided tests of each method's Δm against `equal`'s, both directions."""
    rows, _ = build_rows([r for r in rep.records if r["kind"] != "pair"], rep.chosen, rep.spec)
    scores = {row["run"]: row["delta_m_seeds"] for row in rows}
    reference = scores.get(REFERENCE, {})
    tests = []
    for method in methods:
        d = paired_differences(scores.get(method, {}), reference)
        effect = (f"Δm({method}) − Δm({REFERENCE}) = {statistics.fmean(d):+.2f} over {len(d)} seeds" if d
                  else "no paired seeds")
        tests.append(Test("better_than_equal", f"{method} beats {REFERENCE} (Δm, paired by seed)", effect,
                          p_below_zero(d), p_below_zero([-x for x in d])))
    return tests


def pairwise(rep: Reported, mapping: dict[str, list[str]], kind: str) -> list[Test]:
    """Each (partner, task) of `mapping` from the pairwise runs: `harms` or `harmless`."""
    _, pairs = transfer_tests(rep.records)
    margin, _ = suite_margin(rep.spec)
    tests = []
    for partner, tasks in mapping.items():
        for task in tasks:
            claim = f"{partner} {'harms' if kind == 'harms' else 'does not harm'} {task} (pairwise)"
            found = pairs.get((partner, task))
            if found is None or math.isnan(found["p"]):
                tests.append(Test(kind, claim, "pair runs missing or one seed", math.nan, math.nan))
                continue
            effect = f"{task} with {partner} vs alone: {found['change']:+.2f}% (+ = worse, {found['seeds']} seeds)"
            worse = found["p"]
            not_worse = welch_noninferior(found["changes"], found["base_changes"], margin)
            tests.append(Test(kind, claim, effect, *((worse, not_worse) if kind == "harms" else (not_worse, worse))))
    return tests


def decide(tests: list[Test]) -> list[Verdict]:
    """Holm per claim type over `tests` (in and against), then PASS / FAIL / UNDECIDED / n/a."""
    out: dict[int, Verdict] = {}
    for kind in EXPECTATIONS:
        members = [i for i, t in enumerate(tests) if t.kind == kind]
        q_for = holm([tests[i].p_for for i in members])
        q_against = holm([tests[i].p_against for i in members])
        for i, qf, qa in zip(members, q_for, q_against):
            t = tests[i]
            outcome = ("n/a" if math.isnan(qf) else "PASS" if qf < ALPHA else
                       "FAIL" if qa < ALPHA else "UNDECIDED")
            out[i] = Verdict(t.claim, t.effect, t.p_for, qf, qa, outcome)
    return [out[i] for i in range(len(tests))]


def gather(results_dir: Path, expect: list[dict]) -> tuple[Reported, list[Test]]:
    """The raw tests of every expectation of `expect` against the results in `results_dir`."""
    rep = reported(results_dir)
    tests = []
    for item in expect:
        (kind, value), = item.items()
        tests += better_than_equal(rep, value) if kind == "better_than_equal" else pairwise(rep, value, kind)
    return rep, tests


def check(results_dir: Path, expect: list[dict]) -> tuple[Reported, list[Verdict]]:
    """Every expectation of `expect` checked against the results in `results_dir` (its own families)."""
    rep, tests = gather(results_dir, expect)
    return rep, decide(tests)


def write_controls(out: Path, experiments: list[tuple[str, Path, str, list[dict]]]) -> Path:
    """controls.md in `out` from (experiment name, its results folder, its description, its
    expectations); returns the path. The Holm families span all experiments."""
    gathered = [(name, folder, description, *gather(folder, expect)) for name, folder, description, expect
                in experiments]
    verdicts = iter(decide([t for *_, tests in gathered for t in tests]))
    lines = ["# Controls: planted known answers", "",
             "Each experiment plants an effect whose answer is known in advance. A comparison that cannot recover "
             "these answers cannot be trusted on the methods' real differences. PASS: the data show the expected "
             "effect; FAIL: they show the opposite; UNDECIDED: neither (no pass for lack of evidence). Tests: "
             "`better_than_equal`, one-sided paired t-tests on per-seed Δm differences; `harms`, Welch's one-sided "
             "test of the pairwise run against the single-task runs (FAIL when shown less than the margin worse); "
             "`harmless`, non-inferiority (Welch's one-sided test that the change lies below +margin, better "
             "included; FAIL when shown worse). One Holm family "
             f"per claim type over this whole file. α = {ALPHA}. n/a: runs missing or fewer than 2 seeds.", ""]
    counts = {"PASS": 0, "FAIL": 0, "UNDECIDED": 0, "n/a": 0}
    for name, folder, description, rep, tests in gathered:
        margin, stated = suite_margin(rep.spec)
        lines += [f"## {name}", "", *([description, ""] if description else []),
                  f"Results in `{folder.name}/` ({split_words(rep.split)}); margin ±{margin:g}% "
                  f"({'stated' if stated else 'default'}).", "",
                  "| expectation | measured | p (raw) | p for (Holm) | p against (Holm) | verdict |",
                  "|---|---|---|---|---|---|"]
        for _ in tests:
            v = next(verdicts)
            counts[v.outcome] += 1
            lines.append(f"| {v.claim} | {v.effect} | {v.p:.3g} | {v.p_holm:.3g} | {v.p_against_holm:.3g} | "
                         f"**{v.outcome}** |")
        lines.append("")
    total = sum(counts.values())
    lines.insert(2, f"**{counts['PASS']} of {total} expectations pass, {counts['FAIL']} fail, "
                    f"{counts['UNDECIDED']} undecided.**\n")
    path = out / "controls.md"
    path.write_text("\n".join(lines) + "\n")
    return path
