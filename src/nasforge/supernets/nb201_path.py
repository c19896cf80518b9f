"""A single-path NAS-Bench-201 supernet: every edge holds one copy of each op, and a forward runs exactly one
architecture (its six edge ops), so NAO-style methods can train and score cells on the NB201 skeleton.

Ops are built as NB201's search cells build them (non-affine BNs, bare pools; :mod:`nasforge.ops.nb201`); the
macro skeleton is the benchmark's (:class:`~nasforge.models.nb201.NB201Body`). ``none`` edges are not computed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..genotypes.nb201_text import NB201_EDGES, NB201_OPS
from ..models.nb201 import N_NODES, NB201Body, sum_inputs
from ..ops import create_op
from ..models.init import init_network

__all__ = ["NB201PathCell", "NB201PathSuperNet"]


class NB201PathCell(nn.Module):
    """One NB201 search cell that computes only the chosen op of each edge."""

    def __init__(self, channels: int, op_names: Sequence[str] = NB201_OPS) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.edges = nn.ModuleList(
            nn.ModuleList(create_op(op, channels, 1, affine=False, search=False) for op in self.op_names)
            for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, ops: Sequence[int]) -> torch.Tensor:
        nodes = [x]
        for j in range(1, N_NODES + 1):
            parts = [self.edges[e][ops[e]](nodes[src]) for e, (src, dst) in enumerate(NB201_EDGES)
                     if dst == j and self.op_names[ops[e]] != "none"]
            nodes.append(sum_inputs(parts, x))
        return nodes[-1]


class NB201PathSuperNet(NB201Body):
    """The NB201 skeleton of single-path cells; ``forward(x, ops)`` with ``ops`` six indices into NB201_OPS.

    Args:
        num_classes, channels, cells_per_stage, in_channels: as :class:`~nasforge.models.nb201.NB201Network`.
        generator: draws the initial weights (PyTorch's default schemes).
    """

    def __init__(self, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(lambda c: NB201PathCell(c), num_classes, channels, cells_per_stage, in_channels)
        self.drop_path_prob = 0.0  # NB201 trains without drop-path; kept for the supernet interface
        if generator is not None:
            init_network(self, generator)

    def forward(self, x: torch.Tensor, ops: Sequence[int]) -> torch.Tensor:
        return self._logits(x, tuple(int(o) for o in ops))
