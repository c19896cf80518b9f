"""Cell diagrams: a small layered graph-drawing engine for one cell, and the figure of a whole genotype.

The look follows the DARTS paper figures (drawn with graphviz; nasforge does not depend on it): the cell
inputs on the left in green, intermediate nodes in blue, the output on the right in yellow, op names on the
arrows, dashed grey arrows for the concatenation. graphviz is not used because it is a system dependency and
because its labels collide on GOLD-NAS cells, which have several ops per node pair.

The layout is a layered ("Sugiyama") layout, split into steps that each do one thing and can be tested on
their own:

1. :func:`rank_nodes` - longest-path layers, so every arrow points right;
2. :func:`build_layered_graph` - groups of parallel ops, waypoints ("dummies") in every layer an arrow
   skips, box heights from the number of arrow ends, neighbour lists;
3. :func:`order_layers` - barycentre sweeps that reduce crossings (:func:`count_crossings`);
4. :func:`place_nodes` - vertical positions: every item pulled towards its neighbours, order and spacing
   kept (an isotonic fit, :func:`isotonic`);
5. :func:`layer_x` - horizontal positions: each gap wide enough for the labels crossing it;
6. :func:`route_edges` - one route per arrow through its waypoints, with ports spread over the box sides.

:func:`layout_cell` chains them into a :class:`CellLayout` (pure geometry in inches, positions growing
downwards). :func:`draw_cell` draws a layout: :func:`fit_cell_to_axes`, :func:`draw_boxes`,
:func:`draw_routes`, then :func:`place_labels` (a greedy search that slides each op label along its arrow
to a spot where it overlaps nothing) and :func:`draw_labels`. numpy and matplotlib are imported inside the
functions so that ``import nasforge`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from ..genotypes.core import CellArch, Genotype
from .style import (BOX_H, BOX_W, CONCAT_COLOR, DUMMY_GAP, FAN_GAP, INPUT_FILL, INPUT_GAP, LABEL_FONTSIZE,
                    LABEL_PAD, MARGIN, NODE_FILL, NODE_FONTSIZE, NODE_GAP, OUTPUT_FILL, PORT_STEP, new_figure,
                    op_color, save_figure)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    from matplotlib.axes import Axes

__all__ = ["CellLayout", "LayeredGraph", "Route", "build_layered_graph", "count_crossings", "draw_boxes",
           "draw_cell", "draw_genotype", "draw_labels", "draw_routes", "fit_cell_to_axes", "isotonic",
           "label_size", "layer_x", "layout_cell", "order_layers", "panel_size", "place_labels", "place_nodes",
           "rank_nodes", "route_edges", "route_path"]

#: A layout item: ``("n", node)`` for a box, ``("d", group, layer)`` for a waypoint of an arrow that skips
#: layers (a "dummy" node).
Item = Union[tuple[str, int], tuple[str, int, int]]
#: A group of parallel arrows: ``(src, dst, is_concat)``.
GroupKey = tuple[int, int, bool]
#: An axis-aligned rectangle ``(x0, y0, x1, y1)``.
Rect = tuple[float, float, float, float]
#: A cubic Bézier segment: start, two control points, end.
Segment = tuple[tuple[float, float], ...]


# ----------------------------------------------------------------------------------------------------------
# Layout (pure geometry in inches; positions grow downwards, the drawing flips them)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Route:
    """One arrow: an op edge (``op`` set) or a concatenation edge into the output (``op`` None)."""

    src: int
    dst: int
    op: str | None
    group: int
    offset: float                      # vertical offset of this arc within its fan of parallel arcs
    waypoints: list[tuple[float, float]] = field(default_factory=list)  # (x, pos) after the ports are known
    bulge: float = 0.0                 # fan offset of an arc that skips no layer (bends the single curve)


@dataclass
class CellLayout:
    """Where everything of one cell goes, in inches: box centres and sizes, arrow routes, the extent."""

    boxes: dict[int, tuple[float, float, float, float]]   # node -> (x centre, pos centre, width, height)
    routes: list[Route]
    width: float
    height: float
    output: int


@dataclass
class LayeredGraph:
    """A cell as a layered graph: boxes and waypoints per layer, their heights and their neighbours.

    ``chains[g]`` is the sequence of items an arrow of group ``g`` passes through (source box, one waypoint
    per skipped layer, target box); ``up``/``down`` list each item's neighbours in the previous/next layer,
    weighted by the number of parallel ops in the group.
    """

    n_inputs: int
    output: int
    rank: dict[int, int]
    n_layers: int
    groups: dict[GroupKey, list[str | None]]       # ops of each group (None for concatenation arrows)
    group_keys: list[GroupKey]
    chains: list[list[Item]]
    items_in: dict[int, list[Item]]                # items per layer, in their initial order
    height: dict[Item, float]
    up: dict[Item, list[tuple[Item, float]]]
    down: dict[Item, list[tuple[Item, float]]]
    n_into: dict[int, int]                         # number of arrows ending on each node
    label_w: dict[str, float]                      # width of each op's label
    label_h: float                                 # height of a label


def label_size(text: str, fontsize: float = LABEL_FONTSIZE) -> tuple[float, float]:
    """Width and height in inches of an op label with its bbox, measured without a renderer."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    w, h, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    pad = 2 * LABEL_PAD * fontsize
    return (w + pad) / 72.0, (max(h, 0.95 * fontsize) + pad) / 72.0


def isotonic(values: list[float]) -> list[float]:
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


def rank_nodes(cell: CellArch) -> dict[int, int]:
    """Layer of every node: longest path from the inputs (layer 0); the output gets a layer of its own.

    Longest paths make every arrow point right (``rank[src] < rank[dst]``), like graphviz ``rankdir=LR``.
    """
    n_in = cell.n_inputs
    out_node = n_in + cell.n_nodes
    rank: dict[int, int] = {i: 0 for i in range(n_in)}
    for node in cell.nodes:  # sources are always earlier nodes, so one pass in index order suffices
        rank[node] = 1 + max(rank[e.src] for e in cell.inputs_of(node))
    rank[out_node] = max(rank.values()) + 1
    return rank


def build_layered_graph(cell: CellArch, rank: dict[int, int]) -> LayeredGraph:
    """Group parallel ops, add a waypoint in each layer an arrow skips, size the boxes, link neighbours.

    Waypoints take part in ordering and spacing like small nodes, so long arrows go around boxes instead of
    through them; the waypoint of a group of ``k`` ops is ``k`` label heights tall, so that the fanned-out
    arcs (and their labels) have room. A box grows with the number of arrows that end on it, so the arrow
    ends stay apart.
    """
    n_in = cell.n_inputs
    out_node = n_in + cell.n_nodes
    n_layers = rank[out_node] + 1

    groups: dict[GroupKey, list[str | None]] = {}
    for e in cell.edges:
        groups.setdefault((e.src, e.dst, False), []).append(e.op)
    for c in cell.concat:
        groups.setdefault((c, out_node, True), []).append(None)
    group_keys = list(groups)
    label_w = {op: label_size(op)[0] for op in {e.op for e in cell.edges}}
    label_h = label_size("Xg")[1]

    chains: list[list[Item]] = []
    items_in: dict[int, list[Item]] = {L: [] for L in range(n_layers)}
    for node in list(range(n_in)) + list(cell.nodes) + [out_node]:
        items_in[rank[node]].append(("n", node))
    height: dict[Item, float] = {}
    for gi, (src, dst, is_cat) in enumerate(group_keys):
        chain: list[Item] = [("n", src)]
        for L in range(rank[src] + 1, rank[dst]):
            d = ("d", gi, L)
            items_in[L].append(d)
            chain.append(d)
            k = len(groups[(src, dst, is_cat)])
            height[d] = 0.06 if is_cat else k * label_h + (k - 1) * FAN_GAP
        chain.append(("n", dst))
        chains.append(chain)

    n_out: dict[int, int] = {}
    n_into: dict[int, int] = {}
    for (src, dst, _), ops in groups.items():
        n_out[src] = n_out.get(src, 0) + len(ops)
        n_into[dst] = n_into.get(dst, 0) + len(ops)
    for items in items_in.values():
        for it in items:
            if it[0] == "n":
                ports = max(n_out.get(it[1], 0), n_into.get(it[1], 0))
                height[it] = max(BOX_H, PORT_STEP * (ports + 1))

    up: dict[Item, list[tuple[Item, float]]] = {it: [] for its in items_in.values() for it in its}
    down: dict[Item, list[tuple[Item, float]]] = {it: [] for its in items_in.values() for it in its}
    for gi, chain in enumerate(chains):
        w = float(len(groups[group_keys[gi]]))
        for a, b in zip(chain, chain[1:]):
            down[a].append((b, w))
            up[b].append((a, w))
    return LayeredGraph(n_inputs=n_in, output=out_node, rank=rank, n_layers=n_layers, groups=groups,
                        group_keys=group_keys, chains=chains, items_in=items_in, height=height, up=up, down=down,
                        n_into=n_into, label_w=label_w, label_h=label_h)


def count_crossings(g: LayeredGraph, order: dict[int, list[Item]]) -> float:
    """Weighted number of crossing segment pairs between adjacent layers for the given item order."""
    total = 0.0
    for L in range(g.n_layers - 1):
        idx_a = {it: i for i, it in enumerate(order[L])}
        idx_b = {it: i for i, it in enumerate(order[L + 1])}
        segs = [(idx_a[a], idx_b[b], w) for a in order[L] for b, w in g.down[a]]
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                if (segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0:
                    total += segs[i][2] * segs[j][2]
    return total


def _barycentre(nbrs: list[tuple[Item, float]], idx: dict[Item, int], default: float) -> float:
    if not nbrs:
        return default
    return sum(idx[n] * w for n, w in nbrs) / sum(w for _, w in nbrs)


def order_layers(g: LayeredGraph) -> dict[int, list[Item]]:
    """Order the items of every layer to reduce crossings: barycentre sweeps, keeping the best order seen.

    Layer 0 (the cell inputs) keeps its order, so ``c_{k-2}`` stays above ``c_{k-1}``.
    """
    order = {L: list(items) for L, items in g.items_in.items()}
    for L in range(1, g.n_layers):  # initial down sweep
        idx = {it: i for i, it in enumerate(order[L - 1])}
        order[L].sort(key=lambda it: (_barycentre(g.up[it], idx, 0.0), it[0] == "d"))
    best, best_cross = {L: list(v) for L, v in order.items()}, count_crossings(g, order)
    for _ in range(6):
        for L in range(g.n_layers - 2, 0, -1):  # up sweep (layer 0 stays fixed)
            idx = {it: i for i, it in enumerate(order[L + 1])}
            cur = {it: i for i, it in enumerate(order[L])}
            order[L].sort(key=lambda it: _barycentre(g.down[it], idx, float(cur[it])))
        for L in range(1, g.n_layers):
            idx = {it: i for i, it in enumerate(order[L - 1])}
            cur = {it: i for i, it in enumerate(order[L])}
            order[L].sort(key=lambda it: _barycentre(g.up[it], idx, float(cur[it])))
        c = count_crossings(g, order)
        if c < best_cross:
            best, best_cross = {L: list(v) for L, v in order.items()}, c
    return best


def _stack_offsets(g: LayeredGraph, items: list[Item]) -> list[float]:
    """Minimum positions of ``items`` stacked in order from 0: half heights plus the gap each pair needs."""
    out = [0.0]
    for a, b in zip(items, items[1:]):
        if a[0] == "n" and b[0] == "n" and a[1] < g.n_inputs and b[1] < g.n_inputs:
            gap = INPUT_GAP  # the inputs fan out to everything: room for the labels near them
        elif a[0] == "n" and b[0] == "n":  # busy boxes get more room around them for the labels
            gap = NODE_GAP + 0.035 * max(0, g.n_into.get(a[1], 0) + g.n_into.get(b[1], 0) - 4)
        else:
            gap = DUMMY_GAP
        out.append(out[-1] + (g.height[a] + g.height[b]) / 2 + gap)
    return out


def place_nodes(g: LayeredGraph, order: dict[int, list[Item]]) -> dict[Item, float]:
    """Vertical centre of every item: each moves towards the mean of its neighbours, keeping order and gaps.

    Starts with every layer stacked and centred on 0, then sweeps down and up the layers; in each layer the
    positions are the least-squares fit to the neighbours' means under the stacking constraints (an
    isotonic regression on the positions minus the stacking offsets). Waypoints pull twice as hard, so
    long arrows run straight.
    """
    pos: dict[Item, float] = {}
    for L in range(g.n_layers):
        cum = _stack_offsets(g, order[L])
        for it, c in zip(order[L], cum):
            pos[it] = c - cum[-1] / 2
    sweep = list(range(g.n_layers)) + list(range(g.n_layers - 1, -1, -1))
    for _ in range(12):
        for L in sweep:
            items = order[L]
            desired = []
            for it in items:
                nbrs = g.up[it] + g.down[it]
                if nbrs:
                    wsum = sum(w * (2.0 if n[0] == "d" or it[0] == "d" else 1.0) for n, w in nbrs)
                    desired.append(sum(pos[n] * w * (2.0 if n[0] == "d" or it[0] == "d" else 1.0)
                                       for n, w in nbrs) / wsum)
                else:
                    desired.append(pos[it])
            cum = _stack_offsets(g, items)
            fitted = isotonic([d - c for d, c in zip(desired, cum)])
            for it, z, c in zip(items, fitted, cum):
                pos[it] = z + c
    return pos


def layer_x(g: LayeredGraph) -> list[float]:
    """x centre of every layer: each gap is wide enough for the widest op label whose arrow crosses it."""
    gap_w = []
    for L in range(g.n_layers - 1):
        widest = 0.0
        count = 0
        for key in g.group_keys:
            src, dst, is_cat = key
            if not is_cat and g.rank[src] <= L < g.rank[dst]:
                widest = max(widest, max(g.label_w[op] for op in g.groups[key] if op is not None))
                count += len(g.groups[key])
        extra = 0.16 * max(0, count - 3) ** 0.8  # room to stagger many labels converging in one gap
        gap_w.append(BOX_W + (widest + 0.8 + extra if widest else 0.75))
    xs = [0.0]
    for w in gap_w:
        xs.append(xs[-1] + w)
    return xs


def route_edges(g: LayeredGraph, boxes: dict[int, tuple[float, float, float, float]],
                dummy_pos: dict[Item, float], xs: list[float]) -> list[Route]:
    """One route per op and per concatenation arrow, through its group's waypoints.

    Parallel ops of one group fan out by a label height plus :data:`FAN_GAP` each. The arrows leaving
    (entering) a box are spread over its right (left) side in the vertical order of where they go to (come
    from), so they do not cross right at the box.
    """
    routes: list[Route] = []
    chain_of: list[list[Item]] = []
    step = g.label_h + FAN_GAP
    for gi, key in enumerate(g.group_keys):
        ops = g.groups[key]
        k = len(ops)
        for i, op in enumerate(ops):
            routes.append(Route(src=key[0], dst=key[1], op=op, group=gi, offset=(i - (k - 1) / 2) * step))
            chain_of.append(g.chains[gi])

    def item_pos(it: Item) -> float:
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
            spacing = min(PORT_STEP, (h - 0.12) / (k - 1)) if k > 1 else 0.0
            for i, (_, ri) in enumerate(reqs):
                ends[ri] = centre + (i - (k - 1) / 2) * spacing
    for ri, (r, chain) in enumerate(zip(routes, chain_of)):
        sx = boxes[r.src][0] + BOX_W / 2
        dx = boxes[r.dst][0] - BOX_W / 2
        pts = [(sx, src_end[ri])]
        for it in chain[1:-1]:
            pts.append((xs[it[2]], dummy_pos[it] + r.offset))  # type: ignore[misc]  # waypoints have a layer
        pts.append((dx, dst_end[ri]))
        r.waypoints = pts
        r.bulge = r.offset if len(chain) == 2 else 0.0
    return routes


def layout_cell(cell: CellArch) -> CellLayout:
    """Place the nodes and route the arrows of one cell (left to right, like graphviz ``rankdir=LR``).

    Chains :func:`rank_nodes`, :func:`build_layered_graph`, :func:`order_layers`, :func:`place_nodes`,
    :func:`layer_x` and :func:`route_edges`, then shifts everything so the top edge is at 0.
    """
    g = build_layered_graph(cell, rank_nodes(cell))
    order = order_layers(g)
    pos = place_nodes(g, order)
    xs = layer_x(g)
    top = min(pos[it] - g.height[it] / 2 for it in pos)
    bottom = max(pos[it] + g.height[it] / 2 for it in pos)
    boxes = {it[1]: (xs[g.rank[it[1]]], pos[it] - top, BOX_W, g.height[it]) for it in pos if it[0] == "n"}
    dummy_pos = {it: pos[it] - top for it in pos if it[0] == "d"}
    routes = route_edges(g, boxes, dummy_pos, xs)
    return CellLayout(boxes=boxes, routes=routes, width=xs[-1] + BOX_W, height=bottom - top, output=g.output)


def panel_size(lay: CellLayout) -> tuple[float, float]:
    """Width and height in inches that a cell needs at its natural size, margins included."""
    return lay.width + 2 * MARGIN, lay.height + 2 * MARGIN


# ----------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------
def node_label(node: int, cell: CellArch, output: int) -> str:
    """``c_{k-2}``, ``c_{k-1}`` for the inputs, ``c_{k}`` for the output, ``0, 1, ...`` for the rest."""
    if node < cell.n_inputs:
        back = cell.n_inputs - node
        return rf"$c_{{k-{back}}}$"
    if node == output:
        return r"$c_{k}$"
    return str(node - cell.n_inputs)


def route_path(r: Route) -> list[Segment]:
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


def sample_segments(segs: list[Segment], n_per: int = 60) -> "np.ndarray":
    """``n_per`` points on each Bézier segment, as one ``(n, 2)`` array."""
    import numpy as np

    t = np.linspace(0.0, 1.0, n_per)[:, None]
    parts = []
    for p0, c1, c2, p1 in segs:
        p0a, c1a, c2a, p1a = (np.asarray(p, dtype=float) for p in (p0, c1, c2, p1))
        parts.append((1 - t) ** 3 * p0a + 3 * (1 - t) ** 2 * t * c1a + 3 * (1 - t) * t ** 2 * c2a + t ** 3 * p1a)
    return np.concatenate(parts)


def fit_cell_to_axes(ax: "Axes", lay: CellLayout) -> float:
    """Set the limits of ``ax`` so the layout is centred at one scale for x and y; return data units per inch.

    The limits are computed here rather than left to ``adjustable="datalim"``, which would warn about fixed
    limits. The drawing is never enlarged beyond its natural size: fonts have a fixed size, so boxes would
    outgrow their labels.
    """
    try:
        root = ax.get_figure(root=True)  # matplotlib >= 3.10 (subfigures)
    except TypeError:  # pragma: no cover - older matplotlib
        root = ax.figure
    fig_w_in, fig_h_in = root.get_size_inches()
    pos = ax.get_position()
    box_w, box_h = max(pos.width * fig_w_in, 1e-3), max(pos.height * fig_h_in, 1e-3)
    cx0, cx1 = -BOX_W / 2 - MARGIN, lay.width - BOX_W / 2 + MARGIN
    cy0, cy1 = -lay.height - MARGIN, MARGIN
    inch_per_unit = min(box_w / (cx1 - cx0), box_h / (cy1 - cy0), 1.0)
    half_w, half_h = box_w / inch_per_unit / 2, box_h / inch_per_unit / 2
    mx, my = (cx0 + cx1) / 2, (cy0 + cy1) / 2
    ax.set_xlim(mx - half_w, mx + half_w)
    ax.set_ylim(my - half_h, my + half_h)
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    return 1.0 / inch_per_unit


def draw_boxes(ax: "Axes", cell: CellArch, lay: CellLayout) -> list[Rect]:
    """Draw the node boxes with their names; return their rectangles in data coordinates (y flipped up)."""
    from matplotlib.patches import FancyBboxPatch

    rects = []
    for node, (x, p, w, h) in lay.boxes.items():
        y = -p
        fill = INPUT_FILL if node < cell.n_inputs else OUTPUT_FILL if node == lay.output else NODE_FILL
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.07",
                                    facecolor=fill, edgecolor="#2f2f2f", linewidth=1.0, zorder=3))
        ax.text(x, y, node_label(node, cell, lay.output), ha="center", va="center", fontsize=NODE_FONTSIZE,
                zorder=4)
        rects.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    return rects


def draw_routes(ax: "Axes", lay: CellLayout) -> list["np.ndarray"]:
    """Draw every route as an arrow; return points sampled along each (data coordinates, y flipped up)."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    samples = []
    for r in lay.routes:
        segs = [tuple((px, -py) for px, py in seg) for seg in route_path(r)]
        verts = [segs[0][0]]
        for seg in segs:
            verts.extend(seg[1:])
        codes = [MplPath.MOVETO] + [MplPath.CURVE4] * (len(verts) - 1)
        is_cat = r.op is None
        color = CONCAT_COLOR if r.op is None else op_color(r.op)
        ax.add_patch(FancyArrowPatch(path=MplPath(verts, codes), arrowstyle="-|>,head_length=0.55,head_width=0.28",
                                     mutation_scale=10, color=color, linewidth=0.9 if is_cat else 1.3,
                                     linestyle=(0, (4, 3)) if is_cat else "-", shrinkA=0, shrinkB=0,
                                     zorder=1 if is_cat else 2))
        samples.append(sample_segments(segs))
    return samples


def _overlap_areas(rects: "np.ndarray", box: Rect) -> "np.ndarray":
    """Overlap areas of many (x0, y0, x1, y1) rectangles with one box."""
    import numpy as np

    if len(rects) == 0:
        return np.zeros(0)
    ox = np.clip(np.minimum(rects[:, 2], box[2]) - np.maximum(rects[:, 0], box[0]), 0, None)
    oy = np.clip(np.minimum(rects[:, 3], box[3]) - np.maximum(rects[:, 1], box[1]), 0, None)
    return ox * oy


def _label_candidates(pts: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """41 label centres evenly spaced along 10-90 % of an arrow's length, and how far each is from the middle."""
    import numpy as np

    seglen = np.hypot(*np.diff(pts, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seglen)])
    frac = arc / arc[-1] if arc[-1] > 0 else np.linspace(0, 1, len(arc))
    want = np.linspace(0.1, 0.9, 41)
    idx = np.searchsorted(frac, want).clip(0, len(pts) - 1)
    return pts[idx], np.abs(want - 0.5)


def place_labels(lay: CellLayout, samples: list["np.ndarray"], node_rects: list[Rect],
                 scale: float) -> dict[int, Rect]:
    """Where the label of every op route goes: route index -> label rectangle (data coordinates, y up).

    Each label slides along its own arrow; a spot costs a lot when it covers another label or a box, a
    little per point of a foreign arrow it covers (op arrows more than dashed concatenation arrows, since
    covering an op arrow hides which op it is) and a little for being far from the middle. Crowded arrows
    (into busy nodes) are placed first, since they have the fewest good spots, then every label is re-placed
    three times given all the others.

    Args:
        lay: The layout; only routes with an ``op`` get a label.
        samples: Points along each route, as returned by :func:`draw_routes`.
        node_rects: Box rectangles, as returned by :func:`draw_boxes`.
        scale: Data units per inch of the final figure (labels have a fixed size in inches).
    """
    import numpy as np

    op_routes = [i for i, r in enumerate(lay.routes) if r.op is not None]
    sizes = {i: tuple(s * scale for s in label_size(lay.routes[i].op)) for i in op_routes}  # type: ignore[arg-type]
    pad = 0.05 * scale  # keep labels a little away from the boxes, where the arrow heads are
    nodes_arr = np.asarray(node_rects, dtype=float).reshape(-1, 4) + np.array([-pad, -pad, pad, pad])
    all_pts = np.concatenate(samples) if samples else np.zeros((0, 2))
    owner = np.concatenate([np.full(len(s), i) for i, s in enumerate(samples)]) if samples else np.zeros(0)
    point_w = np.concatenate([np.full(len(s), 0.1 if r.op is not None else 0.03)
                              for r, s in zip(lay.routes, samples)]) if samples else np.zeros(0)
    cands: dict[int, np.ndarray] = {}
    prefs: dict[int, np.ndarray] = {}
    for i in op_routes:
        cands[i], prefs[i] = _label_candidates(samples[i])

    margin = 0.03 * scale   # clearance from other labels and boxes
    fmargin = 0.03 * scale  # extra clearance from other arrows
    placed: dict[int, Rect] = {}

    def place(i: int) -> None:
        w, h = sizes[i]
        area = w * h
        others = np.asarray([b for j, b in placed.items() if j != i], dtype=float).reshape(-1, 4)
        foreign = all_pts[owner != i]
        foreign_w = point_w[owner != i]
        best_cost, best_box = math.inf, None
        for (cx, cy), pref in zip(cands[i], prefs[i]):
            box = (cx - w / 2 - margin, cy - h / 2 - margin, cx + w / 2 + margin, cy + h / 2 + margin)
            covered = (_overlap_areas(others, box).sum() + _overlap_areas(nodes_arr, box).sum()) / area
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

    crowd = {i: sum(1 for r in lay.routes if r.dst == lay.routes[i].dst) for i in op_routes}
    for i in sorted(op_routes, key=lambda i: -crowd[i]):
        place(i)
    for _ in range(3):
        for i in op_routes:
            place(i)
    return {i: placed[i] for i in op_routes}


def draw_labels(ax: "Axes", lay: CellLayout, placed: dict[int, Rect]) -> None:
    """Write each op name, in its op's colour and a white rounded box, centred in its placed rectangle."""
    for i, (x0, y0, x1, y1) in placed.items():
        op = lay.routes[i].op
        assert op is not None
        color = op_color(op)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, op, ha="center", va="center_baseline",
                fontsize=LABEL_FONTSIZE, color=color, zorder=5,
                bbox=dict(boxstyle=f"round,pad={LABEL_PAD}", facecolor="white", edgecolor=color, linewidth=0.6,
                          alpha=0.95))


def draw_cell(ax: "Axes", cell: CellArch, title: str) -> None:
    """Draw one cell as a left-to-right DAG on ``ax``, in the style of the DARTS paper figures.

    Inputs ``c_{k-2}``, ``c_{k-1}`` are green boxes on the left, intermediate nodes ``0, 1, ...`` blue boxes,
    the output ``c_{k}`` a yellow box on the right. Every op edge is an arrow in the op's colour
    (:data:`~nasforge.viz.OP_COLORS`) carrying the op name; several ops between the same two nodes are
    separate arcs with separate labels. Dashed grey arrows show which nodes the output concatenates. Labels
    are placed by a small search along each arrow so they avoid each other and the boxes, which keeps
    GOLD-NAS cells (many ops per node pair, nodes with one to five inputs) readable.

    The drawing keeps its aspect ratio and is centred in the axes; :func:`draw_genotype` sizes its axes to
    the layout so that labels get exactly the room the layout reserved. On a much smaller axes the fonts
    stay the same size and labels may crowd.

    Args:
        ax: Axes to draw on; its limits, aspect and axis visibility are set here.
        cell: The cell to draw.
        title: Axes title, e.g. ``"normal cell"``.
    """
    lay = layout_cell(cell)
    scale = fit_cell_to_axes(ax, lay)
    ax.set_title(title, fontsize=12, pad=4)
    node_rects = draw_boxes(ax, cell, lay)
    samples = draw_routes(ax, lay)
    draw_labels(ax, lay, place_labels(lay, samples, node_rects, scale))


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
    sizes = [panel_size(layout_cell(c)) for c in cells]
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
    fig = new_figure((fig_w, fig_h))
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
    return save_figure(fig, path)
