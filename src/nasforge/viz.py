"""Figures for reports: cell diagrams, architecture-weight heat maps, training curves and Pareto fronts.

Everything renders through ``matplotlib.figure.Figure`` with an explicit ``FigureCanvasAgg`` — never the
``pyplot`` global state — so drawing works headless (servers, CI, worker threads) and never opens a window or
leaks figures into pyplot's registry. matplotlib and numpy are imported inside the functions so that
``import nasforge`` stays fast for commands that never draw.

Cell diagrams follow the look of the DARTS paper (which used graphviz; nasforge does not depend on it): the
cell inputs on the left in green, intermediate nodes in blue, the output on the right in yellow, op names on
the arrows, dashed grey arrows for the concatenation. The layout is a small layered ("Sugiyama") layout:
longest-path layers, dummy waypoints for edges that skip layers, barycentre ordering to reduce crossings,
and a greedy search that slides each op label along its arrow to the spot where it overlaps nothing.

Every file is written atomically (temporary file in the same folder, then ``os.replace``), so a crash or a
concurrent reader never sees half a PNG.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ._io import atomic_write_bytes
from .genotypes.core import CellArch, Genotype

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["OP_COLORS", "op_color", "draw_cell", "draw_genotype", "draw_weights_heatmap", "plot_curves",
           "plot_pareto"]

DPI = 120

#: Fixed colour per op name, so one op looks the same in every figure of a report.
OP_COLORS: dict[str, str] = {
    "sep_conv_3x3": "#1f77b4",
    "sep_conv_5x5": "#17a2b8",
    "sep_conv_7x7": "#0b4f8a",
    "dil_conv_3x3": "#7b4fb8",
    "dil_conv_5x5": "#c2489a",
    "max_pool_3x3": "#d62728",
    "max_pool_5x5": "#a31a1b",
    "max_pool_7x7": "#7a1213",
    "avg_pool_3x3": "#e07b00",
    "avg_pool_5x5": "#a86200",
    "skip_connect": "#2a9d2a",
    "conv_7x1_1x7": "#8c564b",
    "conv_1x1": "#5b6b00",
    "conv_3x3": "#3d5a80",
    "none": "#8c8c8c",
}
# Ops registered later (register_op_name) get a stable colour from this list, chosen by a hash of the name.
_FALLBACK_COLORS = ("#6a3d9a", "#b15928", "#1b7837", "#c51b7d", "#01665e", "#8e0152", "#4d4d4d", "#2166ac")

_INPUT_FILL = "#b4eeb4"    # graphviz "darkseagreen2", as in the DARTS figures
_NODE_FILL = "#add8e6"     # "lightblue"
_OUTPUT_FILL = "#eee8aa"   # "palegoldenrod"
_CONCAT_COLOR = "#8f8f8f"

# Layout sizes, in inches (draw_genotype sizes its figures so that one layout unit is one inch).
_BOX_W = 0.66
_BOX_H = 0.40
_PORT_STEP = 0.075       # vertical distance between the ends of arrows meeting one box
_NODE_GAP = 0.42         # vertical gap between two boxes of one layer
_INPUT_GAP = 0.75        # vertical gap between the cell inputs
_DUMMY_GAP = 0.2         # vertical gap next to a waypoint of an edge that skips a layer
_FAN_GAP = 0.12          # vertical gap between the parallel arcs of several ops on one (src, dst)
_LABEL_FONTSIZE = 7.0
_LABEL_PAD = 0.25        # label bbox padding, in units of the font size
_NODE_FONTSIZE = 11.0
_MARGIN = 0.22


def op_color(op: str) -> str:
    """The colour of ``op`` in every figure: fixed for known ops, hash-stable for others.

    A hash of the name (not Python's randomised ``hash``) keeps a custom op's colour the same across runs,
    so figures from different runs can be compared side by side.
    """
    if op in OP_COLORS:
        return OP_COLORS[op]
    digest = int(hashlib.sha256(op.encode()).hexdigest(), 16)
    return _FALLBACK_COLORS[digest % len(_FALLBACK_COLORS)]


# ----------------------------------------------------------------------------------------------------------
# Cell layout (pure geometry; positions grow downwards, the drawing flips them)
# ----------------------------------------------------------------------------------------------------------
# A layout item: ("n", node) for a box, ("d", group, layer) for a waypoint of an edge that skips layers.
_Item = tuple


@dataclass
class _Route:
    """One arrow: an op edge (``op`` set) or a concatenation edge into the output (``op`` None)."""

    src: int
    dst: int
    op: str | None
    group: int
    offset: float                      # vertical offset of this arc within its fan of parallel arcs
    waypoints: list[tuple[float, float]] = field(default_factory=list)  # (x, pos) after the ports are known
    bulge: float = 0.0                 # fan offset of an arc that skips no layer (bends the single curve)


@dataclass
class _CellLayout:
    boxes: dict[int, tuple[float, float, float, float]]   # node -> (x centre, pos centre, width, height)
    routes: list[_Route]
    width: float
    height: float
    output: int


def _label_size(text: str, fontsize: float = _LABEL_FONTSIZE) -> tuple[float, float]:
    """Width and height in inches of an op label with its bbox, measured without a renderer."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    w, h, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    pad = 2 * _LABEL_PAD * fontsize
    return (w + pad) / 72.0, (max(h, 0.95 * fontsize) + pad) / 72.0


def _isotonic(values: list[float]) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    blocks: list[list[float]] = []
    for v in values:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    out: list[float] = []
    for s, c in blocks:
        out.extend([s / c] * int(c))
    return out


def _layout_cell(cell: CellArch) -> _CellLayout:
    """Place the nodes and route the arrows of one cell (left to right, like graphviz ``rankdir=LR``).

    Layers are longest paths from the inputs, so every arrow points right. An arrow that skips layers gets a
    waypoint in each layer it crosses; the waypoints take part in ordering and spacing like small nodes, so
    long arrows go around boxes instead of through them. Several ops on one (src, dst) share waypoints but
    fan out by one label height each, so their labels never sit on top of each other.
    """
    n_in = cell.n_inputs
    out_node = n_in + cell.n_nodes
    layer: dict[int, int] = {i: 0 for i in range(n_in)}
    for node in cell.nodes:  # sources are always earlier nodes, so one pass in index order suffices
        layer[node] = 1 + max(layer[e.src] for e in cell.inputs_of(node))
    layer[out_node] = max(layer.values()) + 1
    n_layers = layer[out_node] + 1

    # Groups of parallel edges: (src, dst, is_concat) -> ops (None for the concatenation arrows).
    groups: dict[tuple[int, int, bool], list[str | None]] = {}
    for e in cell.edges:
        groups.setdefault((e.src, e.dst, False), []).append(e.op)
    for c in cell.concat:
        groups.setdefault((c, out_node, True), []).append(None)
    group_keys = list(groups)
    lab_w = {op: _label_size(op)[0] for op in {e.op for e in cell.edges}}
    lab_h = _label_size("Xg")[1]

    # Items per layer: ("n", node) or ("d", group index, layer).
    chains: list[list[_Item]] = []
    items_in: dict[int, list[_Item]] = {L: [] for L in range(n_layers)}
    for node in list(range(n_in)) + list(cell.nodes) + [out_node]:
        items_in[layer[node]].append(("n", node))
    height: dict[_Item, float] = {}
    for gi, (src, dst, is_cat) in enumerate(group_keys):
        chain: list[_Item] = [("n", src)]
        for L in range(layer[src] + 1, layer[dst]):
            d = ("d", gi, L)
            items_in[L].append(d)
            chain.append(d)
            k = len(groups[(src, dst, is_cat)])
            height[d] = 0.06 if is_cat else k * lab_h + (k - 1) * _FAN_GAP
        chain.append(("n", dst))
        chains.append(chain)

    # Box heights grow with the number of arrows that end on them, so the arrow ends stay apart.
    n_out: dict[int, int] = {}
    n_into: dict[int, int] = {}
    for (src, dst, _), ops in groups.items():
        n_out[src] = n_out.get(src, 0) + len(ops)
        n_into[dst] = n_into.get(dst, 0) + len(ops)
    for L, items in items_in.items():
        for it in items:
            if it[0] == "n":
                ports = max(n_out.get(it[1], 0), n_into.get(it[1], 0))
                height[it] = max(_BOX_H, _PORT_STEP * (ports + 1))

    # Neighbours in adjacent layers, weighted by the number of edges in the group.
    up: dict[_Item, list[tuple[_Item, float]]] = {it: [] for its in items_in.values() for it in its}
    down: dict[_Item, list[tuple[_Item, float]]] = {it: [] for its in items_in.values() for it in its}
    for gi, chain in enumerate(chains):
        w = float(len(groups[group_keys[gi]]))
        for a, b in zip(chain, chain[1:]):
            down[a].append((b, w))
            up[b].append((a, w))

    # Ordering: barycentre sweeps; the inputs keep their order (c_{k-2} above c_{k-1}), keep the best seen.
    def crossings(order: dict[int, list[_Item]]) -> float:
        total = 0.0
        for L in range(n_layers - 1):
            idx_a = {it: i for i, it in enumerate(order[L])}
            idx_b = {it: i for i, it in enumerate(order[L + 1])}
            segs = [(idx_a[a], idx_b[b], w) for a in order[L] for b, w in down[a]]
            for i in range(len(segs)):
                for j in range(i + 1, len(segs)):
                    if (segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0:
                        total += segs[i][2] * segs[j][2]
        return total

    def bary(it: _Item, nbrs: list[tuple[_Item, float]], idx: dict[_Item, int], default: float) -> float:
        if not nbrs:
            return default
        return sum(idx[n] * w for n, w in nbrs) / sum(w for _, w in nbrs)

    order = {L: list(items) for L, items in items_in.items()}
    for L in range(1, n_layers):  # initial down sweep
        idx = {it: i for i, it in enumerate(order[L - 1])}
        order[L].sort(key=lambda it: (bary(it, up[it], idx, 0.0), it[0] == "d"))
    best, best_cross = {L: list(v) for L, v in order.items()}, crossings(order)
    for _ in range(6):
        for L in range(n_layers - 2, 0, -1):  # up sweep (layer 0 stays fixed)
            idx = {it: i for i, it in enumerate(order[L + 1])}
            cur = {it: i for i, it in enumerate(order[L])}
            order[L].sort(key=lambda it: bary(it, down[it], idx, float(cur[it])))
        for L in range(1, n_layers):
            idx = {it: i for i, it in enumerate(order[L - 1])}
            cur = {it: i for i, it in enumerate(order[L])}
            order[L].sort(key=lambda it: bary(it, up[it], idx, float(cur[it])))
        c = crossings(order)
        if c < best_cross:
            best, best_cross = {L: list(v) for L, v in order.items()}, c
    order = best

    # Vertical coordinates: each item moves towards the mean of its neighbours, keeping order and spacing.
    def seps(items: list[_Item]) -> list[float]:
        out = [0.0]
        for a, b in zip(items, items[1:]):
            if a[0] == "n" and b[0] == "n" and a[1] < n_in and b[1] < n_in:
                gap = _INPUT_GAP  # the inputs fan out to everything: room for the labels near them
            elif a[0] == "n" and b[0] == "n":  # busy boxes get more room around them for the labels
                gap = _NODE_GAP + 0.035 * max(0, n_into.get(a[1], 0) + n_into.get(b[1], 0) - 4)
            else:
                gap = _DUMMY_GAP
            out.append(out[-1] + (height[a] + height[b]) / 2 + gap)
        return out

    pos: dict[_Item, float] = {}
    for L in range(n_layers):
        cum = seps(order[L])
        for it, c in zip(order[L], cum):
            pos[it] = c - cum[-1] / 2
    sweep = list(range(n_layers)) + list(range(n_layers - 1, -1, -1))
    for _ in range(12):
        for L in sweep:
            items = order[L]
            desired = []
            for it in items:
                nbrs = up[it] + down[it]
                if nbrs:
                    wsum = sum(w * (2.0 if n[0] == "d" or it[0] == "d" else 1.0) for n, w in nbrs)
                    desired.append(sum(pos[n] * w * (2.0 if n[0] == "d" or it[0] == "d" else 1.0)
                                       for n, w in nbrs) / wsum)
                else:
                    desired.append(pos[it])
            cum = seps(items)
            fitted = _isotonic([d - c for d, c in zip(desired, cum)])
            for it, z, c in zip(items, fitted, cum):
                pos[it] = z + c

    # Horizontal coordinates: each gap between layers is wide enough for the widest label crossing it.
    gap_w = []
    for L in range(n_layers - 1):
        widest = 0.0
        count = 0
        for gi, chain in enumerate(chains):
            src, dst, is_cat = group_keys[gi]
            if not is_cat and layer[src] <= L < layer[dst]:
                widest = max(widest, max(lab_w[op] for op in groups[group_keys[gi]] if op is not None))
                count += len(groups[group_keys[gi]])
        extra = 0.16 * max(0, count - 3) ** 0.8  # room to stagger many labels converging in one gap
        gap_w.append(_BOX_W + (widest + 0.8 + extra if widest else 0.75))
    xs = [0.0]
    for g in gap_w:
        xs.append(xs[-1] + g)

    top = min(pos[it] - height[it] / 2 for it in pos)
    bottom = max(pos[it] + height[it] / 2 for it in pos)
    boxes = {it[1]: (xs[layer[it[1]]], pos[it] - top, _BOX_W, height[it]) for it in pos if it[0] == "n"}
    dummy_pos = {it: pos[it] - top for it in pos if it[0] == "d"}

    # Routes, then ports: the arrows leaving (entering) a box are spread over its right (left) side in the
    # vertical order of where they go to (come from), so they do not cross right at the box.
    routes: list[_Route] = []
    chain_of: list[list[_Item]] = []
    for gi, key in enumerate(group_keys):
        ops = groups[key]
        k = len(ops)
        step = lab_h + _FAN_GAP
        for i, op in enumerate(ops):
            routes.append(_Route(src=key[0], dst=key[1], op=op, group=gi, offset=(i - (k - 1) / 2) * step))
            chain_of.append(chains[gi])

    def item_pos(it: _Item) -> float:
        return boxes[it[1]][1] if it[0] == "n" else dummy_pos[it]

    out_ports: dict[int, list[tuple[tuple[float, float], int]]] = {}
    in_ports: dict[int, list[tuple[tuple[float, float], int]]] = {}
    for ri, (r, chain) in enumerate(zip(routes, chain_of)):
        out_ports.setdefault(r.src, []).append(((item_pos(chain[1]), r.offset), ri))
        in_ports.setdefault(r.dst, []).append(((item_pos(chain[-2]), r.offset), ri))
    src_end: dict[int, float] = {}
    dst_end: dict[int, float] = {}
    for ports, ends in ((out_ports, src_end), (in_ports, dst_end)):
        for node, reqs in ports.items():
            reqs.sort()
            _, centre, _, h = boxes[node]
            k = len(reqs)
            spacing = min(_PORT_STEP, (h - 0.12) / (k - 1)) if k > 1 else 0.0
            for i, (_, ri) in enumerate(reqs):
                ends[ri] = centre + (i - (k - 1) / 2) * spacing
    for ri, (r, chain) in enumerate(zip(routes, chain_of)):
        sx = boxes[r.src][0] + _BOX_W / 2
        dx = boxes[r.dst][0] - _BOX_W / 2
        pts = [(sx, src_end[ri])]
        for it in chain[1:-1]:
            pts.append((xs[it[2]], dummy_pos[it] + r.offset))
        pts.append((dx, dst_end[ri]))
        r.waypoints = pts
        r.bulge = r.offset if len(chain) == 2 else 0.0

    return _CellLayout(boxes=boxes, routes=routes, width=xs[-1] + _BOX_W, height=bottom - top, output=out_node)


def _node_label(node: int, cell: CellArch, output: int) -> str:
    if node < cell.n_inputs:
        back = cell.n_inputs - node
        return rf"$c_{{k-{back}}}$"
    if node == output:
        return r"$c_{k}$"
    return str(node - cell.n_inputs)


def _route_path(r: _Route) -> list[tuple[tuple[float, float], ...]]:
    """Cubic Bézier segments through the waypoints, horizontal at every waypoint (graphviz-like splines).

    An arc that skips no layer but shares its (src, dst) with other ops bends by its fan offset: moving both
    control points by 4/3 of the offset moves the curve's midpoint by exactly the offset.
    """
    segs = []
    pts = r.waypoints
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        half = (x1 - x0) / 2
        b = 4.0 / 3.0 * r.bulge
        segs.append(((x0, y0), (x0 + half, y0 + b), (x1 - half, y1 + b), (x1, y1)))
    return segs


def _sample_segments(segs: list[tuple[tuple[float, float], ...]], n_per: int = 60) -> "np.ndarray":
    import numpy as np

    t = np.linspace(0.0, 1.0, n_per)[:, None]
    parts = []
    for p0, c1, c2, p1 in segs:
        p0a, c1a, c2a, p1a = (np.asarray(p, dtype=float) for p in (p0, c1, c2, p1))
        parts.append((1 - t) ** 3 * p0a + 3 * (1 - t) ** 2 * t * c1a + 3 * (1 - t) * t ** 2 * c2a + t ** 3 * p1a)
    return np.concatenate(parts)


def draw_cell(ax: "Axes", cell: CellArch, title: str) -> None:
    """Draw one cell as a left-to-right DAG on ``ax``, in the style of the DARTS paper figures.

    Inputs ``c_{k-2}``, ``c_{k-1}`` are green boxes on the left, intermediate nodes ``0, 1, ...`` blue boxes,
    the output ``c_{k}`` a yellow box on the right. Every op edge is an arrow in the op's colour
    (:data:`OP_COLORS`) carrying the op name; several ops between the same two nodes are separate arcs with
    separate labels. Dashed grey arrows show which nodes the output concatenates. Labels are placed by a
    small search along each arrow so they avoid each other and the boxes, which keeps GOLD-NAS cells (many
    ops per node pair, nodes with one to five inputs) readable.

    The drawing keeps its aspect ratio and is centred in the axes; :func:`draw_genotype` sizes its axes to
    the layout so that labels get exactly the room the layout reserved. On a much smaller axes the fonts
    stay the same size and labels may crowd.

    Args:
        ax: Axes to draw on; its limits, aspect and axis visibility are set here.
        cell: The cell to draw.
        title: Axes title, e.g. ``"normal cell"``.
    """
    import numpy as np
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    lay = _layout_cell(cell)
    # Fit the layout into the axes box with one scale for x and y (a circle stays a circle), centred. The
    # limits are computed here rather than left to adjustable="datalim", which would warn about fixed limits.
    try:
        root = ax.get_figure(root=True)  # matplotlib >= 3.10 (subfigures)
    except TypeError:  # pragma: no cover - older matplotlib
        root = ax.figure
    fig_w_in, fig_h_in = root.get_size_inches()
    pos = ax.get_position()
    box_w, box_h = max(pos.width * fig_w_in, 1e-3), max(pos.height * fig_h_in, 1e-3)
    cx0, cx1 = -_BOX_W / 2 - _MARGIN, lay.width - _BOX_W / 2 + _MARGIN
    cy0, cy1 = -lay.height - _MARGIN, _MARGIN
    # Never enlarge beyond the natural size: fonts have a fixed size, so boxes would outgrow their labels.
    inch_per_unit = min(box_w / (cx1 - cx0), box_h / (cy1 - cy0), 1.0)
    half_w, half_h = box_w / inch_per_unit / 2, box_h / inch_per_unit / 2
    mx, my = (cx0 + cx1) / 2, (cy0 + cy1) / 2
    ax.set_xlim(mx - half_w, mx + half_w)
    ax.set_ylim(my - half_h, my + half_h)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    ax.set_title(title, fontsize=12, pad=4)
    scale = 1.0 / inch_per_unit  # data units per inch of the final figure

    # Boxes.
    node_rects = []
    for node, (x, p, w, h) in lay.boxes.items():
        y = -p
        fill = _INPUT_FILL if node < cell.n_inputs else _OUTPUT_FILL if node == lay.output else _NODE_FILL
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.07",
                                    facecolor=fill, edgecolor="#2f2f2f", linewidth=1.0, zorder=3))
        ax.text(x, y, _node_label(node, cell, lay.output), ha="center", va="center", fontsize=_NODE_FONTSIZE,
                zorder=4)
        node_rects.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))

    # Arrows.
    samples: list[np.ndarray] = []
    for r in lay.routes:
        segs = [tuple((px, -py) for px, py in seg) for seg in _route_path(r)]
        verts = [segs[0][0]]
        for seg in segs:
            verts.extend(seg[1:])
        codes = [MplPath.MOVETO] + [MplPath.CURVE4] * (len(verts) - 1)
        is_cat = r.op is None
        color = _CONCAT_COLOR if is_cat else op_color(r.op)
        ax.add_patch(FancyArrowPatch(path=MplPath(verts, codes), arrowstyle="-|>,head_length=0.55,head_width=0.28",
                                     mutation_scale=10, color=color, linewidth=0.9 if is_cat else 1.3,
                                     linestyle=(0, (4, 3)) if is_cat else "-", shrinkA=0, shrinkB=0,
                                     zorder=1 if is_cat else 2))
        samples.append(_sample_segments(segs))

    # Labels: greedy placement along each arrow, then a few passes that re-place each label given the rest.
    op_routes = [i for i, r in enumerate(lay.routes) if r.op is not None]
    sizes = {i: tuple(s * scale for s in _label_size(lay.routes[i].op)) for i in op_routes}
    pad = 0.05 * scale  # keep labels a little away from the boxes, where the arrow heads are
    nodes_arr = np.asarray(node_rects, dtype=float).reshape(-1, 4) + np.array([-pad, -pad, pad, pad])
    all_pts = np.concatenate(samples) if samples else np.zeros((0, 2))
    owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(samples)]) if samples else np.zeros(0)
    # Covering an op arrow hides which op it is; covering a dashed concatenation arrow matters less.
    point_w = np.concatenate([np.full(len(s), 0.1 if r.op is not None else 0.03)
                              for r, s in zip(lay.routes, samples)]) if samples else np.zeros(0)
    cands: dict[int, np.ndarray] = {}
    prefs: dict[int, np.ndarray] = {}
    for i in op_routes:
        pts = samples[i]
        seglen = np.hypot(*np.diff(pts, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(seglen)])
        frac = arc / arc[-1] if arc[-1] > 0 else np.linspace(0, 1, len(arc))
        want = np.linspace(0.1, 0.9, 41)
        idx = np.searchsorted(frac, want).clip(0, len(pts) - 1)
        cands[i] = pts[idx]
        prefs[i] = np.abs(want - 0.5)

    def overlap(rects: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Overlap areas of many (x0, y0, x1, y1) rectangles with one box."""
        if len(rects) == 0:
            return np.zeros(0)
        ox = np.clip(np.minimum(rects[:, 2], box[2]) - np.maximum(rects[:, 0], box[0]), 0, None)
        oy = np.clip(np.minimum(rects[:, 3], box[3]) - np.maximum(rects[:, 1], box[1]), 0, None)
        return ox * oy

    margin = 0.03 * scale   # clearance from other labels and boxes
    fmargin = 0.03 * scale  # extra clearance from other arrows
    placed: dict[int, tuple[float, float, float, float]] = {}

    def place(i: int) -> None:
        w, h = sizes[i]
        area = w * h
        others = np.asarray([b for j, b in placed.items() if j != i], dtype=float).reshape(-1, 4)
        foreign = all_pts[owner != i]
        foreign_w = point_w[owner != i]
        best_cost, best_box = math.inf, None
        for (cx, cy), pref in zip(cands[i], prefs[i]):
            box = (cx - w / 2 - margin, cy - h / 2 - margin, cx + w / 2 + margin, cy + h / 2 + margin)
            covered = (overlap(others, box).sum() + overlap(nodes_arr, box).sum()) / area
            cost = 30.0 * covered + (10.0 if covered > 0 else 0.0)  # any overlap is worse than crossing arrows
            if len(foreign):
                inside = ((foreign[:, 0] > box[0] - fmargin) & (foreign[:, 0] < box[2] + fmargin)
                          & (foreign[:, 1] > box[1] - fmargin) & (foreign[:, 1] < box[3] + fmargin))
                cost += float(foreign_w[inside].sum())
            cost += 1.5 * pref
            if cost < best_cost:
                best_cost, best_box = cost, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        assert best_box is not None
        placed[i] = best_box

    # Crowded arrows first: arcs in fans and arrows into busy nodes have the fewest good spots.
    crowd = {i: sum(1 for r in lay.routes if r.dst == lay.routes[i].dst) for i in op_routes}
    for i in sorted(op_routes, key=lambda i: -crowd[i]):
        place(i)
    for _ in range(3):
        for i in op_routes:
            place(i)
    for i in op_routes:
        x0, y0, x1, y1 = placed[i]
        color = op_color(lay.routes[i].op)  # type: ignore[arg-type]
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, lay.routes[i].op, ha="center", va="center_baseline",
                fontsize=_LABEL_FONTSIZE, color=color, zorder=5,
                bbox=dict(boxstyle=f"round,pad={_LABEL_PAD}", facecolor="white", edgecolor=color, linewidth=0.6,
                          alpha=0.95))


def _panel_size(lay: _CellLayout) -> tuple[float, float]:
    return lay.width + 2 * _MARGIN, lay.height + 2 * _MARGIN


def _new_figure(figsize: tuple[float, float], **kwargs: Any) -> "Figure":
    """A figure bound to an Agg canvas, outside pyplot's registry (thread-safe use, no windows, no leaks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: "Figure", path: str | Path, **kwargs: Any) -> Path:
    """Render ``fig`` and write it atomically; the format follows the suffix (PNG when unknown or absent)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in fig.canvas.get_supported_filetypes():
        fmt = "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, facecolor="white", **kwargs)
    atomic_write_bytes(path, buf.getvalue())
    # The temporary file is created private (0600); give the figure the mode a plain open() would have, so
    # a report folder stays readable by the group / a web server as the user's umask intends.
    os.chmod(path, 0o666 & ~_umask())
    return path


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` to query is racy across threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def draw_genotype(genotype: Genotype, path: str | Path, title: str | None = None) -> Path:
    """Draw every cell of ``genotype`` into one PNG and return its path.

    Shared genotypes (``sharing="by_type"``) show the normal and the reduction cell side by side; unshared
    ones (``sharing="none"``, GOLD-NAS) show a grid of all cells titled ``cell i`` / ``cell i (reduction)`` in
    network order, because there every position may differ. The figure is sized from the cell layouts, so
    labels keep a constant, readable size however large the cells are.

    Args:
        genotype: The architecture to draw.
        path: Output file (parent folders are created). Written atomically.
        title: Optional figure title, e.g. the method and the genotype hash.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    cells = list(genotype.cells)
    sizes = [_panel_size(_layout_cell(c)) for c in cells]
    title_h = 0.42
    sup_h = 0.55 if title else 0.0
    hgap = 0.35

    def grid(ncols: int) -> tuple[list[float], list[float]]:
        if genotype.sharing == "by_type":
            col_w = [w for w, _ in sizes]
        else:
            col_w = [max(w for w, _ in sizes)] * ncols
        nrows = math.ceil(len(cells) / ncols)
        row_h = [max(sizes[i][1] for i in range(r * ncols, min(len(cells), (r + 1) * ncols))) + title_h
                 for r in range(nrows)]
        return col_w, row_h

    if genotype.sharing == "by_type":
        titles = ["normal cell", "reduction cell"]
        ncols = 2
    else:
        titles = [f"cell {i} (reduction)" if c.reduction else f"cell {i}" for i, c in enumerate(cells)]

        def badness(n: int) -> float:  # a grid close to a 16:10 page
            col_w, row_h = grid(n)
            return abs(math.log((sum(col_w) + hgap * (n + 1)) / (sum(row_h) + sup_h) / 1.6))

        ncols = min(range(1, min(len(cells), 4) + 1), key=badness)
    col_w, row_h = grid(ncols)
    fig_w = sum(col_w) + hgap * (ncols + 1)
    fig_h = sum(row_h) + sup_h + 0.15
    fig = _new_figure((fig_w, fig_h))
    if title:
        fig.suptitle(title, fontsize=14, y=1 - 0.12 / fig_h, va="top")
    for i, cell in enumerate(cells):
        # Every panel of a row gets the row's full height, so the titles line up; the drawing keeps its
        # aspect and is centred in the panel.
        r, c = divmod(i, ncols)
        w, h = col_w[c], row_h[r] - title_h
        left = hgap * (c + 1) + sum(col_w[:c])
        bottom = fig_h - sup_h - sum(row_h[: r + 1])
        ax = fig.add_axes((left / fig_w, bottom / fig_h, w / fig_w, h / fig_h))
        draw_cell(ax, cell, titles[i])
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------
# Heat maps, curves, Pareto fronts
# ----------------------------------------------------------------------------------------------------------
def _default_edge_labels(n_rows: int, n_inputs: int = 2) -> list[str]:
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
            lab = _default_edge_labels(a.shape[0])
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
    fig = _new_figure((fig_w, fig_h), layout="constrained")
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
    return _save(fig, path)


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
    fig = _new_figure((7.0, 4.2), layout="constrained")
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
    return _save(fig, path)


def plot_pareto(points: Sequence[Mapping[str, float]], x: str, y: str, front_ids: Iterable[int | str],
                path: str | Path, title: str | None = None) -> Path:
    """Scatter every candidate and highlight the non-dominated ones, joined in order of ``x``.

    The front is given, not recomputed, because only the caller knows which direction is better for each
    metric (fewer parameters, higher accuracy, lower latency, ...).

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
    fig = _new_figure((6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(xs_all, ys_all, s=18, color="#9aa5b1", alpha=0.8, label="candidates", zorder=2)
    if front:
        front.sort(key=lambda t: (t[0], t[1]))
        ax.plot([t[0] for t in front], [t[1] for t in front], color="#d62728", linewidth=1.5, zorder=3)
        ax.scatter([t[0] for t in front], [t[1] for t in front], s=46, color="#d62728", edgecolor="black",
                   linewidth=0.6, label="Pareto front", zorder=4)
        if len(front) <= 15:
            for fx, fy, pid in front:
                ax.annotate(pid, (fx, fy), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return _save(fig, path)
