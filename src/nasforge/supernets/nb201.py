"""The NAS-Bench-201 supernet: every edge of the one NB201 cell holds all ops, mixed by one shared architecture
matrix, on the benchmark's macro skeleton (:class:`~nasforge.models.nb201.NB201Body`).

It offers the architecture interface of :class:`~nasforge.supernets.SuperNet` (``arch_parameters``,
``weight_parameters``, ``op_weights``, ``arch_keys``, ``alive``), so the differentiable strategies drive it as
they drive the DARTS supernet.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..genotypes.nb201_text import NB201_EDGES, NB201_OPS
from ..models.nb201 import N_NODES, NB201Body, sum_inputs
from ..ops import create_op, wants_relu_input
from .arch import ArchParametersMixin
from .weighting import WEIGHTINGS

__all__ = ["NB201MixedCell", "NB201SuperNet"]


class NB201MixedCell(nn.Module):
    """A search cell: every edge holds all non-``none`` ops, mixed by the op weights ``[6, 5]``.

    Ops are built as NB201's search cells build them: non-affine BNs and bare pools (no DARTS pool-BN). The
    ReLU that starts each conv op is computed once per source node and shared by its outgoing edges; ``none``
    contributes zero and is never computed (its weight still counts in the normaliser).
    """

    def __init__(self, channels: int, op_names: Sequence[str] = NB201_OPS) -> None:
        super().__init__()
        self.op_names = tuple(op_names)
        self.columns = [k for k, op in enumerate(self.op_names) if op != "none"]
        self.edges = nn.ModuleList(
            nn.ModuleList(create_op(self.op_names[k], channels, 1, affine=False, search=False, relu=False)
                          for k in self.columns) for _ in NB201_EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes, relus = [x], [F.relu(x)]
        for j in range(1, N_NODES + 1):
            parts = []
            for e, (src, dst) in enumerate(NB201_EDGES):
                if dst != j:
                    continue
                for k, op in zip(self.columns, self.edges[e]):
                    parts.append(weights[e, k] * op(relus[src] if wants_relu_input(op) else nodes[src]))
            nodes.append(sum_inputs(parts, x))
            if j < N_NODES:  # the output node feeds no edge
                relus.append(F.relu(nodes[-1]))
        return nodes[-1]


class NB201SuperNet(ArchParametersMixin, NB201Body):
    """The NB201 supernet: one shared ``[6 edges, 5 ops]`` architecture matrix (key ``normal``) for all cells.

    Args:
        num_classes: classifier outputs.
        channels: C (16 in the NB201 DARTS/GDAS baselines).
        cells_per_stage: N (5 there).
        in_channels: image channels.
        weighting: name in :data:`~nasforge.supernets.WEIGHTINGS` (softmax for DARTS).
        generator: draws the initial alphas, 1e-3·N(0, 1) as in DARTS.
    """

    def __init__(self, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5, in_channels: int = 3,
                 weighting: str = "softmax", generator: torch.Generator | None = None) -> None:
        super().__init__(lambda c: NB201MixedCell(c), num_classes, channels, cells_per_stage, in_channels)
        self._weighting = WEIGHTINGS.get(weighting)
        self.weighting_name = weighting
        shape = (len(NB201_EDGES), len(NB201_OPS))
        self.alphas = nn.ParameterDict({"normal": nn.Parameter(1e-3 * torch.randn(shape, generator=generator))})
        self.register_buffer("alive_normal", torch.ones(shape, dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x, self.op_weights()["normal"])
