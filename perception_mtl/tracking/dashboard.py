"""W&B workspace (saved view) for a project of benchmark runs, built with wandb-workspaces.

Panels name the keys the trainer logs (`train/loss/<task>`, `train/grad/cos/<a>-<b>`,
`val/<task>/<metric>`, ...), enumerated from the task list; only the per-task validation
line plots also carry a metric regex (`^val/<task>/`), as LinePlot is the one panel that
supports it. Runs are grouped by `balancer.name` and, given a suite, filtered to its W&B group.
Building needs no network; `save_or_export` writes the view spec as JSON and, online, saves the view.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import wandb

from perception_mtl.core.config import ConfigError
from perception_mtl.core.metric_key import MetricKey
from perception_mtl.tasks import TASKS
from perception_mtl.tracking.wandb import resolve_mode

try:
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
except ImportError as err:
    raise ImportError("the W&B dashboard needs wandb-workspaces: "
                      "pip install 'wandb-workspaces>=0.4.4,<0.5'") from err

# WandbLogger defines `val/*` with summary "max,last": the run summary holds {"max", "last"}.
FINAL = ".last"
MAX_RUNS = 50  # runs (or groups) drawn per panel; the W&B default of 10 cuts a suite short
PUSH_LATER = ("to push it, re-run tools/wandb_dashboard.py with the same arguments plus --online, "
              "with WANDB_API_KEY set (or after `wandb login`) and WANDB_MODE not offline")


def _line(title: str, y: list[str], **kwargs) -> wr.LinePlot:
    """Line plot whose grouped runs show the mean over seeds with a standard-error band."""
    return wr.LinePlot(title=title, y=y, groupby_aggfunc="mean", groupby_rangefunc="stderr", **kwargs)


def key_metrics(tasks: list[str]) -> list[str]:
    """`val/<task>/<metric>` of the key metrics (`Task.key_metrics`) of the given tasks, in task order."""
    return [f"val/{t}/{m}" for t in tasks for m in TASKS.get(t).dashboard_metrics()]


def higher_is_better(key: str) -> bool:
    """Direction of `val/<task>/<metric>`, as its task declares it."""
    k = MetricKey.parse(key.removeprefix("val/"))
    return TASKS.get(k.task).directions[k.metric]


def build_workspace(project: str, entity: str | None, name: str, tasks: list[str],
                    group: str | None = None) -> ws.Workspace:
    """The workspace; entity None leaves it to `save_or_export` (the API key's default entity)."""
    if not tasks:
        raise ValueError("build_workspace needs at least one task")
    if group and "'" in group:  # wandb-workspaces round-trips filters through an unescaped 'string'
        raise ValueError(f"cannot filter on a W&B group name with a quote: {group!r}")
    pairs = [f"{a}-{b}" for a, b in itertools.combinations(tasks, 2)]
    keys = key_metrics(tasks)
    conflict = [_line(f"gradient cosine {p}", [f"train/grad/cos/{p}"]) for p in pairs]
    if pairs:
        conflict.append(_line("gradient magnitude similarity", [f"train/grad/magsim/{p}" for p in pairs]))
    conflict += [
        _line("gradient norms", ["train/grad_norm", *(f"train/grad/norm/{t}" for t in tasks)]),
        _line("TAG affinity i->j", [f"train/affinity/{i}->{j}" for i, j in itertools.product(tasks, tasks)]),
    ]
    columns = [wr.ParallelCoordinatesPlotColumn(wr.Config("balancer.name"), display_name="balancer")]
    columns += [wr.ParallelCoordinatesPlotColumn(wr.SummaryMetric(k + FINAL), display_name=k,
                                                 inverted=not higher_is_better(k))
                for k in keys]
    sections = [
        ws.Section("Task losses", [_line(f"loss {t}", [f"train/loss/{t}"]) for t in tasks], is_open=True),
        ws.Section("Task weights", [_line(f"weight {t}", [f"train/weight/{t}"]) for t in tasks], is_open=True),
        ws.Section("Gradient conflict", conflict, is_open=True),
        ws.Section("Validation metrics", [
            *(_line(f"val {t}", key_metrics([t]), metric_regex=f"^val/{t}/")
              for t in tasks),
            *(wr.BarPlot(title=f"final {k}", metrics=[wr.SummaryMetric(k + FINAL)],
                         groupby_aggfunc="mean", groupby_rangefunc="stderr") for k in keys),
        ], is_open=True),
        ws.Section("Predictions", [wr.MediaBrowser(title="val predictions", media_keys=["val/predictions"],
                                                   num_columns=2, gallery_axis="step")]),
        ws.Section("Compare runs", [wr.RunComparer(diff_only="split"),
                                    wr.ParallelCoordinatesPlot(columns=columns, title="balancer vs final metrics")]),
        ws.Section("Training", [_line("learning rate", ["train/lr"]),
                                _line("throughput (images/s)", ["train/images_per_s"]),
                                _line("soft-sharing coupling", ["train/coupling/params", "train/coupling/features"]),
                                _line("task stopped early (step)", [f"train/event/stopped/{t}" for t in tasks])]),
    ]
    runsets = ws.RunsetSettings(groupby=[ws.Config("balancer.name")],
                                filters=ws.And(ws.Metric("Group") == group) if group else "")
    return ws.Workspace(entity=entity or "", project=project, name=name, sections=sections,
                        settings=ws.WorkspaceSettings(max_runs=MAX_RUNS), runset_settings=runsets)


def spec_json(workspace: ws.Workspace) -> str:
    """The view spec exactly as `Workspace.save()` sends it."""
    return workspace._to_model().spec.model_dump_json(by_alias=True, exclude_none=True)


def save_or_export(workspace: ws.Workspace, out: Path, online: bool = True) -> str:
    """Write the spec JSON to `out`; with `online`, also save the view to W&B. Returns what
    happened; a W&B or network failure is reported, not raised. Asked to go online without an API
    key, or with WANDB_MODE set to another mode, it raises a ConfigError saying so."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(spec_json(workspace))
    if not online:
        return f"wrote the workspace spec to {out}, not saved to W&B (not asked to go online); {PUSH_LATER}"
    no_key = ConfigError(f"--online needs a W&B API key and none is configured: set WANDB_API_KEY or run "
                         f"`wandb login` (the spec is written to {out})")
    mode = resolve_mode(None)  # WANDB_MODE, else online iff WANDB_API_KEY or a netrc entry
    if mode != "online":
        if os.environ.get("WANDB_MODE"):
            raise ConfigError(f"--online, but WANDB_MODE={mode}: unset WANDB_MODE to save the workspace to W&B "
                              f"(the spec is written to {out})")
        raise no_key
    try:
        api = wandb.Api()
    except Exception as err:  # noqa: BLE001 (any W&B failure falls back to the file)
        return f"wrote the workspace spec to {out}; W&B failed ({type(err).__name__}: {err}); {PUSH_LATER}"
    if not api.api_key:
        raise no_key
    try:
        if not workspace.entity:
            workspace.entity = api.default_entity
        workspace.save()
        return f"saved the workspace to {workspace.url} (spec also in {out})"
    except Exception as err:  # noqa: BLE001 (any W&B or network failure falls back to the file)
        return (f"wrote the workspace spec to {out}; saving to W&B failed ({type(err).__name__}: {err}); "
                f"{PUSH_LATER}")
