"""How an edge turns its architecture parameters into op weights (pluggable).

A weighting maps ``alpha`` of shape ``[edges, ops]`` and a boolean ``alive`` mask of the same shape to op
weights; removed ops must get weight exactly 0 so that they can be skipped. DARTS and P-DARTS use a softmax
over the ops of an edge; GOLD-NAS a sigmoid per op (ops do not compete); EnTranNAS a thresholded softmax.
Register more with ``@WEIGHTINGS.register(name)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry

__all__ = ["WEIGHTINGS", "Weighting", "softmax_weights", "sigmoid_weights"]

Weighting = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
WEIGHTINGS: Registry[Weighting] = Registry("edge weighting")


@WEIGHTINGS.register("softmax")
def softmax_weights(alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Softmax over the alive ops of each edge (removed ops: weight 0, excluded from the normaliser)."""
    return torch.softmax(alpha.masked_fill(~alive, float("-inf")), dim=-1).masked_fill(~alive, 0.0)


@WEIGHTINGS.register("sigmoid")
def sigmoid_weights(alpha: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Independent sigmoid per op (GOLD-NAS): no competition between the ops of an edge."""
    return torch.sigmoid(alpha) * alive
