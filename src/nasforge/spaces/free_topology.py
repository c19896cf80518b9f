"""The DARTS cell space with a free topology (EnTranNAS-DST, METHODS.md §4.1): the DARTS ops and nodes, one
normal and one reduction cell shared across the network, but a node keeps any number (at least one) of
(input node, op) pairs instead of exactly two inputs with one op each."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GenotypeError
from ..genotypes import CellArch, Edge, Genotype
from .darts import CELL_TYPES, DartsSpace

__all__ = ["FreeTopologySpace"]


@dataclass(frozen=True)
class FreeTopologySpace(DartsSpace):
    """Shared normal/reduction cells; every node is the sum of any non-empty set of distinct (source, op) pairs
    (no `none`). The DARTS rule's top-2 cells (inherited :meth:`derive`) are members of this space too."""

    def validate(self, genotype: Genotype) -> None:
        """Raise GenotypeError unless ``genotype`` belongs to this space."""
        if genotype.sharing != "by_type" or len(genotype.cells) != 2:
            raise GenotypeError("the free-topology DARTS space shares one normal and one reduction cell "
                                "(sharing 'by_type')")
        super().validate(genotype)

    def check_node_inputs(self, cell: CellArch) -> None:
        """Any non-empty set of distinct (source, op) pairs per node (CellArch already forbids empty nodes)."""
        if len(set(cell.edges)) != len(cell.edges):
            raise GenotypeError(f"{cell.name} cell: an (input, op) pair appears twice on one node")

    def sample(self, generator: torch.Generator) -> Genotype:
        """Each (source, op) pair into each node on with probability 1/2, redrawn until no node is empty."""
        ops = [o for o in self.ops if o != "none"]
        cells = []
        for t in CELL_TYPES:
            edges: list[Edge] = []
            for j in range(self.nodes):
                dst = self.n_inputs + j
                while True:
                    on = torch.rand(dst, len(ops), generator=generator) < 0.5
                    if bool(on.any()):
                        break
                edges += [Edge(src, dst, ops[k]) for src, k in on.nonzero().tolist()]
            cells.append(CellArch(tuple(edges), self.concat, reduction=(t == "reduce"), n_inputs=self.n_inputs,
                                  name=t))
        return Genotype.from_cells(*cells)
