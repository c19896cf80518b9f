"""Search spaces: what can be searched (ops, nodes, input policy, sharing) and how to derive a genotype."""

from .darts import CELL_TYPES, DartsSpace, derive_cell

__all__ = ["DartsSpace", "derive_cell", "CELL_TYPES"]
