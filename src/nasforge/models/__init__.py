"""Stand-alone networks built from a genotype: the DARTS CIFAR/ImageNet evaluation networks, the NAS-Bench-201
network, and their parts."""

from __future__ import annotations

from .cell import EvalCell, drop_path
from .init import init_network
from .heads import AuxiliaryHeadCIFAR, AuxiliaryHeadImageNet
from .nb201 import NB201Network
from .build import build_network
from .network import DATASET_KINDS, NetworkCIFAR, NetworkImageNet, reduction_indices

__all__ = ["EvalCell", "drop_path", "AuxiliaryHeadCIFAR", "AuxiliaryHeadImageNet", "NetworkCIFAR",
           "NetworkImageNet", "build_network", "reduction_indices", "DATASET_KINDS", "NB201Network", "init_network"]
