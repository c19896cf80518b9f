"""One entry point from a genotype to its evaluation network, whatever its space: DARTS CIFAR/ImageNet networks,
the NAS-Bench-201 network, NAO's network. Kept apart from the networks so that none of them imports another."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..genotypes.core import Genotype
from .nao import build_nao_network
from .nb201 import build_nb201_network
from .network import DATASET_KINDS, NetworkCIFAR, NetworkImageNet

__all__ = ["build_network"]


def build_network(genotype: Genotype, *, dataset_kind: str = "cifar", num_classes: int | None = None,
                  layers: int | None = None, channels: int | None = None, auxiliary: bool = False,
                  in_channels: int = 3, dropout: float = 0.0) -> nn.Module:
    """Build the evaluation network for ``genotype``; ``None`` arguments take the dataset kind's DARTS default.

    Defaults: ``cifar`` — 10 classes, 20 cells, C=36; ``imagenet`` — 1000 classes, 14 cells, C=48. For
    unshared genotypes ``layers=None`` means the genotype's own cell count. NAS-Bench-201 genotypes get the
    benchmark's network (:class:`~nasforge.models.nb201.NB201Network`) whatever the dataset kind; there
    ``layers`` is N, the cells per stage (default 5), and ``channels`` the first stage's width (default 16).
    NAO genotypes get NAO's network, with ``dropout`` before its classifier.

    Raises:
        ConfigError: ``dataset_kind`` is not one of :data:`DATASET_KINDS`.
        GenotypeError: an unshared genotype does not have ``layers`` cells, or a cell cannot be built.
    """
    if dataset_kind not in DATASET_KINDS:
        raise ConfigError(f"unknown dataset kind {dataset_kind!r}; choose one of: {', '.join(DATASET_KINDS)}")
    if genotype.space == "nao":  # NAO cells: loose-end outputs, inputs preprocessed only when needed
        return build_nao_network(genotype, dataset_kind=dataset_kind, num_classes=num_classes, layers=layers,
                                 channels=channels, auxiliary=auxiliary, in_channels=in_channels, dropout=dropout)
    if dropout > 0:
        raise ConfigError(f"train.dropout={dropout}: classifier dropout is part of NAO's networks only; use 0 for "
                          f"{genotype.space} genotypes")
    if genotype.space == "nb201":
        return build_nb201_network(genotype, num_classes=num_classes, cells_per_stage=layers, channels=channels,
                                   auxiliary=auxiliary, in_channels=in_channels)
    if dataset_kind == "cifar":
        return NetworkCIFAR(genotype, num_classes=10 if num_classes is None else num_classes, layers=layers,
                            channels=36 if channels is None else channels, auxiliary=auxiliary,
                            in_channels=in_channels)
    if dataset_kind == "imagenet":
        return NetworkImageNet(genotype, num_classes=1000 if num_classes is None else num_classes, layers=layers,
                               channels=48 if channels is None else channels, auxiliary=auxiliary,
                               in_channels=in_channels)
    raise ConfigError(f"unknown dataset kind {dataset_kind!r}; choose one of: {', '.join(DATASET_KINDS)}")
