"""Auxiliary classifier heads of the DARTS evaluation networks (METHODS.md §1.3, ``quark0/darts`` ``cnn/model.py``).

Both heads were written for one input size (CIFAR 8×8 → AvgPool 5/3, ImageNet 7×7 → AvgPool 5/2, each giving
2×2, then a 2×2 conv to 1×1). To keep the heads usable on other input sizes (e.g. 8×8 digits images, whose aux
feature map is 2×2), the fixed pool is used whenever it yields exactly 2×2 — so the published geometry is
reproduced bit for bit — and ``AdaptiveAvgPool2d(2)`` otherwise. The pool has no parameters, so the parameter
count never depends on the input size.

The ImageNet head has no BN after the 2×2 conv, as in the DARTS code (the BN was commented out there "for
consistency with the experiments in the paper").
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet"]


class _AuxPool(nn.Module):
    """AvgPool(5, ``stride``, no padding, padding not counted) when that gives 2×2, else adaptive 2×2 pooling."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.fixed = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
        self.adaptive = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h >= 5 and w >= 5 and (h - 5) // self.stride + 1 == 2 and (w - 5) // self.stride + 1 == 2:
            return self.fixed(x)
        return self.adaptive(x)


class _AuxHead(nn.Module):
    def __init__(self, c: int, num_classes: int, pool_stride: int, bn_after_2x2: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # DARTS uses inplace=True, which silently rewrites the cell output
            _AuxPool(pool_stride),  # (N, C, 2, 2)
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),  # (N, 768, 1, 1)
            *([nn.BatchNorm2d(768)] if bn_after_2x2 else []),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(_AuxHead):
    """CIFAR head: ReLU, AvgPool 5/3, 1×1 conv→128, BN, ReLU, 2×2 conv→768, BN, ReLU, linear."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__(c, num_classes, pool_stride=3, bn_after_2x2=True)


class AuxiliaryHeadImageNet(_AuxHead):
    """ImageNet head: as the CIFAR head with AvgPool 5/2 and without the BN after the 2×2 conv (DARTS code)."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__(c, num_classes, pool_stride=2, bn_after_2x2=False)
