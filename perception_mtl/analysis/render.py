"""Render leaderboard rows (see `leaderboard.build_rows`): markdown, CSV, a self-contained
sortable HTML page, the Pareto scatter and the delta-m bar chart."""
from __future__ import annotations

import base64
import csv
import html
import itertools
import math
import re
from pathlib import Path

import markdown
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from adjustText import adjust_text  # noqa: E402

CAPTION = ("Ranked by Δm per-task (LibMTL); flat (Nash-MTL/FAMO) shown too. Δm: mean relative change (%) "
           "against the single-task runs, positive = worse, lower is better; mean ± std over seeds. "
           "Δm − equal: per-task Δm minus that of the run `equal` at the same seed (same initialisation and "
           "batch order), mean [paired-t 95% interval]; n/a with one seed. Verdict: better or worse than equal "
           "(paired t-test), equivalent within the stated margin (TOST), else undecided; see the notes for the "
           "families and the power. Rank: the best mean and every method whose interval of Δm minus the best's "
           "contains 0 share rank 1 (not separated, which is no claim that they are equal), then the same on the "
           "rest (1, 1, 3). Collapsed: seeds where a task's primary metric fell below half its single-task mean. "
           "Clip: % of steps where the global gradient-norm clip bound. "
           "Seed ranks: the range of the method's rank when each seed ranks the methods alone. Variant: how the "
           "balancer departs from its paper's method. Tuned: the hyperparameter search behind the row (none for most). "
           "stl-* rows are the single-task baselines (reference, not ranked).")
NUMERIC = ("delta_m_per_task", "delta_m_flat", "train_time_s", "latency_ms", "clipped")
Cell = tuple[str, float | str | None]  # (text shown, value to sort by; None = blank, sorted last)


def _fmt(stat: tuple[float, float], spec: str, std_spec: str | None = None) -> Cell:
    mean, std = stat
    if math.isnan(mean):
        return "", None
    text = format(mean, spec) + ("" if math.isnan(std) else " ± " + format(std, std_spec or spec))
    return text, mean


def columns(keys: list[str], directions: dict[str, bool]) -> list[tuple[str, bool]]:
    """(title, whether a higher value ranks first) per column; each metric's title carries its
    direction (↑ higher is better). Text columns sort alphabetically first (False)."""
    arrows = [(f"{k} {'↑' if directions.get(k, True) else '↓'}", directions.get(k, True)) for k in keys]
    return [("rank", False), ("run", False), ("seeds", True), ("variant", False), ("tuned", False), *arrows,
            ("Δm% per-task ↓", False), ("Δm − equal [95% CI]", False), ("verdict vs equal", False),
            ("Δm% flat ↓", False), ("seed ranks", False), ("collapsed", False), ("clip %", False), ("params (M)", False), ("train time (s)", False), ("latency (ms)", False)]


def header(keys: list[str], directions: dict[str, bool]) -> list[str]:
    """Column titles (see `columns`)."""
    return [title for title, _ in columns(keys, directions)]


def _versus(row: dict) -> Cell:
    """The paired difference to the reference run: "+1.20 [-0.40, +2.80]", "+1.20 [n/a]" for one seed."""
    if row["reference"]:
        return "reference", 0.0
    interval = row["vs_reference"]
    if interval is None or interval.n == 0:
        return "", None
    bounds = f"[{interval.lo:+.2f}, {interval.hi:+.2f}]" if interval.defined else "[n/a]"
    return f"{interval.mean:+.2f} {bounds}", interval.mean


def _seed_ranks(row: dict) -> Cell:
    ranks = row["seed_ranks"]
    if not ranks:
        return "", None
    low, high = min(ranks), max(ranks)
    return (str(low) if low == high else f"{low}–{high}"), low


def _collapses(row: dict) -> Cell:
    """"det 1/3" per task that collapsed in some seeds; "0" for a multi-task row without any."""
    if row["kind"] != "mtl":
        return "", None
    found = row["collapses"]
    return (", ".join(f"{t} {n}/{row['seeds']}" for t, n in found.items()) or "0"), sum(found.values())


def cells(row: dict, keys: list[str]) -> list[Cell]:
    """The displayed cells of one row, each with the value the HTML sorts by."""
    rank: Cell = (str(row["rank"]), row["rank"]) if row["rank"] else ("ref" if row["kind"] != "mtl" else "", None)
    tuned = row["tuned"] + (f" → {row['chosen']}" if row["chosen"] else "")
    if row["same_as"]:
        rank = (f"{row['rank']} (= {row['same_as']})", row["rank"])
    return [rank, (row["run"], row["run"]), (str(row["seeds"]), row["seeds"]), (row["variant"], row["variant"]),
            (tuned, tuned),
            *(_fmt(row["metrics"][k], ".4g", ".2g") for k in keys),
            _fmt(row["delta_m_per_task"], ".2f"), _versus(row), (row["verdict"], row["verdict"]),
            _fmt(row["delta_m_flat"], ".2f"), _seed_ranks(row), _collapses(row), _fmt(row["clipped"], ".0f"),
            (f"{row['params'] / 1e6:.2f}", row["params"]), _fmt(row["train_time_s"], ".0f"),
            _fmt(row["latency_ms"], ".1f")]


def numeric_table(rows: list[dict], keys: list[str]) -> tuple[list[str], list[list]]:
    """Columns and rows with mean and std as separate numbers (None where undefined)."""
    names = [*keys, *NUMERIC]
    columns = (["rank", "run", "kind", "seeds", "variant", "tuned", "chosen", "params"] + [f"{n}_{s}" for n in names for s in ("mean", "std")]
               + [f"delta_m_vs_equal_{s}" for s in ("mean", "lo", "hi")]
               + ["seed_rank_min", "seed_rank_max", "kendall_w", "friedman_p", "verdict", "same_as",
                  "collapsed_seeds"])
    data = []
    for row in rows:
        stats = [*(row["metrics"][k] for k in keys), *(row[n] for n in NUMERIC)]
        versus = row["vs_reference"]
        extra = [*((versus.mean, versus.lo, versus.hi) if versus else (0.0 if row["reference"] else math.nan,
                                                                        math.nan, math.nan)),
                 *((min(row["seed_ranks"]), max(row["seed_ranks"])) if row["seed_ranks"] else (math.nan,) * 2),
                 *((row["concordance"].w, row["concordance"].p) if row["concordance"] else (math.nan,) * 2)]
        labels = [row["verdict"], row["same_as"], sum(row["collapses"].values()) if row["kind"] == "mtl" else None]
        data.append([row["rank"], row["run"], row["kind"], row["seeds"], row["variant"], row["tuned"], row["chosen"],
                     int(row["params"])]
                    + [None if math.isnan(v) else v for stat in stats for v in stat]
                    + [None if math.isnan(v) else v for v in extra] + labels)
    return columns, data


def write_csv(columns: list[str], data: list[list], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in data])


def write_markdown(rows: list[dict], keys: list[str], directions: dict[str, bool], notes: list[str], title: str,
                   figures: list[Path], path: Path) -> None:
    head = header(keys, directions)
    lines = [f"# {title}", "", CAPTION, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(text for text, _ in cells(r, keys)) + " |" for r in rows]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    lines += ["", *(f"![{f.stem}]({f.name})" for f in figures)]
    path.write_text("\n".join(lines) + "\n")


SORT_JS = """<script>
// The first click on a header sorts best-first in that column's direction (th data-first), the next reverses.
document.querySelectorAll("table.leaderboard th").forEach((th, col) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const asc = th.dataset.order ? th.dataset.order !== "asc" : th.dataset.first === "asc";
  th.parentNode.querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = asc ? "asc" : "desc";
  const value = r => { const v = r.cells[col].dataset.v; return v === undefined ? null : isNaN(v) ? v : +v; };
  Array.from(body.rows).sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === null || y === null) return (x === null) - (y === null);  // blanks last either way
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  }).forEach(r => body.appendChild(r));
}));
</script>"""
# Fits 1400 px without horizontal scrolling: headers (at spaces and after "/") and the text columns
# (variant, tuned) wrap, numbers do not.
STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 5px;text-align:right;white-space:nowrap}
th{cursor:pointer;background:#f0f0f0;user-select:none;white-space:normal;vertical-align:bottom}
table.leaderboard td:nth-child(2){text-align:left}
table.leaderboard td:nth-child(4),table.leaderboard td:nth-child(5){white-space:normal;min-width:7em;text-align:left}
table.leaderboard th[data-order=asc]::after{content:" ▲"}table.leaderboard th[data-order=desc]::after{content:" ▼"}
tr.stl{color:#666;background:#fafafa}img{max-width:100%;margin-top:1em}
section.transfer th{cursor:auto}section.transfer td:first-child,section.transfer td:nth-child(2){text-align:left}
</style>"""


def _td(cell: Cell) -> str:
    """A cell with its sort value; a spread ("± std") or an interval ("[lo, hi]") goes on a second,
    smaller line to keep the columns narrow."""
    text, value = cell
    attr = "" if value is None else f' data-v="{html.escape(str(value))}"'
    head, *spread = re.split(r" (?=± |\[)", text, maxsplit=1)
    return f"<td{attr}>{html.escape(head)}" + "".join(f"<br><small>{html.escape(s)}</small>" for s in spread) + "</td>"


def _data_uri(path: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def transfer_html(report: Path) -> str:
    """The transfer report (markdown, `transfer.write_transfer_report`) as an HTML section, its
    figures inlined; "" when `report` does not exist. Raises FileNotFoundError naming a figure
    the report shows but its folder lacks."""
    if not report.exists():
        return ""
    body = markdown.markdown(report.read_text(), extensions=["tables"])

    def inline(match: re.Match) -> str:
        figure = report.parent / match.group(1)
        if not figure.exists():
            raise FileNotFoundError(f"{report} shows {match.group(1)}, which is not in {report.parent}; "
                                    f"rebuild it with python tools/analyze_transfer.py {report.parent}")
        return f'src="{_data_uri(figure)}"'

    return '<section class="transfer">' + re.sub(r'src="([^"/:]+[.]png)"', inline, body) + "</section>"


def write_html(rows: list[dict], keys: list[str], directions: dict[str, bool], notes: list[str], title: str,
               figures: list[Path], path: Path, transfer: str = "") -> None:
    """One offline file: inline CSS, the sorting script, the figures as data URIs, then the
    `transfer` section (`transfer_html`)."""
    head = "".join(f'<th data-first="{"desc" if up else "asc"}">{html.escape(h).replace("/", "/<wbr>")}</th>'
                   for h, up in columns(keys, directions))  # <wbr>: a long metric name may break after "/"
    body = "\n".join(f'<tr class="{r["kind"]}">' + "".join(_td(c) for c in cells(r, keys)) + "</tr>" for r in rows)
    notes_html = f"<p>Notes:</p><ul>{''.join(f'<li>{html.escape(n)}</li>' for n in notes)}</ul>" if notes else ""
    images = "".join(f'<img alt="{f.stem}" src="{_data_uri(f)}">' for f in figures)
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{STYLE}</head><body>
<h2>{html.escape(title)}</h2><p>{html.escape(CAPTION)} Click a column header to sort, best first.</p>
<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>{notes_html}{images}
{transfer}
{SORT_JS}</body></html>
""")


def plot_delta_m(rows: list[dict], path: Path) -> bool:
    """Bars of delta-m per-task (mean ± std over seeds), best first; False when nothing to draw."""
    rows = [r for r in rows if r["kind"] == "mtl" and not math.isnan(r["delta_m_per_task"][0])]
    if not rows:
        return False
    rows = sorted(rows, key=lambda r: r["delta_m_per_task"][0])
    means = [r["delta_m_per_task"][0] for r in rows]
    errors = [0.0 if math.isnan(r["delta_m_per_task"][1]) else r["delta_m_per_task"][1] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(rows) + 1.5), 3.4))
    ax.bar(range(len(rows)), means, yerr=errors if any(errors) else None, capsize=3,
           color=["tab:green" if m < 0 else "tab:red" for m in means])
    ax.set_xticks(range(len(rows)), [r["run"] for r in rows], rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("Δm% per-task (+ = worse)")
    ax.set_title("Δm vs single-task, mean ± std over seeds\n(positive = worse, lower is better)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which points no other point dominates (both coordinates minimised)."""
    return [not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points) for p in points]


def pareto_figure(rows: list[dict]) -> plt.Figure | None:
    """Per task pair, each method's per-task relative change % (positive = worse, the sign of Δm;
    origin = single-task, lower-left = better), Pareto-optimal methods in red, labels placed by
    adjustText so that they do not overlap; None when fewer than two tasks have baselines."""
    rows = [r for r in rows if r["kind"] == "mtl" and r["task_change"]]
    tasks = list(dict.fromkeys(t for r in rows for t in r["task_change"]))
    pairs = list(itertools.combinations(tasks, 2))
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.6), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        pts = [(r["run"], r["task_change"][a], r["task_change"][b]) for r in rows
               if not math.isnan(r["task_change"][a][0]) and not math.isnan(r["task_change"][b][0])]
        front = pareto_front([(x[0], y[0]) for _, x, y in pts])
        labels = []
        for (name, x, y), best in zip(pts, front):
            ax.errorbar(x[0], y[0], xerr=0 if math.isnan(x[1]) else x[1], yerr=0 if math.isnan(y[1]) else y[1],
                        fmt="o", ms=6 if best else 4, color="tab:red" if best else "tab:gray", lw=0.8, alpha=0.8)
            labels.append(ax.text(x[0], y[0], name, fontsize=8, color="darkred" if best else "black"))
        ax.scatter([0], [0], marker="*", s=120, color="k", zorder=3, label="single-task")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set(xlabel=f"{a}: change vs single-task % (+ = worse)", ylabel=f"{b}: change vs single-task % (+ = worse)",
               title=f"{a} vs {b}: lower-left is better\n(red: Pareto-optimal; bars: ± std over seeds)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="upper left")
        adjust_text(labels, x=[x[0] for _, x, _ in pts], y=[y[0] for _, _, y in pts], ax=ax,
                    arrowprops=dict(arrowstyle="-", color="0.5", lw=0.5))
    fig.tight_layout()
    return fig


def plot_pareto(rows: list[dict], path: Path) -> bool:
    """Write `pareto_figure` to `path`; False when there is nothing to draw."""
    fig = pareto_figure(rows)
    if fig is None:
        return False
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
