"""Data plots for reports: architecture-weight heat maps, training curves and Pareto fronts.

These are ordinary matplotlib plots, apart from the readability rules of :func:`plot_pareto`. A GOLD-NAS run
records one point per epoch while pruning shrinks the network by orders of magnitude, so on a linear cost
axis the whole front sits in a sliver on the left, and its labels pile up. Hence: the cost axis turns
logarithmic when the points span more than a decade (:func:`use_log_scale`), the accuracy axis is zoomed to
the points (:func:`padded_limits`), and the labels of the front are placed by a small deterministic search
(:func:`place_point_labels`) that keeps label boxes apart, off the markers and the legend, inside the axes,
and joins a displaced label to its point with a thin leader line.

numpy and matplotlib are imported inside the functions so that ``import nasforge`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .style import (CANDIDATE_COLOR, FRONT_COLOR, LEADER_COLOR, POINT_LABEL_FONTSIZE, new_figure,
                    save_figure)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LabelPlacement", "default_edge_labels", "draw_weights_heatmap", "padded_limits", "pareto_figure",
           "place_point_labels", "plot_curves", "plot_pareto", "use_log_scale"]

#: Most front points that get an id label; beyond that the labels would hide the plot.
MAX_FRONT_LABELS = 15

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in display pixels


# ----------------------------------------------------------------------------------------------------------
# Heat maps
# ----------------------------------------------------------------------------------------------------------
def default_edge_labels(n_rows: int, n_inputs: int = 2) -> list[str]:
    """``"src→dst"`` for the DARTS edge order (node by node, sources in increasing order), else ``edge i``."""
    labels: list[str] = []
    dst = n_inputs
    while len(labels) < n_rows:
        labels.extend(f"{src}→{dst}" for src in range(dst))
        dst += 1
    if len(labels) != n_rows:
        return [f"edge {i}" for i in range(n_rows)]
    return labels


def draw_weights_heatmap(weights: Mapping[str, "np.ndarray"], op_names: Sequence[str], path: str | Path,
                         title: str | None = None,
                         edge_labels: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Heat map of architecture weights (e.g. softmaxed DARTS alphas), one panel per cell type.

    Rows are edges, columns ops; every finite value is written in its square with two decimals, so the
    figure doubles as a table. All panels share one colour scale and one colour bar, so a weight means the
    same colour in the normal and the reduction cell. ``NaN`` marks an op that is not on that edge any more
    (P-DARTS drops ops between stages, GOLD-NAS prunes them); those squares are grey and hatched rather
    than coloured as zero, because "removed" and "weight 0" are different things.

    Args:
        weights: Panel name (``"normal"``, ``"reduce"``, ...) -> ``(edges, ops)`` array; a 1-D array is one
            edge.
        op_names: Column labels; their number must match every array's second dimension.
        path: Output file, written atomically.
        title: Optional figure title.
        edge_labels: Row labels per panel; by default ``"src→dst"`` in DARTS edge order (nodes 0 and 1 are
            the cell inputs) when the row count fits a 2-input cell, else ``edge i``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``weights`` is empty, an array is not 1-D/2-D, or shapes and labels do not match.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Patch, Rectangle

    if not weights:
        raise ValueError("draw_weights_heatmap: no weight matrices given")
    mats: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        a = np.asarray(w, dtype=float)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != len(op_names):
            raise ValueError(f"draw_weights_heatmap: weights[{name!r}] has shape {np.shape(w)}; expected "
                             f"(edges, {len(op_names)}) to match op_names")
        mats[name] = a
    labels: dict[str, list[str]] = {}
    for name, a in mats.items():
        if edge_labels is not None and name in edge_labels:
            lab = [str(s) for s in edge_labels[name]]
            if len(lab) != a.shape[0]:
                raise ValueError(f"draw_weights_heatmap: edge_labels[{name!r}] has {len(lab)} labels for "
                                 f"{a.shape[0]} rows")
        else:
            lab = default_edge_labels(a.shape[0])
        labels[name] = lab

    finite = np.concatenate([a[np.isfinite(a)] for a in mats.values()])
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:
        vmax = vmin + 1.0
    any_nan = any(np.isnan(a).any() for a in mats.values())

    n_ops = len(op_names)
    max_rows = max(a.shape[0] for a in mats.values())
    panel_w = 0.62 * n_ops + 1.1
    fig_w = panel_w * len(mats) + 1.3
    fig_h = 0.3 * max_rows + 2.2 + (0.4 if title else 0.0)
    fig = new_figure((fig_w, fig_h), layout="constrained")
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    cmap = colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0))
    fontsize = 7.5 if n_ops <= 10 else 6
    im = None
    for k, (ax, (name, a)) in enumerate(zip(axes, mats.items())):
        im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                       interpolation="nearest")
        rows, cols = a.shape
        for i in range(rows):
            for j in range(cols):
                v = a[i, j]
                if np.isnan(v):
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#dcdcdc", edgecolor="#9a9a9a",
                                           hatch="////", linewidth=0))
                elif np.isfinite(v):
                    dark = (v - vmin) / (vmax - vmin) < 0.55  # viridis is dark at the low end
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=fontsize,
                            color="white" if dark else "black")
        ax.set_xticks(range(cols), list(op_names), rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_yticks(range(rows), labels[name], fontsize=8)
        ax.set_xticks(np.arange(-0.5, cols), minor=True)
        ax.set_yticks(np.arange(-0.5, rows), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.0)
        ax.tick_params(which="minor", length=0)
        ax.set_title(str(name), fontsize=11)
        if k == 0:
            ax.set_ylabel("edge (src→dst)", fontsize=9)
    assert im is not None
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="weight", pad=0.02)
    if any_nan:
        fig.legend(handles=[Patch(facecolor="#dcdcdc", edgecolor="#9a9a9a", hatch="////",
                                  label="op not on this edge (NaN)")],
                   loc="outside lower center", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=13)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------------------
def _number(v: Any) -> float | None:
    """``v`` as a float, or None when it is missing or not a number (bools and strings are not metrics)."""
    if v is None or isinstance(v, (bool, str)):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def plot_curves(rows: Sequence[Mapping[str, float]], x: str, ys: Sequence[str], path: str | Path,
                title: str | None = None) -> Path:
    """Line plot of metrics over ``x`` (e.g. rows of ``metrics.jsonl``), one line per name in ``ys``.

    Rows that lack ``x`` or a given ``y`` (or hold a non-number there) are skipped for that line only, because
    metric logs mix row kinds (per-epoch rows, evaluation rows, a final summary). Points are sorted by ``x``
    so a resumed run that logs in a different order still plots as a line. A name with no data stays in the
    legend marked "(no data)" rather than failing, so plotting early in a run works.

    Args:
        rows: Metric records.
        x: Key for the horizontal axis, e.g. ``"epoch"``.
        ys: Keys to plot, e.g. ``["train_acc", "val_acc"]``.
        path: Output file, written atomically.
        title: Optional axes title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for key in ys:
        pts = []
        for row in rows:
            xv, yv = _number(row.get(x)), _number(row.get(key))
            if xv is not None and yv is not None:
                pts.append((xv, yv))
        series[key] = sorted(pts, key=lambda p: p[0])
    longest = max((len(p) for p in series.values()), default=0)
    fig = new_figure((7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for key, pts in series.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if longest <= 40 else None,
                    markersize=3.5, linewidth=1.6, label=key)
        else:
            ax.plot([], [], label=f"{key} (no data)")
    with_data = [k for k, p in series.items() if p]
    ax.set_xlabel(x)
    ax.set_ylabel(", ".join(with_data) if 0 < len(with_data) <= 3 else "value")
    ax.grid(True, alpha=0.3)
    if ys:
        ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------------
# Pareto fronts
# ----------------------------------------------------------------------------------------------------------
def use_log_scale(values: Sequence[float]) -> bool:
    """Whether a cost axis should be logarithmic: all values positive and spanning more than a decade."""
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > 10.0


def padded_limits(values: Sequence[float], margin: float = 0.06) -> tuple[float, float]:
    """Axis limits that hug ``values``: their range plus ``margin`` of it on each side.

    Equal values get a small range of their own (1 % of the value, at least 0.5), so the point is not on
    the edge and matplotlib does not warn about a singular range.
    """
    lo, hi = min(values), max(values)
    span = hi - lo
    pad = margin * span if span > 0 else max(0.01 * abs(hi), 0.5)
    return lo - pad, hi + pad


@dataclass(frozen=True)
class LabelPlacement:
    """Where one point label goes: centre offset from its point in display pixels, and whether it gets a
    leader line (it was pushed away from its point)."""

    dx: float
    dy: float
    leader: bool


# Search for point labels: rings of candidate spots around each point (gap between the marker's edge and the
# label box, in pixels), in 16 directions, upper right (the usual place for a scatter label) preferred.
_RADII = (2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0, 92.0, 116.0, 145.0, 180.0, 225.0)
_ANGLES = tuple(45.0 + 22.5 * k for k in range(16))
_LEADER_FROM = 12.0  # a label at least this far from its marker gets a leader line
_CLEARANCE = 2.0     # pixels kept free between two labels
# Costs of a spot. Overlapping a placed label or leaving the axes is forbidden (HARD); the soft costs rank
# the allowed spots.
_HARD = 1e4
_COVER = 40.0        # per marker (or the legend) a label covers
_LINE_PT = 3.0       # per sampled point of the front line under a label
_LEADER_PT = 6.0     # per sampled point of another label's leader line under a label
_CROSSING = 25.0     # per pair of crossing leader lines
_LEADER_OVER = 30.0  # per sampled point of a new leader line running over a placed label or a marker
_PER_PIXEL = 0.6     # per pixel of distance from the marker
_PER_DEGREE = 0.03   # per degree away from the upper right
_HAS_LEADER = 4.0    # a leader line at all


def _overlap(a: Box, b: Box) -> float:
    ox = min(a[2], b[2]) - max(a[0], b[0])
    oy = min(a[3], b[3]) - max(a[1], b[1])
    return ox * oy if ox > 0 and oy > 0 else 0.0


def _inside(pt: tuple[float, float], b: Box) -> bool:
    return b[0] <= pt[0] <= b[2] and b[1] <= pt[1] <= b[3]


def _segment_points(p: tuple[float, float], q: tuple[float, float], n: int = 12) -> list[tuple[float, float]]:
    return [(p[0] + (q[0] - p[0]) * t / (n - 1), p[1] + (q[1] - p[1]) * t / (n - 1)) for t in range(n)]


def _segments_cross(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float],
                    d: tuple[float, float]) -> bool:
    """Whether the segments ab and cd cross at a point inside both (touching ends do not count)."""
    def side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def _away_from(p: tuple[float, float], neighbours: Sequence[tuple[float, float]]) -> float:
    """Direction (degrees) from the centre of ``p``'s neighbours to ``p``; upper right (45) when alone."""
    mx = sum(q[0] for q in neighbours) / len(neighbours)
    my = sum(q[1] for q in neighbours) / len(neighbours)
    if math.hypot(p[0] - mx, p[1] - my) < 1.0:
        return 45.0
    return math.degrees(math.atan2(p[1] - my, p[0] - mx)) % 360.0


def _box_centre(p: tuple[float, float], w: float, h: float, gap: float, angle: float) -> tuple[float, float]:
    """Centre of a ``w`` x ``h`` box whose edge is ``gap`` away from ``p`` in the direction ``angle`` (deg)."""
    ux, uy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ux, uy = (0.0 if abs(ux) < 1e-9 else ux), (0.0 if abs(uy) < 1e-9 else uy)
    to_edge = min(w / 2 / abs(ux) if ux else math.inf, h / 2 / abs(uy) if uy else math.inf)
    return p[0] + ux * (gap + to_edge), p[1] + uy * (gap + to_edge)


def place_point_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                       bounds: Box, point_radius: float = 0.0, obstacles: Sequence[Box] = (),
                       lines: Sequence[tuple[float, float]] = ()) -> list[LabelPlacement]:
    """Place one label box per anchor point so that no two boxes overlap (a deterministic greedy search).

    Each label tries spots on rings of growing distance around its point, in 16 directions; the first
    labels take the spots next to their points and later ones are pushed out, with a leader line. A spot is
    forbidden when its box overlaps an already placed label or leaves ``bounds`` (it is only taken when no
    allowed spot exists at all). Allowed spots are ranked by soft costs: covering a marker or an obstacle
    such as the legend, covering the front line or another label's leader line, a leader line that crosses
    another one or runs over a label or marker, the distance from the point and the direction. Labels are
    placed in order of how crowded their point is, most crowded first, because they have the fewest free
    spots nearby.

    Args:
        anchors: Points in display pixels.
        sizes: Width and height of each label box in pixels.
        bounds: The area labels must stay inside, e.g. the axes.
        point_radius: Half the size of the anchors' markers: distances count from the marker's edge, and a
            label should not cover another anchor's marker.
        obstacles: Other boxes labels should not cover (other markers, the legend).
        lines: Points sampled along lines labels should not cover (the front polyline).

    Returns:
        One :class:`LabelPlacement` per anchor, in the order of ``anchors``.
    """
    n = len(anchors)
    near = [[b for b in anchors if abs(a[0] - b[0]) < 60 and abs(a[1] - b[1]) < 30] for a in anchors]
    reach = [len(nb) for nb in near]
    # A label prefers the upper right of its point; inside a tight cluster it prefers pointing out of it.
    tight = [[b for b in nb if math.dist(a, b) < 25.0] for a, nb in zip(anchors, near)]
    preferred = [_away_from(a, nb) if len(nb) >= 4 else 45.0 for a, nb in zip(anchors, tight)]
    todo = sorted(range(n), key=lambda i: (-reach[i], anchors[i][0], anchors[i][1]))
    markers = [(a[0] - point_radius, a[1] - point_radius, a[0] + point_radius, a[1] + point_radius)
               for a in anchors]
    placed: dict[int, Box] = {}
    leaders: list[tuple[tuple[float, float], tuple[float, float]]] = []  # (point, label centre)
    leader_pts: list[tuple[float, float]] = []
    result: dict[int, LabelPlacement] = {}
    for i in todo:
        p, (w, h) = anchors[i], sizes[i]
        avoid = list(obstacles) + markers[:i] + markers[i + 1:]
        best: tuple[float, Box, LabelPlacement] | None = None
        for ring, r in enumerate(_RADII):
            for angle in _ANGLES:
                cx, cy = _box_centre(p, w, h, point_radius + r, angle)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                padded = (box[0] - _CLEARANCE, box[1] - _CLEARANCE, box[2] + _CLEARANCE, box[3] + _CLEARANCE)
                clash = sum(_overlap(padded, b) for b in placed.values())
                outside = (max(0.0, bounds[0] - box[0]) + max(0.0, box[2] - bounds[2])
                           + max(0.0, bounds[1] - box[1]) + max(0.0, box[3] - bounds[3]))
                cost = _HARD + 10.0 * clash + 100.0 * outside if clash > 0 or outside > 0 else 0.0
                cost += sum(_COVER + _overlap(box, b) for b in avoid if _overlap(box, b) > 0)
                cost += _LINE_PT * sum(1 for q in lines if _inside(q, padded))
                cost += _LEADER_PT * sum(1 for q in leader_pts if _inside(q, padded))
                leader = r >= _LEADER_FROM
                if leader:
                    cost += _HAS_LEADER
                    cost += _CROSSING * sum(1 for a, b in leaders if _segments_cross(p, (cx, cy), a, b))
                    seg = _segment_points(p, (cx, cy))[2:-2]
                    cost += _LEADER_OVER * sum(1 for b in list(placed.values()) + avoid for q in seg
                                               if _inside(q, b))
                turn = abs(angle - preferred[i]) % 360.0
                cost += _PER_PIXEL * r + _PER_DEGREE * min(turn, 360.0 - turn)
                if best is None or cost < best[0]:
                    best = (cost, box, LabelPlacement(cx - p[0], cy - p[1], leader))
            if best is not None and best[0] < _PER_PIXEL * _RADII[min(ring + 1, len(_RADII) - 1)]:
                break  # every spot further out costs more than this one
        assert best is not None
        placed[i] = best[1]
        result[i] = best[2]
        if best[2].leader:
            centre = (p[0] + best[2].dx, p[1] + best[2].dy)
            leaders.append((p, centre))
            leader_pts.extend(_segment_points(p, centre))
    return [result[i] for i in range(n)]


def _pixel_box(center: tuple[float, float], half: float) -> Box:
    return (center[0] - half, center[1] - half, center[0] + half, center[1] + half)


def _label_front(fig: "Figure", ax: "Axes", front: Sequence[tuple[float, float, str]]) -> None:
    """Label each front point with its id, the labels placed by :func:`place_point_labels`.

    Placement works in display pixels, so the figure is laid out and drawn once first; the layout engine is
    then switched off and the legend pinned where "best" put it, so that nothing moves when the labels are
    added (the legend's "best" spot would otherwise dodge the new labels and land on another one).
    """
    import numpy as np

    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend()
    obstacles: list[Box] = []
    if legend is not None:
        lb = legend.get_window_extent(renderer)
        loc = ax.transAxes.inverted().transform((lb.x0, lb.y0))
        ax.legend(fontsize=9, loc=(float(loc[0]), float(loc[1])))
        obstacles.append((lb.x0, lb.y0, lb.x1, lb.y1))

    to_px = ax.transData.transform
    anchors = [tuple(float(v) for v in to_px((fx, fy))) for fx, fy, _ in front]
    ax_box = ax.get_window_extent(renderer)
    bounds = (ax_box.x0 + 2, ax_box.y0 + 2, ax_box.x1 - 2, ax_box.y1 - 2)
    marker_half = 0.5 * math.sqrt(46.0) * fig.dpi / 72.0  # the front markers (s=46 points²)
    for coll in ax.collections:  # the other candidates' markers
        offsets = coll.get_offsets()
        if len(offsets) and coll.get_label() == "candidates":
            half = 0.5 * math.sqrt(float(coll.get_sizes()[0])) * fig.dpi / 72.0
            obstacles += [_pixel_box((float(p[0]), float(p[1])), half) for p in to_px(np.asarray(offsets))]
    line_pts: list[tuple[float, float]] = []
    for a, b in zip(anchors, anchors[1:]):
        line_pts += _segment_points(a, b, max(2, int(math.dist(a, b) / 4)))  # type: ignore[arg-type]

    pad_px = 0.2 * POINT_LABEL_FONTSIZE * fig.dpi / 72.0  # the label box's padding
    sizes = []
    for _, _, pid in front:
        probe = ax.text(0, 0, pid, fontsize=POINT_LABEL_FONTSIZE)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((ext.width + 2 * pad_px, ext.height + 2 * pad_px))
    placements = place_point_labels(anchors, sizes, bounds, marker_half, obstacles, line_pts)  # type: ignore[arg-type]
    for (fx, fy, pid), pl in zip(front, placements):
        arrow = (dict(arrowstyle="-", color=LEADER_COLOR, linewidth=0.6, shrinkA=0, shrinkB=3) if pl.leader
                 else None)
        ax.annotate(pid, (fx, fy), xytext=(pl.dx, pl.dy), textcoords="offset pixels", ha="center",
                    va="center", fontsize=POINT_LABEL_FONTSIZE, zorder=6, arrowprops=arrow,
                    bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="#c8c8c8", linewidth=0.5,
                              alpha=0.9))


def pareto_figure(points: Sequence[Mapping[str, float]], x: str, y: str, front_ids: Iterable[int | str],
                  title: str | None = None) -> "Figure":
    """The figure of :func:`plot_pareto`, not yet written (for tests and for callers that add to it)."""
    wanted = {str(i) for i in front_ids}
    xs_all: list[float] = []
    ys_all: list[float] = []
    front: list[tuple[float, float, str]] = []
    for idx, p in enumerate(points):
        xv, yv = _number(p.get(x)), _number(p.get(y))
        if xv is None or yv is None:
            continue
        pid = str(p["id"]) if "id" in p else str(idx)
        if pid in wanted:
            front.append((xv, yv, pid))
        else:
            xs_all.append(xv)
            ys_all.append(yv)
    fig = new_figure((6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(xs_all, ys_all, s=18, color=CANDIDATE_COLOR, alpha=0.8, label="candidates", zorder=2)
    if front:
        front.sort(key=lambda t: (t[0], t[1]))
        ax.plot([t[0] for t in front], [t[1] for t in front], color=FRONT_COLOR, linewidth=1.5, zorder=3)
        ax.scatter([t[0] for t in front], [t[1] for t in front], s=46, color=FRONT_COLOR, edgecolor="black",
                   linewidth=0.6, label="Pareto front", zorder=4)
    every_x = xs_all + [t[0] for t in front]
    every_y = ys_all + [t[1] for t in front]
    if use_log_scale(every_x):
        ax.set_xscale("log")
    if every_y:
        ax.set_ylim(*padded_limits(every_y))
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    if front and len(front) <= MAX_FRONT_LABELS:
        _label_front(fig, ax, front)
    return fig


def plot_pareto(points: Sequence[Mapping[str, float]], x: str, y: str, front_ids: Iterable[int | str],
                path: str | Path, title: str | None = None) -> Path:
    """Scatter every candidate and highlight the non-dominated ones, joined in order of ``x``.

    The front is given, not recomputed, because only the caller knows which direction is better for each
    metric (fewer parameters, higher accuracy, lower latency, ...). For readability the ``x`` axis is
    logarithmic when the points span more than a decade, the ``y`` axis is zoomed to the points with a
    small margin, and the ids of up to 15 front points are written next to them, kept apart from each
    other (a label pushed away from its point is joined to it by a thin leader line).

    Args:
        points: Candidates with at least ``x`` and ``y``; points lacking either are skipped.
        x: Key for the horizontal axis, e.g. ``"params_m"``.
        y: Key for the vertical axis, e.g. ``"val_acc"``.
        front_ids: The non-dominated points: values of each point's ``"id"`` key when the points have one,
            else indices into ``points``.
        path: Output file, written atomically.
        title: Optional axes title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_figure(pareto_figure(points, x, y, front_ids, title), path)
