"""The classic DARTS text ``Genotype(normal=[(op, src), ...], normal_concat=[...], reduce=[...], ...)``.

This is the format every DARTS-family repository prints and that users paste around. It is parsed with
``ast`` (never ``eval``): lists or tuples of ``(op, input)`` pairs, concat as a list or ``range(a, b)``.
In it, each intermediate node has exactly two inputs; pair ``i`` feeds node ``2 + i // 2``.
"""

from __future__ import annotations

import ast
from typing import Any, Sequence

from ..errors import GenotypeError
from .core import CellArch, Edge, Genotype, register_text_format

__all__ = ["from_darts_text", "to_darts_text", "from_darts_pairs", "looks_like_darts_text"]

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_MAX_RANGE = 1000  # concat ranges are a handful of node indices; refuse to materialise huge ones


def looks_like_darts_text(text: str) -> bool:
    return text.lstrip().startswith("Genotype(")


def from_darts_pairs(normal: Sequence[Sequence[Any]], normal_concat: Sequence[int],
                     reduce: Sequence[Sequence[Any]], reduce_concat: Sequence[int]) -> Genotype:
    """Build a genotype from DARTS-style ``(op, input)`` pair lists."""
    return Genotype.from_cells(_cell_from_pairs(normal, normal_concat, False, "normal"),
                               _cell_from_pairs(reduce, reduce_concat, True, "reduce"))


_DARTS_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def looks_like_darts_mapping(data: Any) -> bool:
    """A JSON object with the classic fields (``normal``, ``reduce``, ...) rather than nasforge's ``cells``."""
    return isinstance(data, dict) and "cells" not in data and ("normal" in data or "reduce" in data)


def from_darts_mapping(data: dict[str, Any]) -> Genotype:
    """The classic DARTS fields written as JSON, as users write them by hand::

        {"normal": [["sep_conv_3x3", 0], ...], "normal_concat": [2, 3, 4, 5], "reduce": [...], "reduce_concat": [...]}

    A missing ``*_concat`` means every intermediate node, as in all published DARTS-space cells.
    """
    unknown = sorted(set(data) - set(_DARTS_FIELDS) - {"hash"})
    if unknown:
        raise GenotypeError(f"classic genotype JSON: unknown field(s) {unknown}; allowed: {', '.join(_DARTS_FIELDS)}")
    for key in ("normal", "reduce"):
        if key not in data:
            raise GenotypeError(f"classic genotype JSON: missing field {key!r}; give normal and reduce as lists of "
                                f"[op, input] pairs")
    concat = {}
    for key in ("normal", "reduce"):
        pairs = data[key]
        nodes = len(pairs) // 2 if isinstance(pairs, (list, tuple)) else 0
        concat[key] = data.get(f"{key}_concat", list(range(2, 2 + nodes)))
    return from_darts_pairs(data["normal"], concat["normal"], data["reduce"], concat["reduce"])


def _cell_from_pairs(pairs: Sequence[Sequence[Any]], concat: Sequence[int], reduction: bool,
                     name: str) -> CellArch:
    if not isinstance(pairs, (list, tuple)):
        raise GenotypeError(f"{name} cell: expected a list of (op, input) pairs, got {pairs!r}")
    if not isinstance(concat, (list, tuple, range)):
        raise GenotypeError(f"{name} cell: concat must be a list of node indices, got {concat!r}")
    if len(pairs) == 0 or len(pairs) % 2:
        raise GenotypeError(f"{name} cell: needs an even, non-zero number of (op, input) pairs (two per node), "
                            f"got {len(pairs)}")
    edges = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not isinstance(pair[0], str) \
                or not isinstance(pair[1], int):
            raise GenotypeError(f"{name} cell, pair {i}: expected ('op_name', input_index), got {pair!r}")
        if isinstance(pair[1], bool):
            raise GenotypeError(f"{name} cell, pair {i}: the input index must be an integer, got {pair[1]!r}")
        edges.append(Edge(src=pair[1], dst=2 + i // 2, op=pair[0]))
    return CellArch(edges=tuple(edges), concat=tuple(concat), reduction=reduction, name=name)


def from_darts_text(text: str) -> Genotype:
    """Parse ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)``."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise GenotypeError(f"cannot parse genotype text ({exc.msg} at column {exc.offset}); expected "
                            f"Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise GenotypeError("genotype text must be a call Genotype(normal=..., normal_concat=..., reduce=..., "
                            "reduce_concat=...)")
    if len(call.args) > len(_FIELDS):
        raise GenotypeError(f"genotype text: {len(call.args)} positional values, expected at most {len(_FIELDS)} "
                            f"({', '.join(_FIELDS)})")
    values: dict[str, Any] = {}
    for name, node in zip(_FIELDS, call.args):
        values[name] = _literal(node, name)
    for kw in call.keywords:
        if kw.arg not in _FIELDS:
            raise GenotypeError(f"genotype text: unknown field {kw.arg!r}; expected {', '.join(_FIELDS)}")
        if kw.arg in values:
            raise GenotypeError(f"genotype text: field {kw.arg} is given twice")
        values[kw.arg] = _literal(kw.value, kw.arg)
    missing = [f for f in _FIELDS if f not in values]
    if missing:
        raise GenotypeError(f"genotype text: missing field(s) {', '.join(missing)}")
    return from_darts_pairs(values["normal"], values["normal_concat"], values["reduce"], values["reduce_concat"])


def _literal(node: ast.AST, field: str) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            r = range(*[ast.literal_eval(a) for a in node.args])
        except (ValueError, TypeError):
            raise GenotypeError(f"genotype text: {field}=range(...) needs integer arguments") from None
        if node.keywords or len(r) > _MAX_RANGE:
            raise GenotypeError(f"genotype text: {field}={ast.unparse(node)} is not a range of node indices")
        return list(r)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise GenotypeError(f"genotype text: {field} must be a literal list (or range(a, b)), got "
                            f"{ast.unparse(node)!r}") from None


def to_darts_text(genotype: Genotype) -> str:
    """Print in the classic format; only for shared cells with two inputs per intermediate node."""
    if genotype.sharing != "by_type":
        raise GenotypeError("only genotypes with shared normal/reduction cells have a classic DARTS text form")
    parts = []
    for cell in genotype.cells:
        if cell.n_inputs != 2:
            raise GenotypeError("the classic DARTS text needs cells with two inputs")
        pairs = []
        for node in cell.nodes:
            ins = cell.inputs_of(node)
            if len(ins) != 2:
                raise GenotypeError(f"the classic DARTS text needs two inputs per node; node {node} has {len(ins)}")
            pairs += [(e.op, e.src) for e in ins]
        parts.append((pairs, list(cell.concat)))
    (n, nc), (r, rc) = parts
    return f"Genotype(normal={n!r}, normal_concat={nc!r}, reduce={r!r}, reduce_concat={rc!r})"


register_text_format("*", to_darts_text)  # any space whose cells fit the classic 2-input form
