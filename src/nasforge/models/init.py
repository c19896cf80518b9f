"""Deterministic initialisation of any network from an explicit generator (no global RNG).

Proxies score networks "at initialisation", NAO-V2 re-initialises its supernet every iteration and the
NB201 supernets start from it: all need the same draw for the same seed whatever ran before.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["init_network"]


@torch.no_grad()
def init_network(net: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise ``net`` exactly as PyTorch's defaults would, but drawing from ``generator``.

    Convs and linears: Kaiming-uniform weights (a=√5) and uniform biases in ±1/√fan_in; BatchNorms: unit scale,
    zero shift, fresh running statistics. So a score depends only on (architecture, seed) and never on the
    global RNG or on what ran before.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()
    return net
