"""The two-objective toy problem of CAGrad / Nash-MTL / FAMO, solved with our balancers.

    python tools/toy.py [--out docs] [--methods equal,mgda,...] [--steps 100000] [--lr 0.001]
                        [--setting cagrad|nash] [--reference]

Runs every method of `perception_mtl.analysis.toy.METHODS` from every start of the setting (cagrad:
CAGrad's Fig. 1, f1 unscaled, starts (-8.5, 7.5), (-8.5, -5), (9, 9); nash: Nash-MTL's and FAMO's
figures, f1 scaled by 0.1, five starts) with Adam. The defaults are the papers' protocol (Adam,
lr 1e-3, 100k steps); docs/toy_figure.md says what a shorter one changes. Writes OUT/toy.png (one panel
per method over the mean loss's contours), OUT/toy.json and OUT/toy.md (end points, Pareto set,
distance to the mean-loss optimum) and prints the table.

--reference runs the two-task closed forms (analysis/toy_reference.py: equal, MGDA, PCGrad, CAGrad,
Nash-MTL, FairGrad, IMTL-G, UPGrad, DualProj) instead, all runs as one numpy batch, so the papers'
protocol takes minutes, and checks our balancer's direction against the closed form at points along
each path; writes OUT/toy_reference.{png,json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception_mtl.cli import exits_2_on_bad_input  # noqa: E402

SETTINGS = {"cagrad": 1.0, "nash": 0.1}  # the scale of f1


@exits_2_on_bad_input
def main(argv: list[str] | None = None) -> None:
    from perception_mtl.analysis import toy
    from perception_mtl.analysis.toy_figure import plot_runs, table
    from perception_mtl.analysis.toy_reference import TWO_TASK

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder for toy.png, toy.json, toy.md")
    p.add_argument("--methods", help="comma-separated, default: all (all with a closed form under --reference)")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cagrad")
    p.add_argument("--reference", action="store_true", help="the closed forms, with our directions checked along them")
    args = p.parse_args(argv)
    known = TWO_TASK if args.reference else toy.METHODS
    methods = args.methods.split(",") if args.methods else [m for m in toy.METHODS if m in known]
    unknown = [m for m in methods if m not in known]
    if unknown or args.steps < 1 or args.lr <= 0:
        p.exit(2, f"toy error: unknown method(s) {unknown}, choose from {list(known)}\n" if unknown
               else "toy error: --steps must be >= 1 and --lr > 0\n")
    scale = SETTINGS[args.setting]
    starts = toy.CAGRAD_STARTS if args.setting == "cagrad" else toy.NASH_STARTS
    if args.reference:
        return write_reference(methods, starts, args, scale)
    runs, seconds = [], {}
    for method in methods:
        t0 = time.time()
        runs += [toy.run(method, s, args.steps, args.lr, scale, every=max(1, args.steps // 1000)) for s in starts]
        seconds[method] = round(time.time() - t0, 1)
        print(f"{method}: {seconds[method]} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"our balancers on the toy problem ({args.setting} setting): Adam lr {args.lr:g}, {args.steps} steps"
    plot_runs(runs, args.out / "toy.png", title, scale)
    record = {"setting": args.setting, "steps": args.steps, "lr": args.lr, "seconds": seconds,
              "params": {m: toy.METHODS[m].params for m in methods},
              "runs": [{"method": r.method, "start": list(r.start), **toy.outcome(r.end)} for r in runs]}
    (args.out / "toy.json").write_text(json.dumps(record, indent=1) + "\n")
    notes = "".join(f"- {m}: {toy.METHODS[m].note}\n" for m in methods if toy.METHODS[m].note)
    (args.out / "toy.md").write_text(f"{title}\n\n{notes}\n" + table(runs))
    print(table(runs))


def write_reference(methods: list[str], starts, args: argparse.Namespace, scale: float) -> None:
    """The closed forms' figure and table, our directions checked along each path."""
    from perception_mtl.analysis.toy_figure import plot_runs
    from perception_mtl.analysis.toy_reference import reference_runs, shadow_table

    t0 = time.time()
    runs = reference_runs(methods, starts, args.steps, args.lr, scale)
    seconds = round(time.time() - t0, 1)
    print(f"closed forms, {len(runs)} runs: {seconds} s; checking our directions along them", flush=True)
    text, records = shadow_table(runs, scale)
    args.out.mkdir(parents=True, exist_ok=True)
    title = (f"two-task closed forms on the toy problem ({args.setting} setting): Adam lr {args.lr:g}, "
             f"{args.steps} steps")
    plot_runs(runs, args.out / "toy_reference.png", title, scale)
    (args.out / "toy_reference.json").write_text(json.dumps(
        {"setting": args.setting, "steps": args.steps, "lr": args.lr, "seconds": seconds, "runs": records},
        indent=1) + "\n")
    (args.out / "toy_reference.md").write_text(f"{title}\n\n{text}")
    print(text)


if __name__ == "__main__":
    main()
