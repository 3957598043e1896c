"""Negative-transfer analysis of a results folder: who hurts whom, when, and how sure we are.

1. MTL vs single-task, per task and method: the change of the task's primary metric (in %,
   positive = worse, the sign of delta-m: `delta_m.relative_change`) with its spread over
   seeds, and Welch's t-test (unequal variances, one-sided, MTL seeds vs single-task seeds).
2. Gradient conflict over training, from the logged `train/grad/cos/<a>-<b>`: the cosine
   curves and the fraction of logged steps with a negative cosine (Yu et al. 2020).
3. Inter-task affinity by lookahead (TAG, Fifty et al. 2021), from the logged
   `train/affinity/<i>-><j>` (train.affinity_every > 0), averaged over training.
4. With the suite's `pairs: true`, the pairwise transfer matrix (Standley et al. 2020): the
   change of each task's primary metric when it trains with one other task (equal weights)
   against training alone, with the same test as 1.
5. Holm's correction over every test of the report (1 and 4 together): a task is flagged as
   suffering negative transfer only when it is worse AND its Holm-adjusted p < 0.05, so the
   chance of any false flag in the whole report stays under 5% (`multiplicity.py`).
6. A verdict per task pair from these numbers, in `transfer_report.md` with the figures.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from perception_mtl.analysis.delta_m import relative_change  # noqa: E402
from perception_mtl.analysis.multiplicity import holm  # noqa: E402
from perception_mtl.analysis.reported import reported, split_words  # noqa: E402
from perception_mtl.tasks import TASKS  # noqa: E402

ALPHA = 0.05


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def mtl_vs_stl(records: list[dict], kind: str = "mtl") -> list[dict]:
    """Per (run label of `kind`, task): mean/std of the relative change (%, positive = worse)
    against the task's single-task runs, and the raw p-value of its test (not flagged yet: see
    `transfer_tests`)."""
    stl = {r["tasks"][0]: [] for r in records if r["kind"] == "stl"}
    for r in records:
        if r["kind"] == "stl":
            stl[r["tasks"][0]].append(r)
    out = []
    methods = sorted({r["run"] for r in records if r["kind"] == kind})
    for method in methods:
        runs = [r for r in records if r["run"] == method]
        for task in runs[0]["tasks"]:
            if task not in stl:
                continue
            key = f"{task}/{TASKS.get(task).primary}"
            up = runs[0]["directions"][key]
            base = np.array([r["metrics"][key] for r in stl[task]])
            mtl = np.array([r["metrics"][key] for r in runs])
            change = np.array([relative_change(v, base.mean(), up) for v in mtl])
            p = math.nan
            if len(base) > 1 and len(mtl) > 1:
                p = float(stats.ttest_ind(mtl, base, equal_var=False,
                                          alternative="less" if up else "greater").pvalue)
            out.append({"method": method, "task": task, "metric": key, "change": float(change.mean()),
                        "std": float(change.std(ddof=1)) if len(change) > 1 else math.nan, "p": p,
                        "seeds": len(mtl), "changes": change.tolist(),
                        "base_changes": [relative_change(v, base.mean(), up) for v in base]})
    return out


def flag(tests: list[dict]) -> list[dict]:
    """The tests with `p_holm` (Holm over all of them) and `negative` (worse, i.e. change > 0, and
    p_holm < ALPHA)."""
    adjusted = holm([t["p"] for t in tests])
    return [{**t, "p_holm": q, "negative": bool(t["change"] > 0 and q < ALPHA)} for t, q in zip(tests, adjusted)]


def transfer_tests(records: list[dict]) -> tuple[list[dict], dict[tuple[str, str], dict]]:
    """The report's tests, MTL vs single-task and the pairwise matrix, flagged after one Holm
    correction over all of them."""
    changes, pairs = mtl_vs_stl(records), pairwise_changes(records)
    flagged = flag(changes + list(pairs.values()))
    return flagged[:len(changes)], dict(zip(pairs, flagged[len(changes):]))


def pairwise_changes(records: list[dict]) -> dict[tuple[str, str], dict]:
    """{(partner, task): the `mtl_vs_stl` entry of `task` trained with `partner` alone} from the
    suite's "pair" runs (Standley et al. 2020's pairwise transfer), unflagged."""
    partners = {r["run"]: r["tasks"] for r in records if r["kind"] == "pair"}
    return {(next(t for t in partners[c["method"]] if t != c["task"]), c["task"]): c
            for c in mtl_vs_stl(records, kind="pair")}


def plot_pairwise(pairs: dict[tuple[str, str], dict], tasks: list[str], path: Path) -> None:
    matrix = np.full((len(tasks), len(tasks)), np.nan)
    for (partner, task), c in pairs.items():
        matrix[tasks.index(partner), tasks.index(task)] = c["change"]
    _heatmap(matrix, tasks, "pairwise transfer: change (%, + = worse) of the column task\n"
             "trained with the row task vs alone", path, "RdBu_r", "+.1f")


def pairwise_section(pairs: dict[tuple[str, str], dict], order: list[str], out: Path) -> list[str]:
    """The report's lines on the pairwise matrix (tasks in the suite's `order`), and its heatmap
    `pairwise.png` in `out`."""
    seen = {t for key in pairs for t in key}
    tasks = [t for t in order if t in seen] + sorted(seen - set(order))
    plot_pairwise(pairs, tasks, out / "pairwise.png")
    lines = ["", "## Pairwise transfer (Standley et al. 2020)", "",
             "Change (%) of the column task's primary metric when it trains with the row task alone (equal "
             "weights) instead of by itself; positive = worse (the sign of Δm), **bold** = worse beyond seed noise "
             f"(Welch, Holm-adjusted p < {ALPHA}).", "",
             "| with \\ task | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for i in tasks:
        cells = []
        for j in tasks:
            c = pairs.get((i, j))
            cells.append("" if c is None else f"**{c['change']:+.2f}**" if c["negative"] else f"{c['change']:+.2f}")
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines += ["", "| with | task | change % (+ = worse) | p (raw) | p (Holm) |", "|---|---|---|---|---|"]
    lines += [f"| {i} | {j} | {c['change']:+.2f} | {c['p']:.3f} | {c['p_holm']:.3f} |"
              for i in tasks for j in tasks if (c := pairs.get((i, j))) is not None]
    return lines + ["", "![pairwise](pairwise.png)"]


def training_signals(results_dir: Path, records: list[dict], method: str) -> dict:
    """Cosine curves (mean over seeds), conflict fractions and mean affinities of one method."""
    runs = [r for r in records if r["run"] == method]
    tasks = runs[0]["tasks"]
    logs = [_rows(results_dir / "runs" / r.get("folder", method) / f"seed{r['seed']}" / "train.jsonl") for r in runs]
    curves, conflict, affinity = {}, {}, {}
    for a, b in itertools.combinations(tasks, 2):
        key = f"train/grad/cos/{a}-{b}"
        per_step: dict[int, list[float]] = {}
        for rows in logs:
            for row in rows:
                if key in row:
                    per_step.setdefault(row["step"], []).append(row[key])
        if per_step:
            steps = sorted(per_step)
            curves[(a, b)] = (steps, [float(np.mean(per_step[s])) for s in steps])
            values = [v for s in steps for v in per_step[s]]
            conflict[(a, b)] = float(np.mean(np.array(values) < 0))
    for i, j in itertools.product(tasks, tasks):
        values = [row[f"train/affinity/{i}->{j}"] for rows in logs for row in rows if f"train/affinity/{i}->{j}" in row]
        if values:
            affinity[(i, j)] = float(np.mean(values))
    return {"tasks": tasks, "curves": curves, "conflict": conflict, "affinity": affinity}


def _text_colour(rgba: tuple[float, float, float, float]) -> str:
    """Black or white, whichever reads on a cell of colour `rgba`: WCAG relative luminance (the
    rule seaborn's annotated heatmap uses; seaborn and pandas are not dependencies for one formula)."""
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return "black" if 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] > 0.408 else "white"


def heatmap_figure(matrix: np.ndarray, tasks: list[str], title: str, cmap: str, fmt: str) -> plt.Figure:
    """Annotated (T, T) heatmap, NaN cells blank. The colour scale spans the off-diagonal cells
    only (a task's effect on itself dwarfs the cross-task cells that matter); diagonal values are
    printed on grey. Diverging maps ("RdBu", "RdBu_r") are centred on 0."""
    fig, ax = plt.subplots(figsize=(1.2 * len(tasks) + 2, 1.0 * len(tasks) + 1.5))
    off = ~np.eye(len(tasks), dtype=bool)
    finite = matrix[off & np.isfinite(matrix)]
    limit = (float(np.abs(finite).max()) if finite.size else 0.0) or 1.0  # all-zero: any scale
    diverging = cmap.startswith("RdBu")
    norm = plt.Normalize(-limit if diverging else 0.0, limit)
    colours = plt.get_cmap(cmap)
    im = ax.imshow(np.where(off, matrix, np.nan), cmap=colours, norm=norm)
    ax.imshow(np.where(off | np.isnan(matrix), np.nan, 0.0), cmap=ListedColormap(["0.85"]))  # diagonal: light grey
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(tasks)), tasks)
    for (y, x), v in np.ndenumerate(matrix):
        if np.isfinite(v):
            colour = _text_colour(colours(norm(v))) if x != y else "black"
            ax.text(x, y, format(v, fmt), ha="center", va="center", fontsize=8, color=colour)
    ax.set_title(title + ("\n(diagonal grey: outside the colour scale)" if np.isfinite(matrix[~off]).any() else ""),
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _heatmap(matrix: np.ndarray, tasks: list[str], title: str, path: Path, cmap: str, fmt: str) -> None:
    fig = heatmap_figure(matrix, tasks, title, cmap, fmt)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_signals(signals: dict, method: str, out: Path) -> list[Path]:
    tasks, written = signals["tasks"], []
    if signals["curves"]:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for (a, b), (steps, values) in signals["curves"].items():
            ax.plot(steps, values, label=f"{a}-{b}")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel="step", ylabel="cosine", title=f"gradient cosine between tasks ({method}, mean over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "conflict_curves.png", dpi=110)
        plt.close(fig)
        written.append(out / "conflict_curves.png")
        matrix = np.full((len(tasks), len(tasks)), np.nan)
        for (a, b), frac in signals["conflict"].items():
            matrix[tasks.index(a), tasks.index(b)] = matrix[tasks.index(b), tasks.index(a)] = frac
        _heatmap(matrix, tasks, "fraction of steps with conflicting gradients", out / "conflict_heatmap.png",
                 "Reds", ".2f")
        written.append(out / "conflict_heatmap.png")
    if signals["affinity"]:
        matrix = np.full((len(tasks), len(tasks)), np.nan)
        for (i, j), z in signals["affinity"].items():
            matrix[tasks.index(i), tasks.index(j)] = z
        _heatmap(matrix, tasks, "lookahead affinity Z(row -> column) per unit lr\n(+ = a step on row lowers "
                 "column's loss)", out / "affinity.png", "RdBu", ".2g")
        written.append(out / "affinity.png")
    return written


def verdict(a: str, b: str, signals: dict, changes: list[dict], pairs: dict[tuple[str, str], dict]) -> str:
    """One sentence on the pair from conflict, affinity, the MTL-vs-STL tests and the pair's own run."""
    parts = []
    if (a, b) in signals["conflict"]:
        steps, values = signals["curves"][(a, b)]
        parts.append(f"gradients conflict on {100 * signals['conflict'][(a, b)]:.0f}% of logged steps "
                     f"(mean cosine {np.mean(values):+.2f})")
    za, zb = signals["affinity"].get((a, b)), signals["affinity"].get((b, a))
    if za is not None and zb is not None:
        def word(z: float) -> str:
            return "lowers" if z > 0 else "raises"
        parts.append(f"a step on {a} {word(za)} {b}'s loss (Z={za:+.3g}) and a step on {b} {word(zb)} "
                     f"{a}'s loss (Z={zb:+.3g})")
        relation = "help each other" if za > 0 and zb > 0 else "hurt each other" if za < 0 and zb < 0 else \
            f"{a if za > 0 else b} helps {b if za > 0 else a} but not the reverse"
        parts.append(f"so by lookahead they {relation}")
    if (b, a) in pairs and (a, b) in pairs:
        def told(c: dict) -> str:
            return f"{c['change']:+.1f}%" + (" (worse beyond seed noise)" if c["negative"] else "")
        parts.append(f"trained as a pair, {a} changes {told(pairs[(b, a)])} and {b} {told(pairs[(a, b)])} "
                     "against training alone (+ = worse)")
    hurt = sorted({c["task"] for c in changes if c["negative"] and c["task"] in (a, b)})
    if hurt:
        parts.append(f"sharing costs {', '.join(hurt)} more than seed noise (Welch, Holm-adjusted p < {ALPHA})")
    return "; ".join(parts) + "." if parts else "no training signals were logged for this pair."


def write_transfer_report(results_dir: str | Path, method: str | None = None) -> Path:
    """Write transfer_report.md and its figures into `results_dir`; returns the report path."""
    results_dir = Path(results_dir)
    rep = reported(results_dir)
    records = rep.records
    changes, pairs = transfer_tests(records)
    tested = sum(not math.isnan(c["p"]) for c in [*changes, *pairs.values()])
    methods = sorted({r["run"] for r in records if r["kind"] == "mtl"})
    lines = ["# Negative-transfer report", "", f"All numbers: {split_words(rep.split)}.", "",
             *(f"- {note}" for note in rep.notes), *([""] if rep.notes else [])]
    lines += ["## MTL vs single-task", "",
              "Relative change of each task's primary metric against the mean of its single-task runs "
              "(%, positive = worse, the sign of Δm), mean +- std over seeds. Welch's one-sided t-test gives the "
              "raw p; Holm's "
              f"step-down correction over all {tested} tests of this report (this table and the pairwise matrix) "
              f"gives the adjusted p. Flagged when worse and the Holm-adjusted p < {ALPHA}.", "",
              "| method | task | metric | change % (+ = worse) | std | p (raw) | p (Holm) | negative transfer |",
              "|---|---|---|---|---|---|---|---|"]
    for c in changes:
        verdict_text = "**yes**" if c["negative"] else ("untested (1 seed)" if math.isnan(c["p"]) else "no")
        lines.append(f"| {c['method']} | {c['task']} | {c['metric']} | {c['change']:+.2f} | {c['std']:.2f} | "
                     f"{c['p']:.3f} | {c['p_holm']:.3f} | {verdict_text} |")
    if not changes:
        lines.append("\n(no single-task baselines in this folder: the comparison needs `baselines: true`)")
    if methods:
        method = method or ("equal" if "equal" in methods else methods[0])
        signals = training_signals(results_dir, records, method)
        figures = plot_signals(signals, method, results_dir)
        lines += ["", f"## Training signals ({method})", ""]
        lines += [f"![{f.stem}]({f.name})" for f in figures]
        tasks = signals["tasks"]
        if signals["affinity"]:
            lines += ["", "Lookahead affinity Z(row -> column), mean over training:", "",
                      "| from \\ to | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
            lines += [f"| {i} | " + " | ".join(f"{signals['affinity'].get((i, j), math.nan):+.3g}" for j in tasks)
                      + " |" for i in tasks]
    if pairs:
        lines += pairwise_section(pairs, list(rep.spec.get("tasks", [])), results_dir)
    if methods:
        lines += ["", "## Verdicts", ""]
        lines += [f"- **{a} / {b}**: {verdict(a, b, signals, [c for c in changes if c['method'] == method], pairs)}"
                  for a, b in itertools.combinations(tasks, 2)]
    out = results_dir / "transfer_report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
