"""NAS-Bench-201 architecture strings ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (Dong & Yang, ICLR 2020).

An NB201 cell has one input (node 0) and three intermediate nodes 1, 2, 3; node ``j`` sums one op from every
earlier node, so there are six edges, and the cell's output is node 3. The string lists, node by node, each
incoming ``op~source``. In the shared IR this is a one-cell genotype (``space="nb201"``, ``n_inputs=1``,
``concat=(3,)``) that keeps its ``none`` edges, so every node has an input and the six edges are always
there, in the string's order.

Pure data, like the rest of :mod:`nasforge.genotypes`: parsing never imports torch.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import GenotypeError
from .core import CellArch, Edge, Genotype, register_op_name, register_text_format

__all__ = ["NB201_OPS", "NB201_EDGES", "looks_like_nb201_text", "parse_nb201_ops", "format_nb201_ops",
           "nb201_genotype", "nb201_ops_of", "from_nb201_text", "to_nb201_text"]

#: The five NB201 ops in the official order (``get_search_spaces('cell', 'nas-bench-201')``).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The six edges ``(src, dst)`` in the order the string lists them.
NB201_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_NODES = 3

for _op in NB201_OPS:  # the official names are IR op names; nasforge.ops registers their torch modules
    register_op_name(_op)


def looks_like_nb201_text(text: str) -> bool:
    """True for text shaped like an NB201 string (starts and ends with ``|`` and uses ``~``)."""
    t = text.strip()
    return t.startswith("|") and t.endswith("|") and "~" in t


def parse_nb201_ops(text: str) -> tuple[str, ...]:
    """The six edge ops of an NB201 string, in :data:`NB201_EDGES` order.

    Raises:
        GenotypeError: the string is not a well-formed NB201 architecture; the message names the bad part.
    """
    s = text.strip()
    shown = s if len(s) <= 80 else s[:77] + "..."
    nodes = s.split("+")
    if len(nodes) != _NODES:
        raise GenotypeError(f"NB201 string {shown!r}: expected {_NODES} node groups joined by '+', got {len(nodes)}; "
                            f"the format is |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    ops: list[str] = []
    for j, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise GenotypeError(f"NB201 string {shown!r}: node {j} group {group!r} must start and end with '|'")
        items = group[1:-1].split("|")
        if len(items) != j:
            raise GenotypeError(f"NB201 string {shown!r}: node {j} needs {j} input(s) (op~0 .. op~{j - 1}), "
                                f"got {len(items)}")
        for src, item in enumerate(items):
            op, sep, idx = item.partition("~")
            if not sep or idx != str(src):
                raise GenotypeError(f"NB201 string {shown!r}: node {j} input {src} is {item!r}, expected "
                                    f"'<op>~{src}'")
            if op not in NB201_OPS:
                raise GenotypeError(f"NB201 string {shown!r}: unknown op {op!r} on edge {src}->{j}; NB201 ops: "
                                    f"{', '.join(NB201_OPS)}")
            ops.append(op)
    return tuple(ops)


def format_nb201_ops(ops: Sequence[str]) -> str:
    """The official string of six edge ops given in :data:`NB201_EDGES` order."""
    _check_ops(ops)
    groups, k = [], 0
    for j in range(1, _NODES + 1):
        groups.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def nb201_genotype(ops: Sequence[str]) -> Genotype:
    """The IR genotype of six edge ops (``none`` edges kept, so all six edges are present)."""
    _check_ops(ops)
    edges = tuple(Edge(src, dst, op) for (src, dst), op in zip(NB201_EDGES, ops))
    cell = CellArch(edges=edges, concat=(_NODES,), reduction=False, n_inputs=1, name="normal")
    return Genotype(cells=(cell,), sharing="by_type", space="nb201")


def nb201_ops_of(genotype: Genotype) -> tuple[str, ...]:
    """The six edge ops of an NB201 genotype, in string order.

    Raises:
        GenotypeError: the genotype is not an NB201 cell (space, inputs, edges or output differ).
    """
    if genotype.space != "nb201":
        raise GenotypeError(f"not an NB201 genotype (its space is {genotype.space!r})")
    if len(genotype.cells) != 1:
        raise GenotypeError(f"an NB201 genotype has one cell, this one has {len(genotype.cells)}")
    cell = genotype.cells[0]
    if cell.n_inputs != 1 or cell.concat != (_NODES,) or cell.reduction:
        raise GenotypeError(f"an NB201 cell has one input and outputs node {_NODES}; this one has {cell.n_inputs} "
                            f"input(s) and concat {list(cell.concat)}")
    by_edge: dict[tuple[int, int], str] = {}
    for e in cell.edges:
        if (e.src, e.dst) in by_edge:
            raise GenotypeError(f"NB201 cell: edge {e.src}->{e.dst} has two ops ({by_edge[e.src, e.dst]}, {e.op}); "
                                f"NB201 puts exactly one op on each edge")
        by_edge[e.src, e.dst] = e.op
    if set(by_edge) != set(NB201_EDGES):
        missing = sorted(set(NB201_EDGES) - set(by_edge))
        raise GenotypeError(f"NB201 cell: needs all six edges {list(NB201_EDGES)} (use 'none' for no connection); "
                            f"missing {missing}")
    ops = tuple(by_edge[e] for e in NB201_EDGES)
    _check_ops(ops)
    return ops


def from_nb201_text(text: str) -> Genotype:
    """Parse an official NB201 string into the IR."""
    return nb201_genotype(parse_nb201_ops(text))


def to_nb201_text(genotype: Genotype) -> str:
    """Print an NB201 genotype as its official string."""
    return format_nb201_ops(nb201_ops_of(genotype))


def _check_ops(ops: Sequence[str]) -> None:
    if len(ops) != len(NB201_EDGES):
        raise GenotypeError(f"an NB201 cell has {len(NB201_EDGES)} edges, got {len(ops)} ops")
    for (src, dst), op in zip(NB201_EDGES, ops):
        if op not in NB201_OPS:
            raise GenotypeError(f"NB201 cell, edge {src}->{dst}: op {op!r} is not an NB201 op ({', '.join(NB201_OPS)})")


register_text_format("nb201", to_nb201_text)
