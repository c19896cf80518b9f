"""NAS-Bench-201 networks (Dong & Yang, ICLR 2020; METHODS.md §6.1): the stand-alone network of one cell and the
macro skeleton it shares with the weight-sharing supernet.

Macro (xautodl ``TinyNetwork``): a 3×3 conv stem to C channels + BN; three stages of N cells (C, 2C, 4C) with a
residual reduction block between stages (ReLU-Conv3×3(stride 2)-BN, ReLU-Conv3×3-BN, plus a 2×2 average pool
and 1×1 conv shortcut); BN + ReLU; global average pool; linear classifier. C=16, N=5 by default. Parameters are
created in the benchmark's order (stem, then cells and reduction blocks in sequence, then the head), so "the
first k parameter tensors" means the same thing as in the KNAS code, and the parameter count of the CIFAR-10
network equals the table's ``params_mb`` (a test checks several architectures).

The supernet (:class:`~nasforge.supernets.nb201.NB201SuperNet`) reuses :class:`NB201Body`, the skeleton.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..genotypes import Genotype
from ..genotypes.nb201_text import NB201_EDGES, nb201_ops_of
from ..ops import ReLUConvBN, create_op

__all__ = ["ResNetBasicBlock", "NB201Cell", "NB201Body", "NB201Network", "build_nb201_network", "sum_inputs", "N_NODES"]

N_NODES = 3


class ResNetBasicBlock(nn.Module):
    """The residual block between NB201 stages: two ReLU-Conv3×3-BN (the first strided) plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine=True)
        self.downsample: nn.Module | None = None
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False))
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1, 1, 0, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


def sum_inputs(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Sum of a node's inputs; a node fed only by ``none`` edges is zero (of its input's shape)."""
    if not parts:
        return torch.zeros_like(like)
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


class NB201Cell(nn.Module):
    """One fixed NB201 cell: node j = Σ_{i<j} op_ij(node i); output node 3. ``none`` edges are not computed."""

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        # every edge gets a module (``none`` is a parameter-free Zero) so indices follow the string order
        self.edges = nn.ModuleList(create_op(op, channels, 1, affine=True, search=False) for op in self.op_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, N_NODES + 1):
            parts = [self.edges[e](nodes[src]) for e, (src, dst) in enumerate(NB201_EDGES)
                     if dst == j and self.op_names[e] != "none"]
            nodes.append(sum_inputs(parts, x))
        return nodes[-1]


class NB201Body(nn.Module):
    """Shared by the network and the supernet: stem, three stages of cells made by ``make_cell(C)`` with residual blocks between them, and the head."""

    def __init__(self, make_cell: Callable[[int], nn.Module], num_classes: int, channels: int, cells_per_stage: int,
                 in_channels: int) -> None:
        super().__init__()
        if channels < 1 or cells_per_stage < 0 or num_classes < 1 or in_channels < 1:
            raise ConfigError(f"NB201 network needs channels >= 1, cells per stage >= 0, classes >= 1 and input "
                              f"channels >= 1; got C={channels}, N={cells_per_stage}, {num_classes} classes, "
                              f"{in_channels} input channels")
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.cells = nn.ModuleList()
        c_prev = channels
        for stage in range(3):
            c = channels * 2 ** stage
            if stage > 0:
                self.cells.append(ResNetBasicBlock(c_prev, c, 2))
            self.cells.extend(make_cell(c) for _ in range(cells_per_stage))
            c_prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def _logits(self, x: torch.Tensor, *cell_args: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for m in self.cells:
            x = m(x) if isinstance(m, ResNetBasicBlock) else m(x, *cell_args)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))


class NB201Network(NB201Body):
    """The stand-alone NB201 network of one cell (the benchmark's training network).

    Args:
        genotype: an NB201 genotype (see :mod:`nasforge.genotypes.nb201_text`).
        num_classes: classifier outputs (10 for CIFAR-10, 100, 120 for ImageNet16-120).
        channels: C, the width of the first stage (16 in the benchmark).
        cells_per_stage: N (5 in the benchmark).
        in_channels: image channels.

    ``forward`` returns ``(logits, None)`` like the DARTS evaluation networks, so the one trainer and
    ``evaluate`` take it as it is. NB201 trains without drop-path or auxiliary head.
    """

    def __init__(self, genotype: Genotype, num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5,
                 in_channels: int = 3) -> None:
        ops = nb201_ops_of(genotype)
        super().__init__(lambda c: NB201Cell(ops, c), num_classes, channels, cells_per_stage, in_channels)
        self.genotype = genotype

    @property
    def drop_path_prob(self) -> float:
        return 0.0

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        if value > 0:
            raise ConfigError("NB201 networks train without drop-path; use --preset nb201 (or nb201-tiny) or "
                              "--set train.drop_path=0")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self._logits(x), None


def build_nb201_network(genotype: Genotype, *, num_classes: int | None = None, cells_per_stage: int | None = None,
                        channels: int | None = None, auxiliary: bool = False, in_channels: int = 3) -> NB201Network:
    """:class:`NB201Network` with the benchmark's defaults (10 classes, N=5, C=16) for ``None`` arguments.

    Raises:
        ConfigError: an auxiliary head was asked for (NB201 networks have none).
    """
    if auxiliary:
        raise ConfigError("NB201 networks have no auxiliary head; use --preset nb201 (or nb201-tiny) or "
                          "--set train.auxiliary=false")
    return NB201Network(genotype, num_classes=10 if num_classes is None else num_classes,
                        channels=16 if channels is None else channels,
                        cells_per_stage=5 if cells_per_stage is None else cells_per_stage, in_channels=in_channels)
