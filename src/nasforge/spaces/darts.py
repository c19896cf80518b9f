"""The DARTS cell space (METHODS.md §1.1–1.4): two cell inputs, ``nodes`` intermediate nodes, every earlier
node connected to every later one (14 edges for 4 nodes), the eight DARTS ops, one normal and one reduction
cell shared across the network, and the derivation rule "top-2 incoming edges per node, strongest non-`none`
op on each"."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import GenotypeError
from ..genotypes import CellArch, Edge, Genotype
from ..ops import DARTS_OPS, OPS

__all__ = ["DartsSpace", "derive_cell", "CELL_TYPES", "reduction_positions"]

CELL_TYPES = ("normal", "reduce")


def reduction_positions(layers: int) -> tuple[int, ...]:
    """Cells ⌊L/3⌋ and ⌊2L/3⌋ reduce resolution (DARTS); fewer than 3 cells get one reduction at the middle."""
    if layers >= 3:
        return (layers // 3, 2 * layers // 3)
    return (layers // 2,) if layers == 2 else ()


@dataclass(frozen=True)
class DartsSpace:
    """A DARTS-style cell space. ``edges`` lists every (src, dst) the supernet connects, in DARTS order."""

    ops: tuple[str, ...] = DARTS_OPS
    nodes: int = 4
    n_inputs: int = 2
    inputs_per_node: int = 2
    edges: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        for op in self.ops:
            OPS.get(op)  # fail early, with the list of known ops
        if len(set(self.ops)) != len(self.ops):
            raise GenotypeError(f"search space lists an op twice: {list(self.ops)}")
        if self.nodes < 1:
            raise GenotypeError(f"search space needs at least one intermediate node, got {self.nodes}")
        edges = tuple((src, self.n_inputs + j) for j in range(self.nodes) for src in range(self.n_inputs + j))
        object.__setattr__(self, "edges", edges)

    @property
    def concat(self) -> tuple[int, ...]:
        return tuple(range(self.n_inputs, self.n_inputs + self.nodes))

    def derive(self, weights: dict[str, torch.Tensor], alive: dict[str, torch.Tensor] | None = None) -> Genotype:
        """The DARTS derivation for both cell types from op weights ``[edges, ops]``; removed ops (``alive``
        False) are never chosen."""
        cells = [derive_cell(weights[t], self, reduction=(t == "reduce"), name=t,
                             alive=None if alive is None else alive[t]) for t in CELL_TYPES]
        return Genotype.from_cells(*cells)

    def sample(self, generator: torch.Generator) -> Genotype:
        """A uniformly random architecture of this space (two distinct inputs per node, no `none`)."""
        ops = [o for o in self.ops if o != "none"]
        cells = []
        for t in CELL_TYPES:
            edges = []
            for j in range(self.nodes):
                dst = self.n_inputs + j
                n_src = self.n_inputs + j
                k = min(self.inputs_per_node, n_src)
                srcs = torch.randperm(n_src, generator=generator)[:k].sort().values.tolist()
                for src in srcs:
                    edges.append(Edge(src, dst, ops[int(torch.randint(len(ops), (1,), generator=generator))]))
            cells.append(CellArch(tuple(edges), self.concat, reduction=(t == "reduce"), n_inputs=self.n_inputs,
                                  name=t))
        return Genotype.from_cells(*cells)

    def validate(self, genotype: Genotype) -> None:
        """Raise GenotypeError unless ``genotype`` belongs to this space."""
        if genotype.sharing != "by_type":
            raise GenotypeError("the DARTS space shares one normal and one reduction cell (sharing 'by_type')")
        for cell in genotype.cells:
            self.check_cell_frame(cell)
            self.check_node_inputs(cell)

    def check_cell_frame(self, cell: CellArch) -> None:
        """The cell's inputs, nodes, concat and ops are this space's (what every DARTS-like space shares)."""
        if cell.n_inputs != self.n_inputs or cell.n_nodes != self.nodes or cell.concat != self.concat:
            raise GenotypeError(f"{cell.name} cell: has {cell.n_inputs} inputs, {cell.n_nodes} intermediate "
                                f"nodes and concat {list(cell.concat)}; this space has {self.n_inputs} inputs, "
                                f"{self.nodes} nodes and concat {list(self.concat)}")
        for e in cell.edges:
            if e.op not in self.ops or e.op == "none":
                raise GenotypeError(f"{cell.name} cell, edge {e.src}->{e.dst}: op {e.op!r} is not in this "
                                    f"space's ops {[o for o in self.ops if o != 'none']}")

    def check_node_inputs(self, cell: CellArch) -> None:
        """The DARTS input policy: ``inputs_per_node`` inputs from distinct nodes."""
        for node in cell.nodes:
            srcs = [e.src for e in cell.inputs_of(node)]
            if len(srcs) != min(self.inputs_per_node, node) or len(set(srcs)) != len(srcs):
                raise GenotypeError(f"{cell.name} cell, node {node}: needs {self.inputs_per_node} inputs from "
                                    f"distinct nodes, has {srcs}")


def derive_cell(weights: torch.Tensor, space: DartsSpace, reduction: bool, name: str = "cell",
                exclude: tuple[str, ...] = ("none",), alive: torch.Tensor | None = None) -> CellArch:
    """For each node keep the ``inputs_per_node`` incoming edges whose strongest non-excluded op weighs most,
    and on each kept edge that op (METHODS.md §1.4). Ties keep the earlier edge/op (stable sort). Ops that
    ``alive`` marks as removed are never chosen, whatever their weight."""
    w = weights.detach().float().cpu()
    usable = torch.tensor([op not in exclude for op in space.ops]).expand_as(w)
    if alive is not None:
        usable = usable & alive.detach().cpu().bool()
    w = w.masked_fill(~usable, float("-inf"))
    edges: list[Edge] = []
    for j in range(space.nodes):
        dst = space.n_inputs + j
        rows = [i for i, (_, d) in enumerate(space.edges) if d == dst]
        best = [(float(w[i].max()), i) for i in rows]
        best.sort(key=lambda t: -t[0])  # stable: ties keep edge order
        for strength, i in best[: space.inputs_per_node]:  # strongest first, as DARTS lists them
            if strength == float("-inf"):
                raise GenotypeError(f"{name} cell: edge {space.edges[i]} has no usable op left to derive")
            op = space.ops[int(torch.argmax(w[i]))]
            edges.append(Edge(space.edges[i][0], dst, op))
    return CellArch(tuple(edges), space.concat, reduction=reduction, n_inputs=space.n_inputs, name=name)
