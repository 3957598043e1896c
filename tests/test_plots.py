"""Plots people read: validation panels or a table, a static weight panel that says so, heatmaps
scaled without their diagonal and with readable text, Pareto labels that do not overlap."""
from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from perception_mtl.analysis.render import pareto_figure  # noqa: E402
from perception_mtl.analysis.transfer import heatmap_figure  # noqa: E402
from perception_mtl.tracking.plots import plot_run, train_figure, val_figure  # noqa: E402

VAL = {"val/depth/abs_rel": 0.17, "val/depth/rmse": 7.0, "val/depth/sq_rel": 1.4, "val/det/mAP50": 0.4}


def _val_rows(n: int) -> list[dict]:
    return [{"step": 100 * (i + 1), **{k: v * (1 + 0.1 * i) for k, v in VAL.items()}} for i in range(n)]


@pytest.mark.parametrize("evaluations", [1, 2])
def test_few_evaluations_make_a_table(evaluations):
    fig = val_figure(_val_rows(evaluations))
    (ax,) = fig.axes
    (table,) = ax.tables
    texts = [c.get_text().get_text() for c in table.get_celld().values()]
    assert "depth/rmse" in texts and format(7.0, ".4g") in texts and f"step {100 * evaluations}" in texts
    plt.close(fig)


def test_three_evaluations_make_one_panel_per_metric():
    fig = val_figure(_val_rows(3))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in visible) == sorted(k.removeprefix("val/") for k in VAL)
    rmse = next(ax for ax in visible if ax.get_title() == "depth/rmse")
    assert len(rmse.lines) == 1 and rmse.get_ylim()[0] > 1.0  # its own scale, not shared with AbsRel
    plt.close(fig)


def _train_rows(weights) -> list[dict]:
    return [{"step": s, "train/loss/det": 1.0 / s, "train/loss/seg": 2.0 / s,
             "train/weight/det": weights(s), "train/weight/seg": 1.0} for s in range(1, 6)]


def test_a_static_weight_panel_says_it_is_constant():
    fig = train_figure(_train_rows(lambda s: 1.0))
    weight = next(ax for ax in fig.axes if ax.get_title().startswith("train/weight"))
    assert "constant" in weight.get_title() and not weight.lines
    assert "det = 1" in weight.texts[0].get_text() and "seg = 1" in weight.texts[0].get_text()
    plt.close(fig)
    fig = train_figure(_train_rows(lambda s: 1.0 + 0.1 * s))
    weight = next(ax for ax in fig.axes if ax.get_title().startswith("train/weight"))
    assert weight.get_title() == "train/weight" and len(weight.lines) == 2
    plt.close(fig)


def test_plot_run_writes_both_pngs(tmp_path):
    import json

    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in _train_rows(lambda s: 1.0)))
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in _val_rows(1)))
    written = plot_run(tmp_path)
    assert [p.name for p in written] == ["curves_train.png", "curves_val.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_heatmap_scale_leaves_out_the_diagonal_and_text_reads_on_its_cell():
    # the affinity matrix's diagonal (a task on itself) is 50x its off-diagonal cells
    matrix = np.array([[5.0, 0.1, -0.05], [0.02, 4.0, 0.08], [-0.1, 0.03, 6.0]])
    fig = heatmap_figure(matrix, ["det", "seg", "depth"], "affinity", "RdBu", ".2g")
    ax = fig.axes[0]
    assert ax.images[0].norm.vmin == pytest.approx(-0.1) and ax.images[0].norm.vmax == pytest.approx(0.1)
    colour = {t.get_text(): t.get_color() for t in ax.texts}
    assert colour["-0.1"] == "white" and colour["0.1"] == "white"  # saturated red / blue ends
    assert colour["0.02"] == "black" and colour["5"] == "black"  # pale cell; diagonal on light grey
    assert "diagonal" in ax.get_title()
    plt.close(fig)
    conflict = np.array([[np.nan, 0.36, 0.08], [0.36, np.nan, 0.11], [0.08, 0.11, np.nan]])
    fig = heatmap_figure(conflict, ["a", "b", "c"], "conflict", "Reds", ".2f")
    colour = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colour["0.36"] == "white" and colour["0.08"] == "black"  # no black on dark red
    plt.close(fig)


def _row(run: str, det: float, seg: float) -> dict:
    return {"run": run, "kind": "mtl", "task_change": {"det": (det, 0.5), "seg": (seg, 0.2)}}


def test_pareto_labels_do_not_overlap():
    # seven methods within 1% of each other and one far away: the labels would pile up at their points
    rows = [_row(f"method-{i}", 5.0 + 0.1 * i, 0.7 + 0.05 * (i % 3)) for i in range(7)] + [_row("far", 40.0, 5.0)]
    fig = pareto_figure(rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == len(rows)
    assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    ax = fig.axes[0]
    assert "(+ = worse)" in ax.get_xlabel() and "(+ = worse)" in ax.get_ylabel()
    plt.close(fig)
