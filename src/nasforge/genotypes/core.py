"""The one architecture representation every space and method shares (pure data, no torch).

A :class:`Genotype` is a list of :class:`CellArch` — one per cell *type* (``sharing="by_type"``: the DARTS
normal and reduction cells) or one per cell of the network (``sharing="none"``: GOLD-NAS's unshared cells).
A cell is a DAG: nodes ``0 .. n_inputs-1`` are the cell's inputs (the outputs of the two previous cells),
nodes ``n_inputs ..`` are intermediate nodes, each the sum of its incoming edges, and the cell's output is
the channel concatenation of ``concat``. An :class:`Edge` ``(src, dst, op)`` applies ``op`` to node ``src``
and adds the result into node ``dst``; several edges may join the same two nodes with different ops
(GOLD-NAS keeps any number of ops per edge).

Genotypes validate themselves on construction; every error names the offending cell and edge.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import GenotypeError

__all__ = ["Edge", "CellArch", "Genotype", "KNOWN_OPS", "register_op_name", "register_text_format", "CELL_SHARING"]

#: Op names a genotype may use. The torch op registry (``nasforge.ops``) implements each of them; a contract
#: test keeps the two in step. Spaces with their own ops add names with :func:`register_op_name`.
KNOWN_OPS: set[str] = {
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
    "dil_conv_5x5", "sep_conv_7x7", "conv_7x1_1x7", "conv_1x1", "conv_3x3", "max_pool_5x5", "max_pool_7x7",
    "avg_pool_5x5",
}

CELL_SHARING = ("by_type", "none")

_MAX_NODES_FOR_ISOMORPHISM = 7  # 7! = 5040 relabelings per cell; beyond that the hash is order-sensitive


def register_op_name(name: str) -> None:
    """Allow ``name`` in genotypes (call this next to the op's torch registration)."""
    KNOWN_OPS.add(name)


#: Text formats by space, filled by the converter modules (``darts_text``, ``nb201_text``, ...), so the IR does
#: not import its formats. ``"*"`` is the fallback for spaces without a format of their own.
_TEXT_FORMATS: dict[str, Callable[["Genotype"], str]] = {}


def register_text_format(space: str, to_text: Callable[["Genotype"], str]) -> None:
    """Make ``str(genotype)`` of ``space`` use ``to_text`` (which raises GenotypeError where it cannot)."""
    _TEXT_FORMATS[space] = to_text


@dataclass(frozen=True, order=True)
class Edge:
    """``op`` applied to node ``src``, summed into node ``dst``."""

    src: int
    dst: int
    op: str

    def __post_init__(self) -> None:
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in (self.src, self.dst)):
            raise GenotypeError(f"edge {self.op!r}: node indices must be integers, got src={self.src!r}, "
                                f"dst={self.dst!r}")
        if not isinstance(self.op, str):
            raise GenotypeError(f"edge {self.src}->{self.dst}: op must be a string, got {self.op!r}")


@dataclass(frozen=True)
class CellArch:
    """One cell: its edges, the nodes it concatenates, and whether it reduces resolution."""

    edges: tuple[Edge, ...]
    concat: tuple[int, ...]
    reduction: bool = False
    n_inputs: int = 2
    name: str = field(default="cell", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(_as_edge(e, self.name) for e in self.edges))
        object.__setattr__(self, "concat", tuple(self.concat))
        self._validate()

    # -- structure ---------------------------------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        """Number of intermediate nodes (the largest referenced node decides)."""
        top = max([e.dst for e in self.edges] + list(self.concat) + [self.n_inputs - 1])
        return top - self.n_inputs + 1

    @property
    def nodes(self) -> range:
        """Indices of the intermediate nodes."""
        return range(self.n_inputs, self.n_inputs + self.n_nodes)

    def inputs_of(self, node: int) -> list[Edge]:
        """The edges entering ``node``, in genotype order."""
        return [e for e in self.edges if e.dst == node]

    def ops(self) -> list[str]:
        return [e.op for e in self.edges]

    def _validate(self) -> None:
        where = f"{self.name} cell"
        if not isinstance(self.n_inputs, int) or isinstance(self.n_inputs, bool) or self.n_inputs < 1:
            raise GenotypeError(f"{where}: n_inputs must be an integer >= 1, got {self.n_inputs!r}")
        if not self.edges:
            raise GenotypeError(f"{where}: has no edges; every intermediate node needs at least one input")
        for e in self.edges:
            if e.op not in KNOWN_OPS:
                raise GenotypeError(f"{where}, edge {e.src}->{e.dst}: unknown op {e.op!r}; known ops: "
                                    f"{', '.join(sorted(KNOWN_OPS))}")
            if e.dst < self.n_inputs:
                raise GenotypeError(f"{where}, edge {e.src}->{e.dst} ({e.op}): destination {e.dst} is a cell "
                                    f"input; destinations must be intermediate nodes >= {self.n_inputs}")
            if not 0 <= e.src < e.dst:
                raise GenotypeError(f"{where}, edge {e.src}->{e.dst} ({e.op}): source must be an earlier node "
                                    f"(0 <= src < dst)")
        top = max([e.dst for e in self.edges] + [self.n_inputs - 1])
        for n in self.concat:
            if not isinstance(n, int) or isinstance(n, bool):
                raise GenotypeError(f"{where}: concat entry {n!r} is not a node index (an integer)")
            if not 0 <= n <= top:
                raise GenotypeError(f"{where}: concat node {n} does not exist (nodes are 0..{top})")
        # The same (src, dst, op) may appear twice: NASNet's normal cell sums two avg-pools of one input.
        for node in self.nodes:
            if not self.inputs_of(node):
                raise GenotypeError(f"{where}: intermediate node {node} has no incoming edge")
        if not self.concat:
            raise GenotypeError(f"{where}: concat is empty; list the nodes whose outputs form the cell output")
        for n in self.concat:
            if not 0 <= n < self.n_inputs + self.n_nodes:
                raise GenotypeError(f"{where}: concat node {n!r} does not exist (nodes are 0.."
                                    f"{self.n_inputs + self.n_nodes - 1})")
        if len(set(self.concat)) != len(self.concat):
            raise GenotypeError(f"{where}: concat {list(self.concat)} lists a node twice")

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": [[e.src, e.dst, e.op] for e in self.edges],
            "concat": list(self.concat),
            "reduction": self.reduction,
            "n_inputs": self.n_inputs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str = "cell") -> "CellArch":
        if not isinstance(data, Mapping):
            raise GenotypeError(f"{name} cell: expected an object with 'edges' and 'concat', got {type(data).__name__}")
        unknown = set(data) - {"edges", "concat", "reduction", "n_inputs"}
        if unknown:
            raise GenotypeError(f"{name} cell: unknown field(s) {sorted(unknown)}; allowed: edges, concat, "
                                f"reduction, n_inputs")
        if "edges" not in data or "concat" not in data:
            raise GenotypeError(f"{name} cell: needs both 'edges' and 'concat'")
        if not isinstance(data["edges"], (list, tuple)) or not isinstance(data["concat"], (list, tuple)):
            raise GenotypeError(f"{name} cell: 'edges' and 'concat' must be lists")
        if not isinstance(data.get("reduction", False), bool):
            raise GenotypeError(f"{name} cell: 'reduction' must be true or false, got {data['reduction']!r}")
        return cls(edges=tuple(_as_edge(e, name) for e in data["edges"]), concat=tuple(data["concat"]),
                   reduction=data.get("reduction", False), n_inputs=data.get("n_inputs", 2), name=name)

    def canonical(self) -> tuple:
        """A form equal for isomorphic cells: minimum over relabelings of the intermediate nodes."""
        nodes = list(self.nodes)
        best: tuple | None = None
        perms: Iterable[Sequence[int]] = (
            itertools.permutations(nodes) if len(nodes) <= _MAX_NODES_FOR_ISOMORPHISM else [nodes])
        for perm in perms:
            relabel = {old: new for old, new in zip(nodes, perm)}
            key = (tuple(sorted((relabel.get(e.src, e.src), relabel[e.dst], e.op) for e in self.edges)),
                   tuple(sorted(relabel.get(n, n) for n in self.concat)))
            if best is None or key < best:
                best = key
        assert best is not None
        return (self.n_inputs, self.reduction, best)


@dataclass(frozen=True)
class Genotype:
    """A whole architecture: one cell per type (``by_type``) or one per network cell (``none``)."""

    cells: tuple[CellArch, ...]
    sharing: str = "by_type"
    space: str = "darts"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cells", tuple(self.cells))
        if self.sharing not in CELL_SHARING:
            raise GenotypeError(f"genotype: sharing must be one of {CELL_SHARING}, got {self.sharing!r}")
        if not self.cells:
            raise GenotypeError("genotype: has no cells")
        for c in self.cells:
            if not isinstance(c, CellArch):
                raise GenotypeError(f"genotype: cells must be CellArch objects, got {type(c).__name__}")
        if self.sharing == "by_type":
            # two cells (normal, reduction) as in DARTS, or one normal cell for spaces whose reductions are fixed
            # blocks (NAS-Bench-201)
            shape_ok = (len(self.cells) == 2 and not self.cells[0].reduction and self.cells[1].reduction) or \
                (len(self.cells) == 1 and not self.cells[0].reduction)
            if not shape_ok:
                raise GenotypeError("genotype: with sharing 'by_type' give a normal cell (reduction false) and then "
                                    "a reduction cell (reduction true), or only a normal cell")

    @classmethod
    def from_cells(cls, normal: CellArch, reduce: CellArch, space: str = "darts") -> "Genotype":
        return cls(cells=(normal, reduce), sharing="by_type", space=space)

    @property
    def normal(self) -> CellArch:
        self._need_shared("normal")
        return self.cells[0]

    @property
    def reduce(self) -> CellArch:
        self._need_shared("reduce")
        if len(self.cells) < 2:
            raise GenotypeError(f"this {self.space} genotype has no searched reduction cell (its space reduces "
                                f"with fixed blocks)")
        return self.cells[1]

    def _need_shared(self, what: str) -> None:
        if self.sharing != "by_type":
            raise GenotypeError(f"genotype has one cell per position (sharing 'none'); there is no single "
                                f"{what} cell — use cell_for(index, reduction)")

    def cell_for(self, index: int, reduction: bool) -> CellArch:
        """The cell at network position ``index`` (checks the layout when cells are unshared)."""
        if self.sharing == "by_type":
            return self.reduce if reduction else self.cells[0]
        if index >= len(self.cells):
            raise GenotypeError(f"genotype has {len(self.cells)} unshared cells but the network asks for cell "
                                f"{index}; build the network with {len(self.cells)} cells")
        cell = self.cells[index]
        if cell.reduction != reduction:
            raise GenotypeError(f"genotype cell {index} is {'a reduction' if cell.reduction else 'a normal'} "
                                f"cell but the network puts a {'reduction' if reduction else 'normal'} cell there")
        return cell

    @property
    def num_cells_required(self) -> int | None:
        """For unshared genotypes the network depth is fixed by the genotype."""
        return len(self.cells) if self.sharing == "none" else None

    # -- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": "nasforge.genotype/1", "space": self.space, "sharing": self.sharing,
                "cells": [c.to_dict() for c in self.cells]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Genotype":
        if not isinstance(data, Mapping):
            raise GenotypeError(f"genotype JSON must be an object, got {type(data).__name__}")
        unknown = set(data) - {"format", "space", "sharing", "cells", "hash"}
        if unknown:
            raise GenotypeError(f"genotype JSON: unknown field(s) {sorted(unknown)}; allowed: format, space, "
                                f"sharing, cells")
        if "cells" not in data or not isinstance(data["cells"], list):
            raise GenotypeError("genotype JSON: needs a 'cells' list")
        sharing = data.get("sharing", "by_type")
        names = (["normal", "reduce"] if sharing == "by_type" and len(data["cells"]) == 2
                 else [f"cell {i}" for i in range(len(data["cells"]))])
        cells = tuple(CellArch.from_dict(c, name=n) for c, n in zip(data["cells"], names))
        return cls(cells=cells, sharing=sharing, space=str(data.get("space", "darts")))

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype JSON is not valid JSON ({exc.msg} at line {exc.lineno}); check the "
                                f"file or pass the classic Genotype(...) text instead") from None
        return cls.from_dict(data)

    def canonical(self) -> tuple:
        return (self.space, self.sharing, tuple(c.canonical() for c in self.cells))

    def hash(self) -> str:
        """Canonical hash: equal for isomorphic genotypes (same cells up to node relabeling)."""
        return hashlib.sha256(repr(self.canonical()).encode()).hexdigest()[:16]

    def __str__(self) -> str:
        """The space's registered text (classic DARTS text, NB201 string, ...) where it can say it, else JSON."""
        to_text = _TEXT_FORMATS.get(self.space, _TEXT_FORMATS.get("*"))
        if to_text is not None:
            try:
                return to_text(self)
            except GenotypeError:
                pass
        return self.to_json(indent=None)


def _as_edge(e: Any, where: str) -> Edge:
    if isinstance(e, Edge):
        return e
    if isinstance(e, Mapping):
        try:
            return Edge(e["src"], e["dst"], e["op"])
        except KeyError as exc:
            raise GenotypeError(f"{where} cell: edge {dict(e)} lacks {exc}; give src, dst and op") from None
    if isinstance(e, (list, tuple)) and len(e) == 3:
        src, dst, op = e
        return Edge(src, dst, op)
    raise GenotypeError(f"{where} cell: edge {e!r} must be [src, dst, op]")
