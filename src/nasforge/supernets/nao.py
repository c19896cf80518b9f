"""NAO's single-path weight-sharing supernet (ENAS style; METHODS.md §5.1, METHODS-ADDENDUM.md §7 N8).

Every node has an ``x`` and a ``y`` slot; every slot holds one copy of each op. The weights of a copy
(depthwise and pointwise kernels, BatchNorm scale and shift) are **indexed by the input the architecture
chooses** for that slot: a ``[n_inputs, ...]`` tensor whose row ``k`` serves input ``k``; the BatchNorm running
statistics are shared by all rows. The cell's loose ends (reduced to the cell's resolution in reduction cells)
are combined back to C channels by ReLU → 1×1 conv → BN, whose weight is the concatenation of per-state
``C×C`` blocks for the states in the output; its BN is one, shared by all selections.

``forward(x, seq)`` runs exactly one architecture (a NAO sequence): only the chosen op copies are computed,
so only their chosen rows receive gradients. Drop-path (``drop_path_prob``, scaled by depth as in NAO) draws
from an explicit generator.

Modelling decisions (NAO's code is not copied): pools carry no BatchNorm; the combine and preprocessing BNs are
affine; weights are initialised as PyTorch's defaults would, drawn from the supernet's generator.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import GenotypeError
from ..genotypes.nao_seq import loose_ends
from ..models.cell import drop_path
from ..models.nao import calibration
from ..models.network import reduction_indices
from ..models.init import init_network
from ..ops.norm import functional_batch_norm, synchronised

__all__ = ["NAOSuperNet", "NAOSearchCell", "IndexedBN", "ws_op", "WS_OPS"]


def _kaiming(t: torch.Tensor, generator: torch.Generator | None) -> None:
    for row in t:  # each input's slice is initialised as a stand-alone conv would be
        nn.init.kaiming_uniform_(row, a=math.sqrt(5), generator=generator)


class IndexedBN(nn.Module):
    """BatchNorm whose scale and shift are chosen by an index; running statistics are shared. ``synchronise``
    (set by :func:`~nasforge.ops.norm.sync_batch_norms` under torchrun): batch statistics over all ranks."""

    def __init__(self, n: int, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, channels))
        self.bias = nn.Parameter(torch.zeros(n, channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.synchronise = False

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return functional_batch_norm(x, self.running_mean, self.running_var, self.weight[k], self.bias[k],
                                     self.training, 0.1, 1e-5, synchronised(self))

    def reset(self, generator: torch.Generator | None) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.running_mean.zero_()
        self.running_var.fill_(1.0)


class _WSModule(nn.Module):
    """A weight-shared op: ``forward(x, k, stride)`` with ``k`` the chosen input."""

    def reset(self, generator: torch.Generator | None) -> None:
        for m in self.children():
            if hasattr(m, "reset"):
                m.reset(generator)


class WSConvBlock(_WSModule):
    """ReLU → (depthwise k×k with dilation → pointwise 1×1) or (full k×k conv) → BN, rows indexed by input."""

    def __init__(self, n: int, c: int, kernel: int, dilation: int = 1, separable: bool = True) -> None:
        super().__init__()
        self.kernel, self.dilation, self.separable, self.c = kernel, dilation, separable, c
        if separable:
            self.dw = nn.Parameter(torch.empty(n, c, 1, kernel, kernel))
            self.pw = nn.Parameter(torch.empty(n, c, c, 1, 1))
        else:
            self.dw = nn.Parameter(torch.empty(n, c, c, kernel, kernel))
            self.register_parameter("pw", None)
        self.bn = IndexedBN(n, c)
        self.reset(None)

    def reset(self, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            _kaiming(self.dw, generator)
            if self.pw is not None:
                _kaiming(self.pw, generator)
        self.bn.reset(generator)

    def forward(self, x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
        pad = (self.kernel // 2) * self.dilation
        h = F.relu(x)
        if self.separable:
            h = F.conv2d(h, self.dw[k], stride=stride, padding=pad, dilation=self.dilation, groups=self.c)
            h = F.conv2d(h, self.pw[k])
        else:
            h = F.conv2d(h, self.dw[k], stride=stride, padding=pad, dilation=self.dilation)
        return self.bn(h, k)


class WSSepConv(_WSModule):
    """Two separable blocks (DARTS/NAO ``SepConv``); the stride applies in the first."""

    def __init__(self, n: int, c: int, kernel: int) -> None:
        super().__init__()
        self.block1 = WSConvBlock(n, c, kernel)
        self.block2 = WSConvBlock(n, c, kernel)

    def forward(self, x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
        return self.block2(self.block1(x, k, stride), k, 1)


class WSFactorizedReduce(_WSModule):
    """ReLU, two 1×1 stride-2 convs (the second on the input shifted by a pixel), concatenated, BN; rows indexed."""

    def __init__(self, n: int, c: int) -> None:
        super().__init__()
        if c % 2:
            raise GenotypeError(f"FactorizedReduce needs an even number of channels, got {c}")
        self.conv1 = nn.Parameter(torch.empty(n, c // 2, c, 1, 1))
        self.conv2 = nn.Parameter(torch.empty(n, c // 2, c, 1, 1))
        self.bn = IndexedBN(n, c)
        self.reset(None)

    def reset(self, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            _kaiming(self.conv1, generator)
            _kaiming(self.conv2, generator)
        self.bn.reset(generator)

    def forward(self, x: torch.Tensor, k: int, stride: int = 2) -> torch.Tensor:
        h = F.relu(x)
        shifted = h[:, :, 1:, 1:]
        if h.shape[-1] % 2:
            shifted = F.pad(shifted, (0, 1, 0, 1))
        out = torch.cat([F.conv2d(h, self.conv1[k], stride=2), F.conv2d(shifted, self.conv2[k], stride=2)], dim=1)
        return self.bn(out, k)


class WSSkip(_WSModule):
    """Identity at stride 1; at stride 2 (only inputs 0 and 1 of a reduction cell) an indexed FactorizedReduce."""

    def __init__(self, n: int, c: int) -> None:
        super().__init__()
        self.reduce = WSFactorizedReduce(min(n, 2), c)

    def forward(self, x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
        return x if stride == 1 else self.reduce(x, k)


class WSPool(_WSModule):
    """Max or average pool (average excludes padding); no parameters."""

    def __init__(self, kind: str, kernel: int) -> None:
        super().__init__()
        self.kind, self.kernel = kind, kernel

    def forward(self, x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, stride, self.kernel // 2)
        return F.avg_pool2d(x, self.kernel, stride, self.kernel // 2, count_include_pad=False)


class WSZero(_WSModule):
    """``none``: zeros of the output shape."""

    def forward(self, x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
        return x[:, :, ::stride, ::stride].mul(0.0)


#: op name -> factory ``(n_inputs, C) -> weight-shared module``; the ops a NAO supernet can hold.
WS_OPS = {
    "sep_conv_3x3": lambda n, c: WSSepConv(n, c, 3),
    "sep_conv_5x5": lambda n, c: WSSepConv(n, c, 5),
    "sep_conv_7x7": lambda n, c: WSSepConv(n, c, 7),
    "dil_conv_3x3": lambda n, c: WSConvBlock(n, c, 3, dilation=2),
    "dil_conv_5x5": lambda n, c: WSConvBlock(n, c, 5, dilation=2),
    "conv_1x1": lambda n, c: WSConvBlock(n, c, 1, separable=False),
    "conv_3x3": lambda n, c: WSConvBlock(n, c, 3, separable=False),
    "avg_pool_3x3": lambda n, c: WSPool("avg", 3),
    "max_pool_3x3": lambda n, c: WSPool("max", 3),
    "avg_pool_5x5": lambda n, c: WSPool("avg", 5),
    "max_pool_5x5": lambda n, c: WSPool("max", 5),
    "skip_connect": lambda n, c: WSSkip(n, c),
    "none": lambda n, c: WSZero(),
}


def ws_op(name: str, n_inputs: int, channels: int) -> _WSModule:
    """The weight-shared copy of op ``name`` for a slot that may read ``n_inputs`` states."""
    if name not in WS_OPS:
        raise GenotypeError(f"op {name!r} has no weight-shared NAO version; choose from {', '.join(WS_OPS)}")
    return WS_OPS[name](n_inputs, channels)


class WSCombine(nn.Module):
    """ReLU → 1×1 conv built from per-state ``C×C`` blocks of the concatenated states → one shared BN."""

    def __init__(self, n_states: int, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_states, c, c, 1, 1))
        self.bn = nn.BatchNorm2d(c)
        self.reset(None)

    def reset(self, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            for row in self.weight:  # fan-in of one block, as NAO's per-state blocks
                nn.init.kaiming_uniform_(row, a=math.sqrt(5), generator=generator)
        self.bn.reset_parameters()

    def forward(self, states: Sequence[torch.Tensor], which: Sequence[int]) -> torch.Tensor:
        w = torch.cat([self.weight[s] for s in which], dim=1)
        return self.bn(F.conv2d(F.relu(torch.cat(list(states), dim=1)), w))


class NAOSearchCell(nn.Module):
    """One supernet cell of ``nodes`` nodes; outputs C channels whatever the architecture."""

    def __init__(self, ops: Sequence[str], nodes: int, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, depth_scale: float) -> None:
        super().__init__()
        self.nodes, self.reduction, self.depth_scale = nodes, reduction, depth_scale
        self.preprocess0 = calibration(c_prev_prev, c, reduction_prev)
        self.preprocess1 = calibration(c_prev, c, False)
        self.slots = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(ws_op(op, i + 2, c) for op in ops) for _slot in range(2))
            for i in range(nodes))
        self.reduce_loose = WSFactorizedReduce(2, c) if reduction else None
        self.combine = WSCombine(nodes + 2, c)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, seq: Sequence[int], drop_prob: float,
                generator: torch.Generator | None) -> torch.Tensor:
        states = [s0 if self.preprocess0 is None else self.preprocess0(s0),
                  s1 if self.preprocess1 is None else self.preprocess1(s1)]
        p = drop_prob * self.depth_scale if self.training else 0.0
        for i in range(self.nodes):
            total = None
            for slot in range(2):
                src, op = seq[4 * i + 2 * slot], seq[4 * i + 2 * slot + 1]
                h = self.slots[i][slot][op](states[src], src, 2 if self.reduction and src < 2 else 1)
                if p > 0:
                    h = drop_path(h, p, generator)
                total = h if total is None else total + h
            states.append(total)
        concat = loose_ends(self.nodes + 2, [seq[4 * i + 2 * s] for i in range(self.nodes) for s in range(2)])
        outs = [self.reduce_loose(states[s], s) if self.reduce_loose is not None and s < 2 else states[s]
                for s in concat]
        return self.combine(outs, concat)


class NAOSuperNet(nn.Module):
    """The NAO search network: stem to 3C, 3N+2 search cells (C doubled at the two reductions), pool, linear.

    Args:
        space: the :class:`~nasforge.spaces.nao.NAOSpace` (ops, B).
        num_classes: classifier outputs.
        cells_per_stage: N (3 in NAO's search).
        channels: C (20 in NAO's search).
        in_channels: image channels.
        generator: draws the initial weights (PyTorch's default schemes) and the drop-path masks.

    ``forward(x, seq)`` returns the logits of architecture ``seq`` (normal cell's ``4B`` ints, then reduction's).
    """

    def __init__(self, space, num_classes: int = 10, cells_per_stage: int = 3, channels: int = 20,
                 in_channels: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if cells_per_stage < 1 or channels < 2 or channels % 2:
            raise GenotypeError(f"NAO supernet needs N >= 1 and an even C >= 2, got N={cells_per_stage}, C={channels}")
        self.space = space
        self.layers = 3 * cells_per_stage + 2
        self.drop_path_prob = 0.0
        self.generator = generator
        reductions = reduction_indices(self.layers)
        c_curr = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c, red_prev = c_curr, c_curr, channels, False
        self.cells = nn.ModuleList()
        for i in range(self.layers):
            red = i in reductions
            c = 2 * c if red else c
            self.cells.append(NAOSearchCell(space.ops, space.nodes, c_pp, c_p, c, red, red_prev,
                                            (i + 1) / self.layers))
            c_pp, c_p, red_prev = c_p, c, red
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None) -> None:
        """PyTorch's default initialisation of every weight, drawn from ``generator`` (global RNG if None)."""
        if generator is not None:
            init_network(self, generator)
        for m in self.modules():
            if isinstance(m, (WSConvBlock, WSFactorizedReduce, WSCombine)):
                m.reset(generator)

    def forward(self, x: torch.Tensor, seq: Sequence[int]) -> torch.Tensor:
        half = 4 * self.space.nodes
        normal, reduce = seq[:half], seq[half:]
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal, self.drop_path_prob, self.generator)
        return self.classifier(self.global_pooling(s1).flatten(1))
