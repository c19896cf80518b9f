"""Candidate operations behind a name registry.

``create_op(name, channels, stride, affine=..., search=..., relu=...)`` builds one op. In *search* mode
(``search=True``) the BNs are non-affine and pools carry an extra BN (DARTS's search network); in evaluation
mode BNs are affine and pools are bare. ``relu=False`` builds conv ops without their leading ReLU for callers
that apply it once to a shared input (see ``primitives``).

To add an op: decorate a factory ``(C, stride, affine, search, relu) -> nn.Module`` with
``@OPS.register("name")``; its name becomes valid in genotypes too.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..genotypes.core import register_op_name
from ..registry import Registry
from .nb201 import NB201_CONVS
from .primitives import Conv7x1_1x7, DilConv, FactorizedReduce, Identity, Pool, ReLUConvBN, SepConv, Zero

__all__ = ["OPS", "create_op", "DARTS_OPS", "OpFactory", "wants_relu_input", "ReLUConvBN", "FactorizedReduce",
           "Identity", "Zero"]

OpFactory = Callable[[int, int, bool, bool, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("op")

#: The eight DARTS search candidates in their canonical index order (P-DARTS relies on this order).
DARTS_OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def _register(name: str, factory: OpFactory) -> None:
    OPS.add(name, factory)
    register_op_name(name)


def create_op(name: str, channels: int, stride: int, *, affine: bool = True, search: bool = False,
              relu: bool = True) -> nn.Module:
    """Build op ``name`` for ``channels`` in and out at ``stride`` (1 or 2)."""
    return OPS.get(name)(channels, stride, affine, search, relu)


def wants_relu_input(op: nn.Module) -> bool:
    """True when ``op`` was built with ``relu=False`` and must be fed ReLU(x)."""
    return bool(getattr(op, "wants_relu_input", False))


def _pool(kind: str, k: int) -> OpFactory:
    return lambda c, s, affine, search, relu: Pool(kind, k, s, search_bn_channels=c if search else None)


def _sep(k: int) -> OpFactory:
    return lambda c, s, affine, search, relu: SepConv(c, c, k, s, k // 2, affine, relu=relu)


def _dil(k: int) -> OpFactory:
    return lambda c, s, affine, search, relu: DilConv(c, c, k, s, (k // 2) * 2, 2, affine, relu=relu)


def _skip(c: int, s: int, affine: bool, search: bool, relu: bool) -> nn.Module:
    return Identity() if s == 1 else FactorizedReduce(c, c, affine, relu=relu)


def _conv(k: int) -> OpFactory:
    return lambda c, s, affine, search, relu: ReLUConvBN(c, c, k, s, k // 2, affine, relu=relu)


_register("none", lambda c, s, affine, search, relu: Zero(s))
_register("max_pool_3x3", _pool("max", 3))
_register("avg_pool_3x3", _pool("avg", 3))
_register("skip_connect", _skip)
_register("sep_conv_3x3", _sep(3))
_register("sep_conv_5x5", _sep(5))
_register("dil_conv_3x3", _dil(3))
_register("dil_conv_5x5", _dil(5))
_register("sep_conv_7x7", _sep(7))
_register("conv_7x1_1x7", lambda c, s, affine, search, relu: Conv7x1_1x7(c, s, affine, relu=relu))
_register("conv_1x1", _conv(1))
_register("conv_3x3", _conv(3))
_register("max_pool_5x5", _pool("max", 5))
_register("max_pool_7x7", _pool("max", 7))
_register("avg_pool_5x5", _pool("avg", 5))
for _name, _factory in NB201_CONVS.items():  # NAS-Bench-201's ReLU-Conv-BN ops (its other three are above)
    _register(_name, _factory)
