"""Readable Pareto plots: log cost axis over a decade, accuracy axis zoomed to the data, labels kept apart."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from nasforge.viz import plots

from test_viz import check_png


def _points(xy: list[tuple[float, float]], prefix: str = "e") -> list[dict[str, float | str]]:
    return [{"id": f"{prefix}{i:03d}", "macs": x, "accuracy": y} for i, (x, y) in enumerate(xy)]


def _rendered_labels(fig: Figure) -> tuple[list, list, object]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    texts = list(ax.texts)
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in texts]
    return texts, boxes, renderer


# -- log scale --------------------------------------------------------------------------------------------
def test_use_log_scale_switches_on_above_one_decade() -> None:
    assert plots.use_log_scale([1.0, 10.5])
    assert plots.use_log_scale([3e6, 5e8, 1e7])
    assert not plots.use_log_scale([1.0, 10.0])  # exactly a decade: still linear
    assert not plots.use_log_scale([2.0, 19.0])
    assert not plots.use_log_scale([0.0, 100.0])  # zero or negative costs cannot go on a log axis
    assert not plots.use_log_scale([-1.0, 100.0])
    assert not plots.use_log_scale([])


@pytest.mark.parametrize("ratio, scale", [(30.0, "log"), (10.5, "log"), (9.0, "linear"), (2.0, "linear")])
def test_pareto_cost_axis_is_logarithmic_beyond_a_decade(ratio: float, scale: str) -> None:
    xs = [100.0 * ratio ** (i / 5) for i in range(6)]
    pts = _points([(x, 80.0 + i) for i, x in enumerate(xs)])
    fig = plots.pareto_figure(pts, "macs", "accuracy", ["e000", "e005"])
    assert fig.axes[0].get_xscale() == scale


# -- accuracy zoom ----------------------------------------------------------------------------------------
def test_padded_limits_hug_the_values() -> None:
    lo, hi = plots.padded_limits([85.0, 90.0, 87.0])
    assert 84.5 <= lo < 85.0 and 90.0 < hi <= 90.5
    lo, hi = plots.padded_limits([42.0])
    assert lo < 42.0 < hi and hi - lo <= 1.0


def test_pareto_accuracy_axis_is_zoomed_to_the_candidates() -> None:
    pts = _points([(1e6, 87.2), (2e6, 88.9), (5e6, 88.1), (3e7, 89.6), (2e8, 89.9), (4e8, 88.7)])
    pts.append({"id": "x", "macs": 1e6})  # no accuracy: not plotted, does not widen the axis
    fig = plots.pareto_figure(pts, "macs", "accuracy", ["e000", "e001", "e003", "e004"])
    lo, hi = fig.axes[0].get_ylim()
    span = 89.9 - 87.2
    assert 87.2 - 0.1 * span <= lo < 87.2
    assert 89.9 < hi <= 89.9 + 0.1 * span


# -- labels ------------------------------------------------------------------------------------------------
def test_place_point_labels_keeps_boxes_apart_inside_bounds() -> None:
    anchors = [(200.0 + 1.5 * i, 150.0 + 1.0 * i) for i in range(12)]  # 12 points on top of each other
    sizes = [(30.0, 14.0)] * 12
    bounds = (0.0, 0.0, 500.0, 400.0)
    placements = plots.place_point_labels(anchors, sizes, bounds, point_radius=5.0)
    boxes = []
    for (px, py), (w, h), pl in zip(anchors, sizes, placements):
        cx, cy = px + pl.dx, py + pl.dy
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        if math.hypot(pl.dx, pl.dy) > 40.0:
            assert pl.leader  # a label pushed away gets a leader line
    for a, b in itertools.combinations(boxes, 2):
        assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    for b in boxes:
        assert bounds[0] <= b[0] and b[2] <= bounds[2] and bounds[1] <= b[1] and b[3] <= bounds[3]
    # deterministic
    assert plots.place_point_labels(anchors, sizes, bounds, point_radius=5.0) == placements


def test_place_point_labels_sits_next_to_a_lone_point() -> None:
    (pl,) = plots.place_point_labels([(100.0, 100.0)], [(30.0, 12.0)], (0.0, 0.0, 400.0, 300.0), 5.0)
    assert not pl.leader and pl.dx > 0 and pl.dy > 0  # upper right, no leader line
    # in the upper-right corner it moves to another side instead of leaving the axes
    (pl,) = plots.place_point_labels([(395.0, 295.0)], [(30.0, 12.0)], (0.0, 0.0, 400.0, 300.0), 5.0)
    assert not pl.leader and pl.dx < 0 and pl.dy < 0


CROWDED = [
    # 12 front points within a few pixels of each other, far-away candidates stretching both axes
    (_points([(100.0 + i, 90.0 + 0.02 * i) for i in range(12)])
     + [{"id": "c1", "macs": 450.0, "accuracy": 89.0}, {"id": "c2", "macs": 300.0, "accuracy": 88.5},
        {"id": "c3", "macs": 150.0, "accuracy": 85.0}], [f"e{i:03d}" for i in range(12)]),
    # a GOLD-NAS-like front: cost falling over two decades, accuracy over a few points
    (_points([(5e8 * 0.85 ** i, 88.0 - 0.05 * i - (0.9 * (i - 28) if i > 28 else 0.0)) for i in range(40)]),
     [f"e{i:03d}" for i in range(28, 40)]),
    # 12 points on a short diagonal: the plain case
    (_points([(100.0 + 3 * i, 90.0 + 0.05 * i) for i in range(12)]), [f"e{i:03d}" for i in range(12)]),
]


@pytest.mark.parametrize("points, front", CROWDED, ids=["cluster", "gold-nas", "diagonal"])
def test_rendered_pareto_labels_do_not_overlap(points: list, front: list[str]) -> None:
    fig = plots.pareto_figure(points, "macs", "accuracy", front, title="crowded")
    texts, boxes, renderer = _rendered_labels(fig)
    assert sorted(t.get_text() for t in texts) == sorted(front)
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), f"labels {texts[i].get_text()} and {texts[j].get_text()} overlap"
    ax = fig.axes[0]
    ax_box = ax.get_window_extent(renderer)
    legend_box = ax.get_legend().get_window_extent(renderer)
    for t, b in zip(texts, boxes):
        assert ax_box.x0 <= b.x0 and b.x1 <= ax_box.x1 and ax_box.y0 <= b.y0 and b.y1 <= ax_box.y1, t.get_text()
        assert not b.overlaps(legend_box), f"label {t.get_text()} under the legend"
        text_box = Text.get_window_extent(t, renderer)  # the text alone, without its leader line
        assert b.contains(text_box.x0 + 0.5, text_box.y0 + 0.5) and b.contains(text_box.x1 - 0.5, text_box.y1 - 0.5)
    # a label pushed away from its point is joined to it by a leader line
    for t in texts:
        dx, dy = t.xyann
        if math.hypot(dx, dy) > 40:
            assert t.arrow_patch is not None, t.get_text()


def test_pareto_many_front_points_are_not_labelled(tmp_path: Path) -> None:
    pts = _points([(100.0 + i, 80.0 + i) for i in range(20)])
    fig = plots.pareto_figure(pts, "macs", "accuracy", [p["id"] for p in pts])
    assert len(fig.axes[0].texts) == 0
    check_png(plots.plot_pareto(pts, "macs", "accuracy", [p["id"] for p in pts], tmp_path / "p.png"))


def test_pareto_without_a_front_or_points_still_draws(tmp_path: Path) -> None:
    check_png(plots.plot_pareto(_points([(1.0, 2.0), (3.0, 1.0)]), "macs", "accuracy", [], tmp_path / "a.png"))
    check_png(plots.plot_pareto([], "macs", "accuracy", [], tmp_path / "b.png"), min_w=100)
