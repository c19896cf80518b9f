"""Search methods, one module each, behind the :class:`Strategy` contract and the ``STRATEGIES`` registry."""

from .base import STRATEGIES, Batch, SearchContext, Strategy
from .darts import BilevelConfig, Darts, DartsConfig
from .pdarts import PDarts, PDartsConfig

__all__ = ["Strategy", "STRATEGIES", "SearchContext", "Batch", "Darts", "DartsConfig", "BilevelConfig", "PDarts", "PDartsConfig"]
