"""What every weight-sharing network offers its strategy: architecture parameters apart from weights.

A supernet using this mixin holds ``self.alphas`` (an ``nn.ParameterDict``, one ``[edges, ops]`` matrix per
cell key, created in a fixed order), a bool buffer ``alive_<key>`` of the same shape per key, and
``self._weighting`` (from :data:`~nasforge.supernets.weighting.WEIGHTINGS`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ArchParametersMixin"]


class ArchParametersMixin:
    """Accessors shared by :class:`~nasforge.supernets.SuperNet` and the NAS-Bench-201 supernet."""

    alphas: nn.ParameterDict

    def alive(self, key: str) -> torch.Tensor:
        return getattr(self, f"alive_{key}")

    def arch_keys(self) -> list[str]:
        return list(self.alphas.keys())

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters in a fixed order (cell keys in creation order)."""
        return [self.alphas[k] for k in self.alphas.keys()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]  # type: ignore[attr-defined]

    def op_weights(self) -> dict[str, torch.Tensor]:
        """Per cell key, the ``[edges, ops]`` op weights (0 for removed ops)."""
        return {k: self._weighting(self.alphas[k], self.alive(k)) for k in self.alphas.keys()}  # type: ignore[attr-defined]
