"""Building blocks of the DARTS-family candidate operations (METHODS.md §1.1).

Every conv block begins with a ReLU. A search cell feeds the same input to many ops, so these blocks can be
built with ``relu=False`` and fed an input the caller has already passed through ReLU once; the output is
identical and the ReLU (and its saved activation) is computed once instead of once per op.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["split_final_bn", "ReLUConvBN", "SepConv", "DilConv", "FactorizedReduce", "Conv7x1_1x7", "Zero", "Identity", "Pool"]


def _maybe_relu(relu: bool) -> list[nn.Module]:
    return [nn.ReLU(inplace=False)] if relu else []


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv(k, stride, padding) → BN; the cell preprocessing and the 1×1/3×3 conv ops."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True,
                 relu: bool = True) -> None:
        super().__init__(*_maybe_relu(relu), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))
        self.wants_relu_input = not relu


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k dilated conv → pointwise 1×1 → BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True, relu: bool = True) -> None:
        super().__init__(
            *_maybe_relu(relu),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )
        self.wants_relu_input = not relu


class SepConv(nn.Sequential):
    """Two stacked dilation-1 DilConv blocks; the stride applies only in the first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True,
                 relu: bool = True) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine, relu=relu),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine, relu=True),
        )
        self.wants_relu_input = not relu


class Conv7x1_1x7(nn.Sequential):
    """ReLU → 1×7 conv → 7×1 conv → BN (AmoebaNet's factorised 7×7)."""

    def __init__(self, c: int, stride: int, affine: bool = True, relu: bool = True) -> None:
        super().__init__(
            *_maybe_relu(relu),
            nn.Conv2d(c, c, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(c, c, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )
        self.wants_relu_input = not relu


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing every other pixel: ReLU, two 1×1 stride-2 convs (the second on the
    input shifted by one pixel), concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, relu: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        self.wants_relu_input = not relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pre_bn(x))

    def pre_bn(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # the shifted branch sees x[1:, 1:]; for odd sizes pad so both branches agree in shape
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2:
            shifted = nn.functional.pad(shifted, (0, 1, 0, 1))
        return torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (subsampled when strided)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Identity):
    """The stride-1 ``skip_connect``; drop-path never drops it (DARTS convention)."""


class Pool(nn.Module):
    """3×3 max or average pool (average excludes padding), optionally followed by a non-affine BN as DARTS
    does in the search network."""

    def __init__(self, kind: str, kernel: int, stride: int, search_bn_channels: int | None = None) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(kernel, stride=stride, padding=kernel // 2)
        else:
            self.pool = nn.AvgPool2d(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)
        self.bn = nn.BatchNorm2d(search_bn_channels, affine=False) if search_bn_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return self.bn(x) if self.bn is not None else x

    def pre_bn(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def split_final_bn(op: nn.Module) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], nn.BatchNorm2d] | None:
    """Split ``op`` into (the steps before its final BatchNorm, that BatchNorm), or None if it does not end in
    one. The steps are modules or bound methods (so copies of the op stay consistent); applying them in order
    and then the BN equals ``op(x)``. Lets a supernet fold an architecture weight into the BN's scale."""
    if isinstance(op, nn.Sequential) and len(op):
        head, last = list(op)[:-1], op[-1]
        if isinstance(last, nn.BatchNorm2d):
            return head, last
        split = split_final_bn(last)
        return None if split is None else (head + split[0], split[1])
    bn = getattr(op, "bn", None)
    if isinstance(bn, nn.BatchNorm2d) and hasattr(op, "pre_bn"):
        return [op.pre_bn], bn
    return None
