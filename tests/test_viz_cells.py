"""The steps of the cell layout, each on its own: ranks, ordering, placement, widths, routes, labels."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nasforge.genotypes import CellArch, Edge, published
from nasforge.viz import cells
from nasforge.viz.style import BOX_W, DUMMY_GAP, FAN_GAP

from test_viz import CELLS

E = Edge
IDS = [f"{c.name}-{len(c.edges)}edges-{i}" for i, c in enumerate(CELLS)]


def _rects_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _box_rect(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x, p, w, h = box
    return x - w / 2, p - h / 2, x + w / 2, p + h / 2


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_ranks_follow_the_dag_order(cell: CellArch) -> None:
    rank = cells.rank_nodes(cell)
    out = cell.n_inputs + cell.n_nodes
    assert all(rank[i] == 0 for i in range(cell.n_inputs))
    for e in cell.edges:
        assert rank[e.src] < rank[e.dst], e  # every arrow points right
    for node in cell.nodes:  # longest path: as far left as the DAG allows, no further
        assert rank[node] == 1 + max(rank[e.src] for e in cell.inputs_of(node))
    assert rank[out] == max(rank[n] for n in cell.nodes) + 1


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_layered_graph_has_a_waypoint_in_every_skipped_layer(cell: CellArch) -> None:
    g = cells.build_layered_graph(cell, cells.rank_nodes(cell))
    assert sum(len(v) for v in g.groups.values()) == len(cell.edges) + len(cell.concat)
    for (src, dst, _), chain in zip(g.group_keys, g.chains):
        assert chain[0] == ("n", src) and chain[-1] == ("n", dst)
        layers = [g.rank[it[1]] if it[0] == "n" else it[2] for it in chain]
        assert layers == list(range(g.rank[src], g.rank[dst] + 1))  # one item per layer, none skipped
        for it in chain:
            layer = g.rank[it[1]] if it[0] == "n" else it[2]
            assert it in g.items_in[layer]
    for it, h in g.height.items():  # every box is tall enough for the arrow ends on it
        if it[0] == "n":
            ends = max(g.n_into.get(it[1], 0), sum(len(o) for k, o in g.groups.items() if k[0] == it[1]))
            assert h >= 0.075 * (ends + 1) - 1e-9


def test_count_crossings_on_a_hand_made_order() -> None:
    cell = CellArch(edges=(E(0, 2, "sep_conv_3x3"), E(1, 3, "skip_connect"), E(0, 3, "max_pool_3x3"),
                           E(1, 2, "avg_pool_3x3")), concat=(2, 3), name="x")
    g = cells.build_layered_graph(cell, cells.rank_nodes(cell))
    straight = {0: [("n", 0), ("n", 1)], 1: [("n", 2), ("n", 3)], 2: [("n", 4)]}
    swapped = {0: [("n", 0), ("n", 1)], 1: [("n", 3), ("n", 2)], 2: [("n", 4)]}
    # 0->2, 0->3, 1->2, 1->3: one crossing (0->3 with 1->2) whatever the order of 2 and 3.
    assert cells.count_crossings(g, straight) == 1.0
    assert cells.count_crossings(g, swapped) == 1.0
    cell2 = CellArch(edges=(E(0, 2, "sep_conv_3x3"), E(1, 2, "skip_connect"), E(0, 3, "max_pool_3x3"),
                            E(1, 3, "avg_pool_3x3"), E(1, 4, "sep_conv_3x3"), E(2, 4, "skip_connect"),
                            E(0, 5, "sep_conv_3x3"), E(3, 5, "skip_connect")), concat=(4, 5), name="y")
    g2 = cells.build_layered_graph(cell2, cells.rank_nodes(cell2))
    best = cells.order_layers(g2)
    assert cells.count_crossings(g2, best) <= cells.count_crossings(g2, g2.items_in)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_order_layers_is_a_permutation_that_keeps_the_inputs_and_never_adds_crossings(cell: CellArch) -> None:
    g = cells.build_layered_graph(cell, cells.rank_nodes(cell))
    order = cells.order_layers(g)
    assert order[0] == [("n", i) for i in range(cell.n_inputs)]  # c_{k-2} stays above c_{k-1}
    for layer, items in g.items_in.items():
        assert sorted(order[layer]) == sorted(items)
    assert cells.count_crossings(g, order) <= cells.count_crossings(g, g.items_in)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_place_nodes_keeps_order_and_gaps(cell: CellArch) -> None:
    g = cells.build_layered_graph(cell, cells.rank_nodes(cell))
    order = cells.order_layers(g)
    pos = cells.place_nodes(g, order)
    for items in order.values():
        for a, b in zip(items, items[1:]):
            assert pos[b] - pos[a] >= (g.height[a] + g.height[b]) / 2 + DUMMY_GAP - 1e-9


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_no_two_nodes_overlap(cell: CellArch) -> None:
    lay = cells.layout_cell(cell)
    assert len(lay.boxes) == cell.n_inputs + cell.n_nodes + 1
    rects = {n: _box_rect(b) for n, b in lay.boxes.items()}
    for (m, a), (n, b) in itertools.combinations(rects.items(), 2):
        assert not _rects_overlap(a, b), f"nodes {m} and {n} overlap"
    for a in rects.values():  # everything inside the extent the figure is sized for
        assert a[0] >= -BOX_W / 2 - 1e-9 and a[2] <= lay.width - BOX_W / 2 + 1e-9
        assert a[1] >= -1e-9 and a[3] <= lay.height + 1e-9


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_layer_gaps_fit_the_widest_label_crossing_them(cell: CellArch) -> None:
    g = cells.build_layered_graph(cell, cells.rank_nodes(cell))
    xs = cells.layer_x(g)
    assert len(xs) == g.n_layers
    for layer in range(g.n_layers - 1):
        crossing = [op for e in cell.edges if g.rank[e.src] <= layer < g.rank[e.dst] for op in [e.op]]
        room = xs[layer + 1] - xs[layer] - BOX_W
        assert room > max((cells.label_size(op)[0] for op in crossing), default=0.0)


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_every_edge_gets_a_route_from_its_source_to_its_target(cell: CellArch) -> None:
    lay = cells.layout_cell(cell)
    out = cell.n_inputs + cell.n_nodes
    want = Counter([(e.src, e.dst, e.op) for e in cell.edges] + [(c, out, None) for c in cell.concat])
    assert Counter((r.src, r.dst, r.op) for r in lay.routes) == want
    for r in lay.routes:
        (sx, sy), (dx, dy) = r.waypoints[0], r.waypoints[-1]
        s_rect, d_rect = _box_rect(lay.boxes[r.src]), _box_rect(lay.boxes[r.dst])
        assert sx == pytest.approx(s_rect[2]) and s_rect[1] < sy < s_rect[3]  # leaves the right side
        assert dx == pytest.approx(d_rect[0]) and d_rect[1] < dy < d_rect[3]  # enters the left side
        xs = [x for x, _ in r.waypoints]
        assert all(a < b for a, b in zip(xs, xs[1:]))  # always rightwards
        assert len(cells.route_path(r)) == len(r.waypoints) - 1


def test_parallel_ops_fan_out_by_a_label_height() -> None:
    cell = CELLS[-1]  # three ops on 1 -> 3, two on 3 -> 4 and on 4 -> 5
    lay = cells.layout_cell(cell)
    step = cells.label_size("Xg")[1] + FAN_GAP
    for key in {(r.src, r.dst) for r in lay.routes if r.op is not None}:
        offsets = sorted(r.offset for r in lay.routes if (r.src, r.dst) == key and r.op is not None)
        assert all(b - a == pytest.approx(step) for a, b in zip(offsets, offsets[1:]))
        assert sum(offsets) == pytest.approx(0.0)  # centred on the group's waypoints


def test_isotonic_is_the_least_squares_non_decreasing_fit() -> None:
    assert cells.isotonic([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert cells.isotonic([3.0, 1.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    assert cells.isotonic([1.0, 3.0, 2.0, 4.0]) == pytest.approx([1.0, 2.5, 2.5, 4.0])
    rng = np.random.default_rng(0)
    v = list(rng.normal(size=30))
    fit = cells.isotonic(v)
    assert all(a <= b + 1e-12 for a, b in zip(fit, fit[1:]))
    assert sum(fit) == pytest.approx(sum(v))  # pooled means keep the total


@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_place_labels_keeps_labels_apart_and_on_their_arrow(cell: CellArch) -> None:
    lay = cells.layout_cell(cell)
    w, h = cells.panel_size(lay)
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    scale = cells.fit_cell_to_axes(ax, lay)
    assert scale == pytest.approx(1.0)  # the panel has the natural size: one data unit is one inch
    node_rects = cells.draw_boxes(ax, cell, lay)
    samples = cells.draw_routes(ax, lay)
    placed = cells.place_labels(lay, samples, node_rects, scale)
    assert sorted(placed) == [i for i, r in enumerate(lay.routes) if r.op is not None]
    for (i, a), (j, b) in itertools.combinations(placed.items(), 2):
        assert not _rects_overlap(a, b), f"labels {lay.routes[i].op} and {lay.routes[j].op} overlap"
    for i, rect in placed.items():
        assert not any(_rects_overlap(rect, n) for n in node_rects), f"{lay.routes[i].op} covers a node"
        centre = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2])
        assert np.min(np.hypot(*(samples[i] - centre).T)) < 1e-9  # the label sits on its own arrow
        lw, lh = cells.label_size(lay.routes[i].op)  # type: ignore[arg-type]
        assert rect[2] - rect[0] == pytest.approx(lw) and rect[3] - rect[1] == pytest.approx(lh)


def test_node_labels() -> None:
    cell = published("DARTS_V2").normal
    out = cell.n_inputs + cell.n_nodes
    assert [cells.node_label(n, cell, out) for n in range(out + 1)] == [
        r"$c_{k-2}$", r"$c_{k-1}$", "0", "1", "2", "3", r"$c_{k}$"]
