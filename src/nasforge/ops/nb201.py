"""The NAS-Bench-201 ops (Dong & Yang, ICLR 2020; METHODS.md §6.1).

Five ops: ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``. Three already exist
in the DARTS registry with the same meaning at stride 1 — the only stride NB201 cells use: ``none`` (zeros),
``skip_connect`` (identity) and, in evaluation mode, ``avg_pool_3x3`` (3×3 average pool, padding 1, padding not
counted, no BN). Only the two "normal" convolutions are new: ReLU → Conv(k, padding k//2, no bias) → BN, which
is :class:`~nasforge.ops.primitives.ReLUConvBN`.

NB201's *search* cells differ from DARTS's in one respect: their pools carry no BN. The NB201 supernet therefore
builds its ops with ``search=False, affine=False`` (non-affine BNs, bare pools) rather than registering
NB201-specific names. One detail is not reproduced: the xautodl search cells give a conv a bias when its BN is
non-affine; ours never have one (no effect on evaluation networks, whose BNs are affine).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .primitives import ReLUConvBN

__all__ = ["NB201_CONVS"]


def _nor_conv(k: int) -> Callable[[int, int, bool, bool, bool], nn.Module]:
    return lambda c, s, affine, search, relu: ReLUConvBN(c, c, k, s, k // 2, affine, relu=relu)


#: The ops NB201 adds to the registry (name -> factory ``(C, stride, affine, search, relu)``).
NB201_CONVS: dict[str, Callable[[int, int, bool, bool, bool], nn.Module]] = {
    "nor_conv_1x1": _nor_conv(1),
    "nor_conv_3x3": _nor_conv(3),
}
