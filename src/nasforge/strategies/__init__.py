"""Search methods, one module each, behind the :class:`Strategy` contract and the ``STRATEGIES`` registry."""

from .base import STRATEGIES, Batch, SearchContext, Strategy
from .darts import Darts, DartsConfig

__all__ = ["Strategy", "STRATEGIES", "SearchContext", "Batch", "Darts", "DartsConfig"]
