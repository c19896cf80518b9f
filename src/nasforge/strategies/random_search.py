"""Random search on NAS-Bench-201: the baseline every NAS method must beat (Li & Talwalkar, UAI 2019; NB201 §5).

Per repeat: sample ``n_samples`` architectures uniformly and pick the best by the NB201 table's 12-epoch
validation accuracy (``selection: benchmark``) or by brief real training (``selection: train``); reported exactly
as KNAS is (:mod:`nasforge.strategies.sample_select`). The paper preset draws 40 architectures per repeat: as
many 12-epoch validations as KNAS's top-40, so the two differ only in how the 40 are found.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from .base import STRATEGIES
from .sample_select import SampleSelect, SampleSelectConfig

__all__ = ["RandomSearch", "RandomSearchConfig"]


@dataclass
class RandomSearchConfig(SampleSelectConfig):
    """Random search settings; default: 40 architectures per repeat, 9 repeats, table selection on CIFAR-10."""

    n_samples: int = option(40, ge=1)


class RandomSearch(SampleSelect):
    """Sample, then select among all samples (no screening)."""

    name = "random"
    Config = RandomSearchConfig


STRATEGIES.add("random", RandomSearch)
