"""Search methods, one module each, behind the :class:`Strategy` contract and the ``STRATEGIES`` registry."""

from .base import STRATEGIES, Batch, SearchContext, Strategy
from .darts import BilevelConfig, Darts, DartsConfig
from .entrannas import EnTranNas, EnTranNasConfig
from .gold_nas import GoldNas, GoldNasConfig
from .knas import Knas, KnasConfig
from .nao_v2 import NaoV2, NaoV2Config
from .pdarts import PDarts, PDartsConfig
from .random_search import RandomSearch, RandomSearchConfig

__all__ = ["Strategy", "STRATEGIES", "SearchContext", "Batch", "Darts", "DartsConfig", "BilevelConfig", "PDarts", "PDartsConfig", "GoldNas", "GoldNasConfig"]
__all__ += ["Knas", "KnasConfig", "RandomSearch", "RandomSearchConfig"]
__all__ += ["EnTranNas", "EnTranNasConfig"]
__all__ += ["NaoV2", "NaoV2Config"]
