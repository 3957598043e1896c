"""Each method's verdict against the reference run, and which rows are one configuration.

Verdicts read Δm(method) − Δm(reference) seed by seed (`paired.py`) and say one of:

- **better** / **worse**: the two-sided paired t-test rejects "no difference";
- **equivalent**: TOST shows the mean difference inside ±margin;
- **undecided**: neither. Absence of evidence is never read as a tie or as a pass.

Families, one per claim type: the difference tests of all methods against the reference are one
Holm family, the equivalence tests another. In a suite with sequential seeds
(`seeds: {min, max, margin}`, `sequential.py`) both use the rule's per-look level instead, which
already controls the family-wise error over methods and looks.

Rows whose runs share one configuration digest (result.json's `config_digest`: the config without
output, logging and seed) at every seed are one configuration: the later row names the first
(e.g. a tuned row that kept the reference's own learning rate), and it enters no family, no power
pool and no rank concordance.
"""
from __future__ import annotations

import math

from perception_mtl.analysis.multiplicity import holm
from perception_mtl.analysis.paired import equivalence_p, p_two_sided, paired_differences
from perception_mtl.analysis.sequential import ALPHA, SeedPlan, Verdict, verdict

DEFAULT_MARGIN = 2.0  # Δm points: the equivalence margin when a suite states none


def duplicates(rows: list[dict], records: list[dict]) -> dict[str, str]:
    """{row label: the earlier row label with the same configuration at every seed}."""
    digests: dict[str, frozenset] = {}
    for row in rows:
        found = {r.get("config_digest") for r in records if r["run"] == row["run"]}
        if row["kind"] == "mtl" and None not in found:
            digests[row["run"]] = frozenset(found)
    out, seen = {}, {}
    for label, digest in digests.items():
        if digest in seen:
            out[label] = seen[digest]
        else:
            seen[digest] = label
    return out


def suite_margin(spec: dict) -> tuple[float, bool]:
    """The equivalence margin in Δm points and whether the suite stated it (`power.margin`, else
    `seeds.margin`, else DEFAULT_MARGIN)."""
    stated = (spec.get("power") or {}).get("margin")
    if stated is None and isinstance(spec.get("seeds"), dict):
        stated = spec["seeds"].get("margin")
    return (DEFAULT_MARGIN, False) if stated is None else (float(stated), True)


def fixed_verdicts(differences: dict[str, list[float]], margin: float) -> dict[str, Verdict]:
    """Holm over the difference tests, Holm over the equivalence tests, at α."""
    methods = list(differences)
    p_diff = [p_two_sided(differences[m]) for m in methods]
    p_eq = [equivalence_p(differences[m], margin) for m in methods]
    out = {}
    for m, pd, qd, pe, qe in zip(methods, p_diff, holm(p_diff), p_eq, holm(p_eq)):
        d = differences[m]
        if qd < ALPHA:
            decision = "better" if sum(d) < 0 else "worse"
        elif qe < ALPHA:
            decision = "equivalent"
        else:
            decision = "undecided"
        out[m] = Verdict(decision, len(d), pd, pe)
    return out


def verdicts(differences: dict[str, list[float]], spec: dict) -> dict[str, Verdict]:
    """{method: Verdict} for paired differences in seed order {method: [Δm − reference, ...]}."""
    margin, _ = suite_margin(spec)
    plan = SeedPlan.parse(spec.get("seeds"))
    usable = {m: d for m, d in differences.items() if len(d) >= 2}
    if plan is None:
        return fixed_verdicts(usable, margin)
    level = plan.alpha_look(len(usable))
    return {m: verdict(d, min(plan.first, len(d)), level, margin) for m, d in usable.items()}


def reference_differences(rows: list[dict], reference: dict | None, skip: set[str]) -> dict[str, list[float]]:
    """{row label: Δm − reference per common seed, in seed order} of the ranked rows, without the
    reference and the rows in `skip` (duplicates)."""
    if reference is None:
        return {}
    return {r["run"]: paired_differences(r["delta_m_seeds"], reference["delta_m_seeds"])
            for r in rows if r["delta_m_seeds"] and r is not reference and r["run"] not in skip}


def verdict_text(v: Verdict | None, margin: float) -> str:
    """How the table shows a verdict: "better (p 0.004)", "equivalent ±2 (p 0.01)", "undecided"."""
    if v is None:
        return ""
    if v.decision == "equivalent":
        return f"equivalent ±{margin:g} (TOST p {v.p_equivalence:.2g})"
    if v.decision in ("better", "worse"):
        return f"{v.decision} (p {v.p_difference:.2g})"
    return "undecided" if math.isnan(v.p_difference) else f"undecided (p {v.p_difference:.2g})"
