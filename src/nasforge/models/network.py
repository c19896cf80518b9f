"""DARTS evaluation networks (METHODS.md §1.3; ``quark0/darts`` ``cnn/model.py`` ``NetworkCIFAR``/``NetworkImageNet``).

The channel bookkeeping follows the DARTS code line for line, so parameter counts match the published ones
(DARTS_V2 at 20 cells / C=36: 3,349,342 without the auxiliary head). Additions over DARTS:

* unshared genotypes (``sharing="none"``): one cell architecture per position, and the number of cells is the
  genotype's;
* cells with any ``concat`` length (NASNet/AmoebaNet) — each cell's width follows its own ``multiplier``;
* adaptive global pooling and an adaptive aux pool, so inputs smaller than 32×32 / 224×224 work;
* ``in_channels`` for grayscale data;
* no hard-coded device, no in-place ReLUs on cell outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, GenotypeError
from ..genotypes.core import Genotype
from .cell import EvalCell
from .heads import AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet

__all__ = ["NetworkCIFAR", "NetworkImageNet", "reduction_indices", "DATASET_KINDS"]

DATASET_KINDS = ("cifar", "imagenet")


def reduction_indices(layers: int) -> tuple[int, int]:
    """Positions of the two reduction cells in a network of ``layers`` cells: ``layers//3`` and ``2*layers//3``.

    This is the DARTS rule; the auxiliary head also sits on the output of cell ``2*layers//3``.
    """
    return layers // 3, 2 * layers // 3


def _resolve_layers(genotype: Genotype, layers: int | None, default: int) -> int:
    required = genotype.num_cells_required
    if layers is None:
        return required if required is not None else default
    if required is not None and layers != required:
        raise GenotypeError(f"the genotype has {required} unshared cells but the network was asked for {layers}; "
                            f"build it with layers={required} (or layers=None)")
    if layers < 1:
        raise ConfigError(f"layers must be >= 1, got {layers}")
    return layers


class _CellStack(nn.Module):
    """Shared body of the CIFAR and ImageNet networks: the cells, the aux head hook, pooling and classifier."""

    cells: nn.ModuleList
    auxiliary_head: nn.Module | None
    global_pooling: nn.Module
    classifier: nn.Linear
    drop_path_prob: float
    _aux_index: int

    def _build_cells(self, genotype: Genotype, layers: int, c_prev_prev: int, c_prev: int, c_curr: int,
                     reduction_prev: bool) -> tuple[int, int]:
        """Append the cells; returns (channels of the last cell, channels at the aux position)."""
        self.cells = nn.ModuleList()
        reductions = reduction_indices(layers)
        c_aux = c_prev
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = EvalCell(genotype.cell_for(i, reduction), c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self._aux_index:
                c_aux = c_prev
        return c_prev, c_aux

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self._aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out), logits_aux


class NetworkCIFAR(_CellStack):
    """The DARTS CIFAR evaluation network: 3×3 conv stem, ``layers`` cells, global average pool, linear.

    Args:
        genotype: Shared (normal + reduction cell) or unshared (one cell per position) architecture.
        num_classes: Classifier outputs.
        layers: Number of cells; must equal ``len(genotype.cells)`` for unshared genotypes (``None``: the
            genotype's count, or 20 for shared ones).
        channels: Initial cell width C; doubled at each of the two reduction cells.
        auxiliary: Build the auxiliary head on the output of cell ``2*layers//3`` (used in training only). Its
            AvgPool(5, stride 3) assumes an 8×8 map (32×32 input); other sizes (e.g. 2×2 for 8×8 digits) are
            pooled adaptively to 2×2 instead (see :mod:`nasforge.models.heads`).
        in_channels: Image channels (3 for CIFAR, 1 for grayscale digits).
        stem_multiplier: The stem outputs ``stem_multiplier * C`` channels.

    Attributes:
        drop_path_prob: Drop-path rate for the next forward passes; the trainer sets it every epoch.
    """

    def __init__(self, genotype: Genotype, num_classes: int = 10, layers: int | None = 20, channels: int = 36,
                 auxiliary: bool = False, in_channels: int = 3, stem_multiplier: int = 3) -> None:
        super().__init__()
        layers = _resolve_layers(genotype, layers, 20)
        self.layers = layers
        self.drop_path_prob: float = 0.0
        self._aux_index = reduction_indices(layers)[1]
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev, c_aux = self._build_cells(genotype, layers, c_curr, c_curr, channels, reduction_prev=False)
        self.auxiliary_head: nn.Module | None = AuxiliaryHeadCIFAR(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, aux_logits)``; ``aux_logits`` is ``None`` unless training with an aux head."""
        s = self.stem(x)
        return self._run_cells(s, s)


class NetworkImageNet(_CellStack):
    """The DARTS ImageNet (mobile setting) evaluation network: two strided stems, cells, 7×7 pool, linear.

    The stems take 224×224 to 28×28; the first cell treats its predecessor as a reduction cell (the stems
    reduce twice between ``s0`` and ``s1``), so it brings ``s0`` down with a FactorizedReduce. The final pool
    is adaptive: identical to DARTS's ``AvgPool2d(7)`` at 224×224, and it also accepts smaller images.

    Args:
        genotype: Shared or unshared architecture (see :class:`NetworkCIFAR`).
        num_classes: Classifier outputs.
        layers: Number of cells (``None``: the genotype's count, or 14).
        channels: Initial cell width C.
        auxiliary: Build the ImageNet auxiliary head on the output of cell ``2*layers//3``.
        in_channels: Image channels.
    """

    def __init__(self, genotype: Genotype, num_classes: int = 1000, layers: int | None = 14, channels: int = 48,
                 auxiliary: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        layers = _resolve_layers(genotype, layers, 14)
        self.layers = layers
        self.drop_path_prob: float = 0.0
        self._aux_index = reduction_indices(layers)[1]
        c = channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
        # not in place: stem0's output is also the first cell's s0
        self.stem1 = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(c))
        c_prev, c_aux = self._build_cells(genotype, layers, c, c, c, reduction_prev=True)
        self.auxiliary_head: nn.Module | None = AuxiliaryHeadImageNet(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, aux_logits)``; ``aux_logits`` is ``None`` unless training with an aux head."""
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._run_cells(s0, s1)
