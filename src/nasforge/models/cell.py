"""The stand-alone (evaluation) cell built from one :class:`~nasforge.genotypes.CellArch` (METHODS.md §1.2, §1.3).

Follows ``quark0/darts`` ``cnn/model.py`` ``Cell``: the two cell inputs are preprocessed to ``c`` channels, every
genotype edge becomes one op, every intermediate node is the sum of its incoming edges, and the output is the
channel concatenation of ``cell.concat``. Unlike the DARTS code, a node may have any number of incoming edges
(GOLD-NAS keeps several ops per edge and nodes with one or three inputs) and cells with a single input (the
previous cell only) are supported. Cells with more than two inputs are not.

Like DARTS, every edge and both preprocessings are built even if a node never reaches the output, so parameter
counts match the reference implementations for any genotype.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import GenotypeError
from ..genotypes.core import CellArch
from ..ops import FactorizedReduce, Identity, ReLUConvBN, create_op

__all__ = ["EvalCell", "drop_path"]


def drop_path(x: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the kept ones by ``1/(1-p)``.

    One Bernoulli draw per sample (not per element), so a dropped path contributes nothing for that image and
    the expected value of the output is unchanged. Not in place: the op output may be needed by autograd.
    ``generator`` (on ``x``'s device) makes the masks reproducible without touching the global RNG.
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.size(0),) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)  # (N, 1, 1, 1)
    mask.bernoulli_(keep, generator=generator)
    return x * mask / keep


class EvalCell(nn.Module):
    """One evaluation-network cell: preprocessing, one op per genotype edge, node sums and concatenation.

    Args:
        cell: The cell architecture; edges from a cell input get stride 2 when ``reduction`` is true.
        c_prev_prev: Channels of the output of the cell two positions back (the first input).
        c_prev: Channels of the output of the previous cell (the last input).
        c: Channels of every node inside the cell.
        reduction: Whether this cell halves the resolution.
        reduction_prev: Whether the previous cell halved it; then the first input is one resolution step larger
            and is brought down with a :class:`FactorizedReduce` instead of a 1×1 conv.
    """

    def __init__(self, cell: CellArch, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        if cell.n_inputs not in (1, 2):
            raise GenotypeError(f"{cell.name} cell has {cell.n_inputs} inputs; evaluation networks build cells "
                                f"with 1 input (the previous cell) or 2 (the two previous cells)")
        if reduction and any(n < cell.n_inputs for n in cell.concat):
            raise GenotypeError(f"{cell.name} cell is a reduction cell but concatenates a cell input "
                                f"{list(cell.concat)}; its resolution would not match the reduced nodes")
        self.n_inputs = cell.n_inputs
        self.reduction = reduction
        self.concat: tuple[int, ...] = tuple(cell.concat)
        self.multiplier = len(cell.concat)
        if cell.n_inputs == 2:
            self.preprocess0: nn.Module | None = (FactorizedReduce(c_prev_prev, c) if reduction_prev
                                                  else ReLUConvBN(c_prev_prev, c, 1, 1, 0))
        else:
            self.preprocess0 = None  # a 1-input cell never reads the cell two back; building it would leave
            # parameters without gradients
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self.ops = nn.ModuleList(
            create_op(e.op, c, 2 if reduction and e.src < cell.n_inputs else 1) for e in cell.edges)
        # node -> [(edge index, source node)], in genotype order, computed once instead of every forward
        self._node_inputs: list[list[tuple[int, int]]] = [
            [(i, e.src) for i, e in enumerate(cell.edges) if e.dst == node] for node in cell.nodes]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """Run the cell on the outputs of the two previous cells.

        Args:
            s0: Output of the cell two positions back (ignored by 1-input cells).
            s1: Output of the previous cell.
            drop_prob: Drop-path rate, applied in training mode only and never to an :class:`Identity` op
                (dropping a skip would remove the cell's shortcut, which DARTS keeps).

        Returns:
            The concatenation of the ``concat`` nodes, ``multiplier * c`` channels.
        """
        states = [self.preprocess0(s0), self.preprocess1(s1)] if self.preprocess0 is not None \
            else [self.preprocess1(s1)]
        use_drop = self.training and drop_prob > 0.0
        for inputs in self._node_inputs:
            total: torch.Tensor | None = None
            for idx, src in inputs:
                op = self.ops[idx]
                h = op(states[src])
                if use_drop and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None  # CellArch guarantees every node has an input
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)
