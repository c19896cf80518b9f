"""NAO's integer sequence of an architecture (Luo et al.; METHODS.md §5.1) to and from the genotype IR.

A NAO architecture is one normal and one reduction cell of ``B`` nodes. Node ``i`` (0-based) reads two states
``x_id, y_id`` from ``{0, 1}`` (the cell inputs) and the earlier nodes ``2 .. i+1`` (the same state may be read
twice), applies op ``x_op`` / ``y_op`` (indices into an op list) and sums the two. Per cell the sequence is
``B × [x_id, x_op, y_id, y_op]``; the whole sequence is the normal cell's ``4B`` integers, then the reduction
cell's. The cell output concatenates the *loose ends*: every state no node reads, the inputs included.

In the IR a NAO cell is a :class:`~nasforge.genotypes.CellArch` whose node ``i + 2`` has exactly two edges, ``x``
first, and whose ``concat`` is the loose ends; the genotype's ``space`` is ``"nao"`` so that the NAO evaluation
network (which reduces loose cell inputs in reduction cells) builds it. NAO's ``identity`` op is the IR's
``skip_connect`` (identity at stride 1, FactorizedReduce at stride 2: the same module).

``str()`` of a NAO genotype in the small op set is its sequence, ``NAO(normal="1 1 0 1 ...", reduce="0 2 ...")``,
which :func:`~nasforge.genotypes.load_genotype` reads back (other op sets print as JSON).

Pure data: this module imports only :mod:`nasforge.genotypes.core`.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..errors import GenotypeError
from .core import CellArch, Edge, Genotype, register_text_format

__all__ = ["NAO_SPACE", "NAO_SMALL_OPS", "NAO_OP_ALIASES", "nao_op_name", "loose_ends", "nao_cell",
           "from_nao_seq", "to_nao_seq", "parse_nao_seq", "format_nao_seq", "to_nao_text", "from_nao_text",
           "looks_like_nao_text"]

NAO_SPACE = "nao"
#: The "small" NAO op set in its index order (0 sep3, 1 sep5, 2 avg, 3 max, 4 identity).
NAO_SMALL_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
#: NAO's op names that the IR spells differently.
NAO_OP_ALIASES: dict[str, str] = {"identity": "skip_connect"}


def nao_op_name(name: str) -> str:
    """The IR name of a NAO op name (``identity`` -> ``skip_connect``; other names unchanged)."""
    return NAO_OP_ALIASES.get(name, name)


def loose_ends(n_states: int, used: Sequence[int]) -> tuple[int, ...]:
    """The states ``0 .. n_states-1`` that no node reads, in order: the cell's output."""
    read = set(used)
    return tuple(s for s in range(n_states) if s not in read)


def _check_ints(seq: Sequence[int], where: str) -> list[int]:
    if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
        raise GenotypeError(f"{where}: expected a sequence of integers, got {type(seq).__name__}")
    out = []
    for k, v in enumerate(seq):
        if isinstance(v, bool) or not isinstance(v, int):
            raise GenotypeError(f"{where}: position {k} holds {v!r}, not an integer")
        out.append(int(v))
    return out


def nao_cell(seq: Sequence[int], ops: Sequence[str], reduction: bool, name: str = "cell") -> CellArch:
    """One cell from its ``4B`` integers ``[x_id, x_op, y_id, y_op] × B``."""
    values = _check_ints(seq, f"{name} cell")
    if not values or len(values) % 4:
        raise GenotypeError(f"{name} cell: a NAO cell needs 4 integers per node (x_id x_op y_id y_op), got "
                            f"{len(values)}")
    edges: list[Edge] = []
    for i in range(len(values) // 4):
        for slot, (src, op) in enumerate(((values[4 * i], values[4 * i + 1]), (values[4 * i + 2], values[4 * i + 3]))):
            if not 0 <= src <= i + 1:
                raise GenotypeError(f"{name} cell, node {i}: {'xy'[slot]}_id {src} is out of range; node {i} reads "
                                    f"states 0..{i + 1}")
            if not 0 <= op < len(ops):
                raise GenotypeError(f"{name} cell, node {i}: {'xy'[slot]}_op {op} is out of range; ops are "
                                    f"0..{len(ops) - 1} ({', '.join(ops)})")
            edges.append(Edge(src, i + 2, nao_op_name(ops[op])))
    concat = loose_ends(len(values) // 4 + 2, [e.src for e in edges])
    return CellArch(tuple(edges), concat, reduction=reduction, n_inputs=2, name=name)


def from_nao_seq(seq: Sequence[int], ops: Sequence[str] = NAO_SMALL_OPS) -> Genotype:
    """A genotype (``space="nao"``) from the whole sequence: normal cell, then reduction cell."""
    values = _check_ints(seq, "NAO sequence")
    if not values or len(values) % 8:
        raise GenotypeError(f"NAO sequence: needs 4 integers per node for two cells (a multiple of 8), got "
                            f"{len(values)}")
    half = len(values) // 2
    return Genotype.from_cells(nao_cell(values[:half], ops, False, "normal"),
                               nao_cell(values[half:], ops, True, "reduce"), space=NAO_SPACE)


def to_nao_seq(genotype: Genotype, ops: Sequence[str] = NAO_SMALL_OPS) -> list[int]:
    """The sequence of a genotype whose two cells are NAO cells (two inputs per node, loose-end output)."""
    if genotype.sharing != "by_type" or len(genotype.cells) != 2:
        raise GenotypeError("NAO sequence: the genotype needs one normal and one reduction cell")
    names = [nao_op_name(o) for o in ops]
    out: list[int] = []
    for cell in genotype.cells:
        if cell.n_inputs != 2:
            raise GenotypeError(f"NAO sequence: {cell.name} cell has {cell.n_inputs} inputs; NAO cells have 2")
        for node in cell.nodes:
            ins = cell.inputs_of(node)
            if len(ins) != 2:
                raise GenotypeError(f"NAO sequence: {cell.name} cell, node {node} has {len(ins)} inputs; NAO nodes "
                                    f"have exactly 2")
            for e in ins:
                if e.op not in names:
                    raise GenotypeError(f"NAO sequence: {cell.name} cell, edge {e.src}->{e.dst}: op {e.op!r} is not "
                                        f"one of {', '.join(names)}")
                out += [e.src, names.index(e.op)]
        expected = loose_ends(cell.n_inputs + cell.n_nodes, [e.src for e in cell.edges])
        if tuple(cell.concat) != expected:
            raise GenotypeError(f"NAO sequence: {cell.name} cell concatenates {list(cell.concat)}; a NAO cell "
                                f"concatenates its loose ends {list(expected)}")
    return out


def parse_nao_seq(text: str) -> list[int]:
    """Integers from NAO's text form ``"1 1 0 1 2 4 ..."`` (spaces or commas)."""
    parts = text.replace(",", " ").split()
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise GenotypeError(f"NAO sequence text must be integers separated by spaces, got {text[:40]!r}") from None


def format_nao_seq(seq: Sequence[int]) -> str:
    """NAO's text form: the integers separated by spaces."""
    return " ".join(str(int(v)) for v in seq)


_TEXT = re.compile(r'^NAO\(\s*normal\s*=\s*"([0-9 ]*)"\s*,\s*reduce\s*=\s*"([0-9 ]*)"\s*\)$')


def looks_like_nao_text(text: str) -> bool:
    return text.lstrip().startswith("NAO(")


def to_nao_text(genotype: Genotype) -> str:
    """``NAO(normal="...", reduce="...")`` in the small op set (GenotypeError for other genotypes)."""
    seq = to_nao_seq(genotype, NAO_SMALL_OPS)
    half = len(seq) // 2
    return f'NAO(normal="{format_nao_seq(seq[:half])}", reduce="{format_nao_seq(seq[half:])}")'


def from_nao_text(text: str) -> Genotype:
    """Parse :func:`to_nao_text`'s form (the small op set)."""
    m = _TEXT.match(text.strip())
    if m is None:
        raise GenotypeError('NAO text must read NAO(normal="x_id x_op y_id y_op ...", reduce="...") with integers')
    normal, reduce = parse_nao_seq(m.group(1)), parse_nao_seq(m.group(2))
    if len(normal) != len(reduce):
        raise GenotypeError(f"NAO text: the normal cell has {len(normal)} integers, the reduction cell {len(reduce)}; "
                            f"both need 4 per node")
    return from_nao_seq(normal + reduce, NAO_SMALL_OPS)


register_text_format(NAO_SPACE, to_nao_text)
