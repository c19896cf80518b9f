"""The NAO evaluation network (METHODS.md §5.1, §5.3): N cells per stage, 3 stages, a reduction cell between
stages (3N+2 cells), loose-end concatenation.

It is the DARTS CIFAR network (stem, reductions at ⌊L/3⌋ and ⌊2L/3⌋ — for L = 3N+2 exactly cells N and 2N+1 —,
auxiliary head on cell 2N+1, global pool, linear) with NAO's cell. The cell differs from the DARTS one in three
ways that change parameter counts or outputs:

* an input is preprocessed only when it must be: a FactorizedReduce when the previous cell reduced, a
  ReLU-Conv1×1-BN when its width differs from the cell's, nothing otherwise;
* the output concatenates the loose ends, which may include the cell inputs; in a reduction cell a loose input
  is brought to the reduced resolution by its own FactorizedReduce;
* drop-path is scaled by depth, ``p · (i+1)/L`` for cell ``i`` of ``L``, and by default also drops identity
  branches (the current NAO code does; METHODS-ADDENDUM.md §7 N14).

Plus a dropout before the classifier (NAO's ``keep_prob``). For the released NAONet-V2 (whose cells never
concatenate an input) the count equals the DARTS network's: 4,387,654 parameters at N=6, C=36 without the
auxiliary head.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, GenotypeError
from ..genotypes.core import CellArch, Genotype
from ..ops import FactorizedReduce, Identity, ReLUConvBN, create_op
from .cell import drop_path
from .heads import AuxiliaryHeadCIFAR
from .network import reduction_indices

__all__ = ["NAOCell", "NAONetworkCIFAR", "DropoutLinear", "build_nao_network", "calibration", "cell_plan",
           "nao_param_count"]


def calibration(c_in: int, c: int, reduced_since: bool) -> nn.Module | None:
    """NAO's input calibration: FactorizedReduce if the input is one resolution step larger, a 1×1 conv if its
    width differs, else nothing (``None``)."""
    if reduced_since:
        return FactorizedReduce(c_in, c)
    if c_in != c:
        return ReLUConvBN(c_in, c, 1, 1, 0)
    return None


class DropoutLinear(nn.Linear):
    """A linear classifier with dropout on its input in training mode (NAO's ``keep_prob``)."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x)


def cell_plan(genotype: Genotype, layers: int, channels: int
              ) -> Iterator[tuple[CellArch, int, int, int, bool, bool]]:
    """Per cell of the network: (cell, c_prev_prev, c_prev, c, reduction, reduction_prev), as NAO stacks them."""
    reductions = reduction_indices(layers)
    c_prev_prev = c_prev = 3 * channels  # the stem's width
    c, reduction_prev = channels, False
    for i in range(layers):
        reduction = i in reductions
        c = 2 * c if reduction else c
        cell = genotype.cell_for(i, reduction)
        yield cell, c_prev_prev, c_prev, c, reduction, reduction_prev
        c_prev_prev, c_prev, reduction_prev = c_prev, len(cell.concat) * c, reduction


@lru_cache(maxsize=4096)
def _params_of(kind: str, a: int, b: int, stride: int) -> int:
    """Parameters of one building block, counted by building it once on the meta device (cached; no memory, no
    draw from the global RNG)."""
    with torch.device("meta"):
        return _build_params(kind, a, b, stride)


def _build_params(kind: str, a: int, b: int, stride: int) -> int:
    if kind == "calibrate":
        module = calibration(a, b, stride == 2)
    elif kind == "reduce":
        module = FactorizedReduce(a, a)
    else:
        module = create_op(kind, a, stride)
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def nao_param_count(genotype: Genotype, num_classes: int = 10, layers: int = 20, channels: int = 36,
                    in_channels: int = 3) -> int:
    """Parameters of :class:`NAONetworkCIFAR` without the auxiliary head, summed from cached per-block counts
    (building a whole network per architecture is too slow for NAO's 1000-architecture size weights)."""
    stem = in_channels * 3 * channels * 9 + 2 * 3 * channels
    total, c_out = stem, 3 * channels
    for cell, c_pp, c_p, c, reduction, reduction_prev in cell_plan(genotype, layers, channels):
        total += _params_of("calibrate", c_pp, c, 2 if reduction_prev else 1)
        total += _params_of("calibrate", c_p, c, 1)
        total += sum(_params_of(e.op, c, 0, 2 if reduction and e.src < 2 else 1) for e in cell.edges)
        total += sum(_params_of("reduce", c, 0, 2) for s in cell.concat if reduction and s < 2)
        c_out = len(cell.concat) * c
    return total + c_out * num_classes + num_classes


class NAOCell(nn.Module):
    """One NAO evaluation cell.

    Args:
        cell: a NAO cell (two inputs; nodes sum their edges; ``concat`` = the loose ends).
        c_prev_prev, c_prev: widths of the two previous cells' outputs.
        c: width of every state inside the cell.
        reduction: whether this cell halves the resolution (edges from the inputs get stride 2).
        reduction_prev: whether the previous cell did (then the first input is FactorizedReduced).
        depth_scale: this cell's share of the network's drop-path rate, ``(i+1)/L``.
        drop_identity: drop-path also on identity branches.
    """

    def __init__(self, cell: CellArch, c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool,
                 depth_scale: float = 1.0, drop_identity: bool = True) -> None:
        super().__init__()
        if cell.n_inputs != 2:
            raise GenotypeError(f"{cell.name} cell has {cell.n_inputs} inputs; NAO cells have 2")
        self.reduction = reduction
        self.depth_scale = depth_scale
        self.drop_identity = drop_identity
        self.concat: tuple[int, ...] = tuple(cell.concat)
        self.multiplier = len(self.concat)
        self.preprocess0 = calibration(c_prev_prev, c, reduction_prev)
        self.preprocess1 = calibration(c_prev, c, False)
        self.ops = nn.ModuleList(create_op(e.op, c, 2 if reduction and e.src < 2 else 1) for e in cell.edges)
        self._node_inputs: list[list[tuple[int, int]]] = [
            [(i, e.src) for i, e in enumerate(cell.edges) if e.dst == node] for node in cell.nodes]
        # loose cell inputs of a reduction cell are reduced before the concatenation
        self.reduce_loose = nn.ModuleDict({str(s): FactorizedReduce(c, c) for s in self.concat
                                           if reduction and s < 2})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [s0 if self.preprocess0 is None else self.preprocess0(s0),
                  s1 if self.preprocess1 is None else self.preprocess1(s1)]
        p = drop_prob * self.depth_scale if self.training else 0.0
        for inputs in self._node_inputs:
            total: torch.Tensor | None = None
            for idx, src in inputs:
                op = self.ops[idx]
                h = op(states[src])
                if p > 0 and (self.drop_identity or not isinstance(op, Identity)):
                    h = drop_path(h, p)
                total = h if total is None else total + h
            assert total is not None
            states.append(total)
        outs = [self.reduce_loose[str(s)](states[s]) if str(s) in self.reduce_loose else states[s]
                for s in self.concat]
        return torch.cat(outs, dim=1)


class NAONetworkCIFAR(nn.Module):
    """The NAO CIFAR evaluation network (``NASNetworkCIFAR``): 3×3 conv stem to 3C, 3N+2 NAO cells, global
    average pool, dropout, linear.

    Args:
        genotype: a NAO genotype (normal and reduction cell).
        num_classes: classifier outputs.
        layers: number of cells L = 3N+2 (20 for N=6); reductions at ⌊L/3⌋ and ⌊2L/3⌋.
        channels: C, doubled at each reduction.
        auxiliary: the CIFAR auxiliary head on the output of cell ⌊2L/3⌋ (training only; excluded from counts).
        in_channels: image channels.
        dropout: dropout rate before the classifier (NAO CIFAR recipe: 0.4, i.e. keep 0.6).
        drop_identity: drop-path also on identity branches (the current NAO code).

    Attributes:
        drop_path_prob: the drop-path rate of the last cell; cell ``i`` uses ``drop_path_prob·(i+1)/L``.
    """

    def __init__(self, genotype: Genotype, num_classes: int = 10, layers: int = 20, channels: int = 36,
                 auxiliary: bool = False, in_channels: int = 3, dropout: float = 0.0,
                 drop_identity: bool = True) -> None:
        super().__init__()
        if layers < 1 or channels < 1:
            raise ConfigError(f"NAO network needs layers >= 1 and channels >= 1, got {layers} and {channels}")
        if genotype.sharing != "by_type" or len(genotype.cells) != 2:
            raise GenotypeError("the NAO network needs a genotype with one normal and one reduction cell")
        self.layers = layers
        self.drop_path_prob = 0.0
        self._aux_index = reduction_indices(layers)[1]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 3 * channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(3 * channels))
        self.cells = nn.ModuleList()
        c_prev, c_aux = 3 * channels, 3 * channels
        for slot in cell_plan(genotype, layers, channels):
            cell = NAOCell(*slot, depth_scale=(len(self.cells) + 1) / layers, drop_identity=drop_identity)
            self.cells.append(cell)
            c_prev = cell.multiplier * slot[3]
            if len(self.cells) - 1 == self._aux_index:
                c_aux = c_prev
        self.auxiliary_head: nn.Module | None = AuxiliaryHeadCIFAR(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = DropoutLinear(c_prev, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, aux_logits)``; ``aux_logits`` is ``None`` unless training with an aux head."""
        s0 = s1 = self.stem(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), logits_aux


def build_nao_network(genotype: Genotype, *, dataset_kind: str = "cifar", num_classes: int | None = None,
                      layers: int | None = None, channels: int | None = None, auxiliary: bool = False,
                      in_channels: int = 3, dropout: float = 0.0) -> NAONetworkCIFAR:
    """:class:`NAONetworkCIFAR` with NAO's CIFAR defaults (10 classes, N=6 → 20 cells, C=36) for ``None``s.

    Raises:
        ConfigError: ``dataset_kind`` is not ``cifar`` (the NAO ImageNet network is not built yet).
    """
    if dataset_kind != "cifar":
        raise ConfigError(f"the NAO evaluation network exists for CIFAR-style inputs only, got dataset kind "
                          f"{dataset_kind!r}; use --set train.network=cifar")
    return NAONetworkCIFAR(genotype, num_classes=10 if num_classes is None else num_classes,
                           layers=20 if layers is None else layers, channels=36 if channels is None else channels,
                           auxiliary=auxiliary, in_channels=in_channels, dropout=dropout)
