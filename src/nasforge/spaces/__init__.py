"""Search spaces: what can be searched (ops, nodes, input policy, sharing) and how to derive a genotype."""

from .darts import CELL_TYPES, DartsSpace, derive_cell, reduction_positions
from .relaxed import RelaxedSpace
from .free_topology import FreeTopologySpace
from .nao import NAOSpace
from .nb201 import NB201Arch, NB201Space

__all__ = ["DartsSpace", "derive_cell", "CELL_TYPES", "reduction_positions", "RelaxedSpace", "FreeTopologySpace",
           "NAOSpace", "NB201Space", "NB201Arch"]
