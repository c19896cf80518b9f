"""GOLD-NAS's relaxed cell space (METHODS.md §3.1): the DARTS cell's edges, but every op on every edge is
switched on or off independently (no `none`), a node keeps any number of inputs (at least one), and every cell
of the network has its own architecture."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import GenotypeError
from ..genotypes import CellArch, Edge, Genotype
from .darts import DartsSpace, reduction_positions

__all__ = ["RelaxedSpace"]


@dataclass(frozen=True)
class RelaxedSpace(DartsSpace):
    """Unshared cells, any subset of ops per edge, at least one input per node. ``layers`` cells."""

    layers: int = 14

    def validate(self, genotype: Genotype) -> None:
        if genotype.sharing != "none" or len(genotype.cells) != self.layers:
            raise GenotypeError(f"the relaxed space has {self.layers} unshared cells (sharing 'none'), got "
                                f"{len(genotype.cells)} cells with sharing {genotype.sharing!r}")
        reductions = reduction_positions(self.layers)
        for i, cell in enumerate(genotype.cells):
            if cell.reduction != (i in reductions):
                raise GenotypeError(f"cell {i}: reduction cells sit at positions {list(reductions)}")
            if cell.n_inputs != self.n_inputs or cell.n_nodes != self.nodes or cell.concat != self.concat:
                raise GenotypeError(f"cell {i}: needs {self.n_inputs} inputs, {self.nodes} nodes, concat "
                                    f"{list(self.concat)}")
            for e in cell.edges:
                if e.op not in self.ops:
                    raise GenotypeError(f"cell {i}, edge {e.src}->{e.dst}: op {e.op!r} is not one of {list(self.ops)}")
            if len(set(cell.edges)) != len(cell.edges):
                raise GenotypeError(f"cell {i}: an op appears twice on one edge")

    def sample(self, generator: torch.Generator) -> Genotype:
        """Each op on each edge on with probability 1/2, redrawn until every node has an input."""
        reductions = reduction_positions(self.layers)
        cells = []
        for i in range(self.layers):
            while True:
                on = torch.rand(len(self.edges), len(self.ops), generator=generator) < 0.5
                edges = [Edge(s, d, self.ops[o]) for e, (s, d) in enumerate(self.edges)
                         for o in range(len(self.ops)) if bool(on[e, o])]
                if all(any(x.dst == n for x in edges) for n in self.concat):
                    break
            cells.append(CellArch(tuple(edges), self.concat, reduction=i in reductions, name=f"cell {i}"))
        return Genotype(cells=tuple(cells), sharing="none", space="gold-nas")
