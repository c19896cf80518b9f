"""Genotypes as pure data: validation messages, JSON and classic-text round trips, the canonical hash, loading.

The hash tests follow nasbench's ``graph_util_test`` (random isomorphisms hash equal; a documented
counterexample of non-isomorphic cells that local statistics cannot tell apart hashes differently).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from nasforge.errors import GenotypeError
from nasforge.genotypes import (KNOWN_OPS, PUBLISHED, CellArch, Edge, Genotype, from_darts_pairs, from_darts_text,
                                load_genotype, published, published_names, save_genotype, to_darts_text)

PUBLISHED_NAMES = sorted(PUBLISHED)
SEARCH_OPS = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
              "dil_conv_5x5"]

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")

_PAIRS = "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]"


def _text(normal: str = _PAIRS, normal_concat: str = "[2]", reduce: str = _PAIRS, reduce_concat: str = "[2]",
          extra: str = "") -> str:
    return (f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce}, "
            f"reduce_concat={reduce_concat}{extra})")


def _cell(edges: list[tuple[int, int, str]], concat: tuple[int, ...], reduction: bool = False, **kw) -> CellArch:
    return CellArch(tuple(Edge(*e) for e in edges), concat, reduction=reduction, **kw)


def unshared_multi_op() -> Genotype:
    """Three unshared cells: several ops on one (src, dst) pair, a repeated edge, a 1-input cell, 3-input nodes."""
    return Genotype(cells=(
        _cell([(0, 2, "sep_conv_3x3"), (0, 2, "skip_connect"), (1, 2, "dil_conv_5x5"), (0, 3, "avg_pool_3x3"),
               (1, 3, "avg_pool_3x3"), (2, 3, "conv_1x1"), (2, 3, "conv_1x1")], (2, 3)),
        _cell([(0, 1, "conv_7x1_1x7"), (0, 2, "max_pool_5x5"), (1, 2, "sep_conv_7x7")], (1, 2), reduction=True,
              n_inputs=1),
        _cell([(1, 2, "none"), (0, 2, "conv_3x3"), (2, 3, "max_pool_7x7"), (1, 3, "avg_pool_5x5")], (3, 1, 2)),
    ), sharing="none")


# -- construction errors name the cell, the edge and the op ------------------------------------------------------

@pytest.mark.parametrize("edges, concat, kw, match", [
    ([(0, 2, "sep_conv_4x4")], (2,), {}, r"normal cell, edge 0->2: unknown op 'sep_conv_4x4'"),
    ([(0, 1, "skip_connect")], (1,), {}, r"normal cell, edge 0->1 \(skip_connect\): destination 1 is a cell input"),
    ([(0, 2, "skip_connect"), (3, 3, "sep_conv_3x3")], (2, 3), {}, r"edge 3->3 \(sep_conv_3x3\): source must be an "
                                                                     r"earlier node"),
    ([(0, 2, "skip_connect"), (4, 3, "sep_conv_3x3"), (1, 4, "max_pool_3x3")], (2, 3, 4), {},
     r"edge 4->3 \(sep_conv_3x3\): source must be an earlier node"),
    ([(0, 2, "skip_connect"), (-1, 3, "sep_conv_3x3")], (2, 3), {}, r"edge -1->3 .*source must be an earlier node"),
    ([(0, 2, "skip_connect"), (1, 4, "sep_conv_3x3")], (2, 4), {}, r"normal cell: intermediate node 3 has no incoming "
                                                                     r"edge"),
    ([(0, 2, "skip_connect")], (2, 5), {}, r"normal cell: concat node 5 does not exist \(nodes are 0..2\)"),
    ([(0, 2, "skip_connect")], (-1,), {}, r"concat node -1 does not exist"),
    ([(0, 2, "skip_connect")], (2, 2), {}, r"concat \[2, 2\] lists a node twice"),
    ([(0, 2, "skip_connect")], (), {}, r"normal cell: concat is empty"),
    ([(0, 2, "skip_connect")], ("2",), {}, r"concat entry '2' is not a node index"),
    ([(0, 2, "skip_connect")], (True,), {}, r"concat entry True is not a node index"),
    ([], (2,), {}, r"normal cell: has no edges"),
    ([(0, 2, "skip_connect")], (2,), {"n_inputs": 0}, r"n_inputs must be an integer >= 1, got 0"),
    ([(0, 2, "skip_connect")], (2,), {"n_inputs": "2"}, r"n_inputs must be an integer >= 1, got '2'"),
])
def test_cell_errors_name_the_problem(edges, concat, kw, match):
    with pytest.raises(GenotypeError, match=match):
        _cell(edges, concat, name="normal", **kw)


@pytest.mark.parametrize("src, dst, op, match", [
    ("0", 2, "skip_connect", r"edge 'skip_connect': node indices must be integers, got src='0', dst=2"),
    (0, 2.0, "skip_connect", r"edge 'skip_connect': node indices must be integers, got src=0, dst=2.0"),
    (True, 2, "skip_connect", r"node indices must be integers, got src=True"),
    (0, True, "skip_connect", r"node indices must be integers, got src=0, dst=True"),
    (0, 2, 3, r"edge 0->2: op must be a string, got 3"),
])
def test_edge_errors(src, dst, op, match):
    with pytest.raises(GenotypeError, match=match):
        Edge(src, dst, op)


def test_cell_accepts_plain_triples_and_reports_bad_ones():
    cell = CellArch(((0, 2, "skip_connect"), [1, 2, "sep_conv_3x3"]), (2,))
    assert cell.edges == (Edge(0, 2, "skip_connect"), Edge(1, 2, "sep_conv_3x3"))
    with pytest.raises(GenotypeError, match=r"reduce cell: edge \(0, 2\) must be \[src, dst, op\]"):
        CellArch(((0, 2),), (2,), name="reduce")


def test_cell_structure():
    g = PUBLISHED["DARTS_V2"]
    assert g.normal.n_nodes == 4 and list(g.normal.nodes) == [2, 3, 4, 5]
    assert [e.src for e in g.normal.inputs_of(5)] == [0, 2]
    assert g.normal.ops().count("sep_conv_3x3") == 5
    assert PUBLISHED["NASNet"].normal.n_nodes == 5


@pytest.mark.parametrize("cells, sharing, match", [
    (lambda n, r: (r,), "by_type", r"or only a normal cell"),
    (lambda n, r: (n, r, r), "by_type", r"a normal cell \(reduction false\) and then a reduction cell"),
    (lambda n, r: (r, n), "by_type", r"a normal cell \(reduction false\) and then a reduction cell"),
    (lambda n, r: (n, n), "by_type", r"a normal cell \(reduction false\) and then a reduction cell"),
    (lambda n, r: (n, r), "per_cell", r"sharing must be one of \('by_type', 'none'\), got 'per_cell'"),
    (lambda n, r: (), "none", r"genotype: has no cells"),
    (lambda n, r: (n, {"edges": []}), "none", r"cells must be CellArch objects, got dict"),
])
def test_genotype_layout_errors(cells, sharing, match):
    g = PUBLISHED["DARTS_V2"]
    with pytest.raises(GenotypeError, match=match):
        Genotype(cells=cells(g.normal, g.reduce), sharing=sharing)


def test_single_normal_cell_genotype_for_spaces_with_fixed_reductions():
    g = Genotype(cells=(PUBLISHED["DARTS_V2"].normal,), space="nb201")
    assert g.cell_for(3, reduction=False) is g.normal
    with pytest.raises(GenotypeError, match="no searched reduction cell"):
        g.cell_for(1, reduction=True)
    assert Genotype.from_json(g.to_json()) == g


def test_unshared_genotype_has_no_single_normal_cell():
    g = unshared_multi_op()
    assert g.num_cells_required == 3 and PUBLISHED["DARTS"].num_cells_required is None
    with pytest.raises(GenotypeError, match=r"sharing 'none'.*no single normal cell"):
        _ = g.normal
    assert g.cell_for(1, reduction=True) is g.cells[1]
    with pytest.raises(GenotypeError, match=r"cell 0 is a normal cell but the network puts a reduction cell there"):
        g.cell_for(0, reduction=True)
    with pytest.raises(GenotypeError, match=r"has 3 unshared cells but the network asks for cell 5"):
        g.cell_for(5, reduction=False)


def test_known_ops_cover_published_genotypes():
    for g in PUBLISHED.values():
        assert {e.op for c in g.cells for e in c.edges} <= KNOWN_OPS


# -- JSON -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("genotype", [*(PUBLISHED[n] for n in PUBLISHED_NAMES), unshared_multi_op()],
                         ids=[*PUBLISHED_NAMES, "unshared_multi_op"])
def test_json_round_trip(genotype):
    text = genotype.to_json()
    back = Genotype.from_json(text)
    assert back == genotype
    assert back.hash() == genotype.hash()
    assert [c.name for c in back.cells] == (["normal", "reduce"] if genotype.sharing == "by_type"
                                            else [f"cell {i}" for i in range(len(genotype.cells))])
    assert json.loads(text)["format"] == "nasforge.genotype/1"
    assert Genotype.from_json(genotype.to_json(indent=None)) == genotype
    assert load_genotype(str(genotype)) == genotype  # classic text where possible, else JSON


def test_json_accepts_edges_as_objects_and_a_stored_hash():
    data = PUBLISHED["DARTS_V2"].to_dict()
    data["cells"][0]["edges"] = [{"src": s, "dst": d, "op": o} for s, d, o in data["cells"][0]["edges"]]
    data["hash"] = "ignored"
    assert Genotype.from_dict(data) == PUBLISHED["DARTS_V2"]


def _json_with(mutate) -> str:
    data = PUBLISHED["DARTS_V2"].to_dict()
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize("text, match", [
    ("{not json", r"genotype JSON is not valid JSON \(Expecting property name .* at line 1\)"),
    ("[1, 2]", r"genotype JSON must be an object, got list"),
    (_json_with(lambda d: d.update(cell=[])), r"genotype JSON: unknown field\(s\) \['cell'\]"),
    (_json_with(lambda d: d.pop("cells")), r"genotype JSON: needs a 'cells' list"),
    (_json_with(lambda d: d.update(cells=5)), r"genotype JSON: needs a 'cells' list"),
    (_json_with(lambda d: d["cells"][0].update(edgez=[])), r"normal cell: unknown field\(s\) \['edgez'\]"),
    (_json_with(lambda d: d["cells"][1].pop("concat")), r"reduce cell: needs both 'edges' and 'concat'"),
    (_json_with(lambda d: d["cells"][0].update(edges=5)), r"normal cell: 'edges' and 'concat' must be lists"),
    (_json_with(lambda d: d["cells"][0].update(concat=2)), r"normal cell: 'edges' and 'concat' must be lists"),
    (_json_with(lambda d: d["cells"][0].update(reduction="false")), r"normal cell: 'reduction' must be true or false"),
    (_json_with(lambda d: d["cells"][0].update(n_inputs="x")), r"normal cell: n_inputs must be an integer"),
    (_json_with(lambda d: d["cells"].__setitem__(0, [1])), r"normal cell: expected an object with 'edges' and "
                                                            r"'concat', got list"),
    (_json_with(lambda d: d["cells"][0]["edges"].__setitem__(0, [0, 2])), r"normal cell: edge \[0, 2\] must be "
                                                                           r"\[src, dst, op\]"),
    (_json_with(lambda d: d["cells"][0]["edges"].__setitem__(0, {"src": 0, "op": "skip_connect"})),
     r"normal cell: edge .* lacks 'dst'; give src, dst and op"),
    (_json_with(lambda d: d["cells"][0]["edges"].__setitem__(0, {"src": 0.5, "dst": 2, "op": "skip_connect"})),
     r"node indices must be integers, got src=0.5"),
    (_json_with(lambda d: d["cells"][0]["edges"].__setitem__(0, [0, "2", "skip_connect"])),
     r"node indices must be integers, got src=0, dst='2'"),
    (_json_with(lambda d: d["cells"][1]["edges"].__setitem__(0, [0, 2, "conv_9x9"])),
     r"reduce cell, edge 0->2: unknown op 'conv_9x9'"),
    (_json_with(lambda d: d.update(sharing="shared")), r"sharing must be one of"),
])
def test_bad_json_raises_genotype_error(text, match):
    with pytest.raises(GenotypeError, match=match):
        Genotype.from_json(text)


# -- classic DARTS text -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in PUBLISHED_NAMES if PUBLISHED[n].space == "darts"])
def test_darts_text_round_trip(name):  # NAO genotypes print as NAO text (test_nao.py)
    g = PUBLISHED[name]
    text = to_darts_text(g)
    assert text.startswith("Genotype(normal=[")
    assert from_darts_text(text) == g
    assert str(g) == text


def test_darts_text_matches_the_released_format():
    assert from_darts_text(DARTS_V2_TEXT) == PUBLISHED["DARTS_V2"]
    assert to_darts_text(PUBLISHED["DARTS_V2"]) == DARTS_V2_TEXT


def test_darts_text_forms():
    g = PUBLISHED["DARTS_V2"]
    ranged = DARTS_V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)").replace(
        "reduce_concat=[2, 3, 4, 5]", "reduce_concat=range(2,6)")
    assert "range(2, 6)" in ranged and from_darts_text(ranged) == g
    as_tuples = ranged.replace("normal=[", "normal=(").replace("], normal_concat", "), normal_concat")
    assert "normal=((" in as_tuples and from_darts_text(as_tuples) == g
    as_lists = DARTS_V2_TEXT.replace("('", "['").replace("),", "],").replace(")]", "]]")
    assert "['sep_conv_3x3', 0]" in as_lists and from_darts_text(as_lists) == g
    positional = DARTS_V2_TEXT.replace("normal=", "").replace("normal_concat=", "")
    assert from_darts_text(positional) == g
    multiline = DARTS_V2_TEXT.replace(", ", ",\n    ").replace("Genotype(", "\n  Genotype(\n")
    assert from_darts_text(multiline) == g and load_genotype(multiline) == g


def test_darts_text_pairs_feed_nodes_two_by_two():
    g = from_darts_pairs([("skip_connect", 1), ("sep_conv_3x3", 0), ("max_pool_3x3", 2), ("dil_conv_5x5", 0)],
                         [2, 3], [("avg_pool_3x3", 0), ("avg_pool_3x3", 1)], [2])
    assert g.normal.edges == (Edge(1, 2, "skip_connect"), Edge(0, 2, "sep_conv_3x3"), Edge(2, 3, "max_pool_3x3"),
                              Edge(0, 3, "dil_conv_5x5"))
    assert g.reduce.reduction and not g.normal.reduction


@pytest.mark.parametrize("text, match", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", r"cannot parse genotype text \(.*\); expected Genotype\(normal=\[...\]"),
    ("Genotype(normal=[('sep_conv_3x3', 0)]]", r"cannot parse genotype text"),
    ("Genotype = 3", r"cannot parse genotype text"),
    ("Genotypes(normal=[])", r"genotype text must be a call Genotype\(normal=..."),
    ("dict(normal=[])", r"genotype text must be a call Genotype\("),
    (_text(normal="__import__('os').system('touch PWNED')"),
     r"genotype text: normal must be a literal list \(or range\(a, b\)\), got \"__import__\('os'\)"),
    (_text(normal_concat="eval('[2]')"), r"normal_concat must be a literal list"),
    (_text(reduce="[(op, 0), ('skip_connect', 1)]"), r"reduce must be a literal list"),
    (_text(reduce_concat="range(2, n)"), r"reduce_concat=range\(...\) needs integer arguments"),
    (_text(reduce_concat="range(2, 6.0)"), r"reduce_concat=range\(...\) needs integer arguments"),
    (_text(reduce_concat="range(0, 10000000000000)"), r"reduce_concat=range\(0, 10000000000000\) is not a range of "
                                                      r"node indices"),
    (_text(normal="[('sep_conv_3x3', 0)]"), r"normal cell: needs an even, non-zero number of \(op, input\) pairs "
                                            r"\(two per node\), got 1"),
    (_text(reduce="[]"), r"reduce cell: needs an even, non-zero number of \(op, input\) pairs"),
    (_text(normal="[('sep_conv_3x3', 0), (1, 'skip_connect')]"), r"normal cell, pair 1: expected \('op_name', "
                                                                 r"input_index\), got \(1, 'skip_connect'\)"),
    (_text(normal="[('sep_conv_3x3', 0), ('skip_connect', 1, 2)]"), r"normal cell, pair 1: expected"),
    (_text(normal="[('sep_conv_3x3', 0), 'skip_connect']"), r"normal cell, pair 1: expected"),
    (_text(normal="[('sep_conv_3x3', 0), ('skip_connect', 1.0)]"), r"normal cell, pair 1: expected"),
    (_text(normal="5"), r"normal cell: expected a list of \(op, input\) pairs, got 5"),
    (_text(normal="None"), r"normal cell: expected a list of \(op, input\) pairs, got None"),
    (_text(normal_concat="2"), r"normal cell: concat must be a list of node indices, got 2"),
    (_text(reduce="[('sep_conv_3x3', 0), ('skip_conect', 1)]"), r"reduce cell, edge 1->2: unknown op 'skip_conect'"),
    (_text(reduce="[('sep_conv_3x3', 0), ('skip_connect', 2)]"), r"reduce cell, edge 2->2 \(skip_connect\): source "
                                                                 r"must be an earlier node"),
    (_text(normal_concat="[2, 3]"), r"normal cell: concat node 3 does not exist"),
    (_text(extra=", normal_weights=[]"), r"genotype text: unknown field 'normal_weights'; expected normal, "
                                         r"normal_concat, reduce, reduce_concat"),
    (_text(extra=", normal=[]"), r"genotype text: field normal is given twice"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('sep_conv_3x3', 0), "
     "('sep_conv_3x3', 1)])", r"genotype text: missing field\(s\) reduce_concat"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])", r"missing field\(s\) normal_concat, reduce, "
                                                                     r"reduce_concat"),
    ("Genotype([], [2], [], [2], [])", r"genotype text: 5 positional values, expected at most 4"),
])
def test_malformed_darts_text(text, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GenotypeError, match=match) as info:
        from_darts_text(text)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()  # parsed with ast, never evaluated


def test_to_darts_text_needs_the_classic_layout():
    with pytest.raises(GenotypeError, match=r"only genotypes with shared normal/reduction cells"):
        to_darts_text(unshared_multi_op())
    three = Genotype.from_cells(_cell([(0, 2, "skip_connect"), (1, 2, "skip_connect"), (2, 2 + 1, "skip_connect")],
                                      (2, 3)), PUBLISHED["DARTS"].reduce)
    with pytest.raises(GenotypeError, match=r"needs two inputs per node; node 3 has 1"):
        to_darts_text(three)
    one_input = Genotype.from_cells(_cell([(0, 1, "skip_connect"), (0, 1, "max_pool_3x3")], (1,), n_inputs=1),
                                    PUBLISHED["DARTS"].reduce)
    with pytest.raises(GenotypeError, match=r"needs cells with two inputs"):
        to_darts_text(one_input)
    assert str(three).startswith("{")  # falls back to JSON
    assert load_genotype(str(three)) == three


# -- canonical hash ---------------------------------------------------------------------------------------------

def _random_cell(rng: random.Random, nodes: int, reduction: bool = False) -> CellArch:
    edges = []
    for j in range(nodes):
        dst = 2 + j
        for src in rng.sample(range(dst), min(dst, rng.choice([1, 2, 3]))):
            edges.append(Edge(src, dst, rng.choice(SEARCH_OPS)))
    return CellArch(tuple(edges), tuple(range(2, 2 + nodes)), reduction=reduction)


def _relabel(cell: CellArch, mapping: dict[int, int]) -> CellArch:
    edges = [Edge(mapping.get(e.src, e.src), mapping[e.dst], e.op) for e in cell.edges]
    return CellArch(tuple(edges), tuple(mapping.get(n, n) for n in cell.concat), cell.reduction, cell.n_inputs)


def _random_topological_relabeling(cell: CellArch, rng: random.Random) -> dict[int, int]:
    """A random order of the intermediate nodes that keeps every edge pointing forward (so src < dst holds)."""
    preds = {n: {e.src for e in cell.inputs_of(n) if e.src >= cell.n_inputs} for n in cell.nodes}
    order: list[int] = []
    while len(order) < cell.n_nodes:
        ready = [n for n in cell.nodes if n not in order and preds[n] <= set(order)]
        order.append(rng.choice(ready))
    return {old: cell.n_inputs + k for k, old in enumerate(order)}


def test_hash_ignores_edge_order():
    g = PUBLISHED["DARTS_V2"]
    shuffled = Genotype.from_cells(
        CellArch(tuple(reversed(g.normal.edges)), tuple(reversed(g.normal.concat))),
        CellArch(tuple(sorted(g.reduce.edges)), g.reduce.concat, reduction=True))
    assert shuffled != g  # a different listing ...
    assert shuffled.hash() == g.hash()  # ... of the same architecture
    assert len(g.hash()) == 16 and int(g.hash(), 16) >= 0


def test_hash_invariant_under_swapping_independent_nodes():
    # DARTS_V2 normal: nodes 3 and 4 both read only the cell inputs, so swapping their labels is an isomorphism
    g = PUBLISHED["DARTS_V2"]
    swapped = _relabel(g.normal, {2: 2, 3: 4, 4: 3, 5: 5})
    assert swapped.edges != g.normal.edges
    assert Genotype.from_cells(swapped, g.reduce).hash() == g.hash()


@pytest.mark.parametrize("seed", range(20))
def test_hash_invariant_under_random_isomorphisms(seed):
    rng = random.Random(seed)
    nodes = rng.choice([2, 3, 4, 5])
    normal, reduce = _random_cell(rng, nodes), _random_cell(rng, rng.choice([2, 4]), reduction=True)
    g = Genotype.from_cells(normal, reduce)
    mapping = _random_topological_relabeling(normal, rng)
    edges = list(_relabel(normal, mapping).edges)
    rng.shuffle(edges)
    iso = Genotype.from_cells(CellArch(tuple(edges), _relabel(normal, mapping).concat), reduce)
    assert iso.hash() == g.hash()


def test_hash_changes_with_an_op_an_input_or_the_layout():
    g = PUBLISHED["DARTS_V2"]
    base = g.hash()
    edges = list(g.normal.edges)
    edges[7] = Edge(2, 5, "dil_conv_5x5")  # dil_conv_3x3 -> dil_conv_5x5
    assert Genotype.from_cells(CellArch(tuple(edges), g.normal.concat), g.reduce).hash() != base
    swapped_inputs = _relabel(g.normal, {0: 1, 1: 0, **{n: n for n in g.normal.nodes}})
    assert Genotype.from_cells(swapped_inputs, g.reduce).hash() != base  # c_{k-2} and c_{k-1} are not interchangeable
    swapped_types = Genotype.from_cells(CellArch(g.reduce.edges, g.reduce.concat),
                                        CellArch(g.normal.edges, g.normal.concat, reduction=True))
    assert swapped_types.hash() != base
    assert Genotype.from_cells(g.normal, CellArch(g.reduce.edges, (2, 3), reduction=True)).hash() != base
    assert Genotype(cells=g.cells, space="other").hash() != base
    assert Genotype(cells=g.cells, sharing="none").hash() != base
    assert PUBLISHED["DARTS_V1"].hash() != base and PUBLISHED["DARTS"].hash() == base


def test_hash_counterexample_same_local_statistics():
    """Two valid DARTS cells that no per-node statistic separates, yet they are not isomorphic.

    Nodes 2 (= sep(c0) + sep(c1)) and 3 (= sep(c0) + skip(c1)) differ. In A the node reading node 2 takes
    sep(c0) and the node reading node 3 takes skip(c0); in B it is the other way round. Every node still has
    the same in-degree, out-degree, incoming op multiset by source kind (input 0, input 1, intermediate) and
    outgoing op multiset, and every op count matches, so a hash built from such statistics would collide.
    The canonical hash compares the cells up to relabeling, so it tells them apart.
    """
    common = [(0, 2, "sep_conv_3x3"), (1, 2, "sep_conv_3x3"), (0, 3, "sep_conv_3x3"), (1, 3, "skip_connect")]
    a = _cell(common + [(0, 4, "sep_conv_3x3"), (2, 4, "sep_conv_3x3"), (0, 5, "skip_connect"), (3, 5, "sep_conv_3x3")],
              (2, 3, 4, 5))
    b = _cell(common + [(0, 4, "skip_connect"), (2, 4, "sep_conv_3x3"), (0, 5, "sep_conv_3x3"), (3, 5, "sep_conv_3x3")],
              (2, 3, 4, 5))

    def local_stats(cell: CellArch) -> tuple:
        kind = lambda s: str(s) if s < cell.n_inputs else "node"  # noqa: E731
        per_node = sorted((tuple(sorted((kind(e.src), e.op) for e in cell.inputs_of(n))),
                           tuple(sorted(e.op for e in cell.edges if e.src == n))) for n in cell.nodes)
        per_input = [tuple(sorted(e.op for e in cell.edges if e.src == i)) for i in range(cell.n_inputs)]
        return tuple(per_node), tuple(per_input), tuple(sorted(cell.ops()))

    assert local_stats(a) == local_stats(b)
    reduce = PUBLISHED["DARTS"].reduce
    assert Genotype.from_cells(a, reduce).hash() != Genotype.from_cells(b, reduce).hash()
    # and each is invariant under its own isomorphism (swap nodes 4 and 5, which do not depend on each other)
    assert _relabel(a, {2: 2, 3: 3, 4: 5, 5: 4}).canonical() == a.canonical()


# -- loading and saving -----------------------------------------------------------------------------------------

def test_load_genotype_sources(tmp_path):
    g = PUBLISHED["DARTS_V2"]
    (tmp_path / "g.json").write_text(g.to_json())
    (tmp_path / "g.txt").write_text(DARTS_V2_TEXT + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "genotype.json").write_text(g.to_json())
    assert load_genotype(g) is g
    assert load_genotype(tmp_path / "g.json") == g
    assert load_genotype(str(tmp_path / "g.json")) == g
    assert load_genotype(tmp_path / "g.txt") == g
    assert load_genotype(run) == g
    assert load_genotype(str(run)) == g
    assert load_genotype("DARTS_V2") == g
    assert load_genotype("darts_v2") == g
    assert load_genotype("  Darts  ") == g
    assert load_genotype("pdarts") == PUBLISHED["PDARTS"]
    assert load_genotype(DARTS_V2_TEXT) == g
    assert load_genotype(g.to_json()) == g
    assert load_genotype(g.to_json(indent=None)) == g


def test_published_lookup():
    assert published_names() == sorted(PUBLISHED)
    assert {"DARTS", "DARTS_V1", "DARTS_V2", "PDARTS", "NASNet", "AmoebaNet"} <= set(published_names())
    assert published("nasnet") is PUBLISHED["NASNet"]
    with pytest.raises(GenotypeError, match=r"no published genotype named 'DARTS_V3'; known: AmoebaNet, DARTS"):
        published("DARTS_V3")


def _one_line_error(spec) -> str:
    with pytest.raises(GenotypeError) as info:
        load_genotype(spec)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_load_genotype_errors_are_one_line(tmp_path):
    assert "'DARTS_V3' is not a genotype file, a published name (AmoebaNet, DARTS" in _one_line_error("DARTS_V3")
    assert "is not a genotype file" in _one_line_error(tmp_path / "missing.json")
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    assert _one_line_error(empty) == f"{empty}: the file is empty; write a genotype as JSON or Genotype(...) text"
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello\nworld\n" * 1000)
    message = _one_line_error(garbage)
    assert message.startswith(f"{garbage}: not a genotype file (expected JSON or Genotype(...) text, found 'hello")
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    assert _one_line_error(binary).startswith(f"cannot read genotype file {binary}")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"cells": [')
    assert _one_line_error(bad_json).startswith(f"{bad_json}: genotype JSON is not valid JSON")
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text(_text(normal="[('sep_conv_3x3', 0)]"))
    assert _one_line_error(bad_text).startswith(f"{bad_text}: normal cell: needs an even, non-zero number")
    assert "is not a genotype file" in _one_line_error(tmp_path)  # a folder without genotype.json
    long_text = "x" * 5000  # not a path: the OS would say "File name too long"
    assert "'xxxx" in _one_line_error(long_text)
    assert "is not a genotype file" in _one_line_error("Darts V2\nsep_conv")


def test_save_genotype_writes_json_with_hash(tmp_path):
    g = unshared_multi_op()
    path = tmp_path / "new" / "folder" / "genotype.json"
    save_genotype(g, path)
    data = json.loads(path.read_text())
    assert data["hash"] == g.hash()
    assert data["sharing"] == "none" and data["format"] == "nasforge.genotype/1"
    assert load_genotype(path) == g
    assert load_genotype(path.parent) == g  # the run-folder form
    assert sorted(p.name for p in path.parent.iterdir()) == ["genotype.json"]  # no temporary file left behind


def test_save_genotype_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "genotype.json"
    save_genotype(PUBLISHED["DARTS_V1"], path)
    before = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_genotype(PUBLISHED["DARTS_V2"], path)
    assert path.read_text() == before  # the old file is intact ...
    assert [p.name for p in tmp_path.iterdir()] == ["genotype.json"]  # ... and the temporary file is gone
    assert load_genotype(path) == PUBLISHED["DARTS_V1"]


def test_genotypes_are_pure_data():
    """No torch (or numpy) in the genotype modules: they load in tools that do not train (STYLE §2(a) 6)."""
    import ast

    import nasforge.genotypes as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not [n for n in names if n.split(".")[0] in ("torch", "numpy")], path.name
