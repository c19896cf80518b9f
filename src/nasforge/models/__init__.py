"""Stand-alone networks built from a genotype: the DARTS CIFAR/ImageNet evaluation networks and their parts."""

from __future__ import annotations

from .cell import EvalCell, drop_path
from .heads import AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet
from .network import DATASET_KINDS, NetworkCIFAR, NetworkImageNet, build_network, reduction_indices

__all__ = ["EvalCell", "drop_path", "AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "NetworkCIFAR",
           "NetworkImageNet", "build_network", "reduction_indices", "DATASET_KINDS"]
