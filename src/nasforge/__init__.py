"""nasforge: neural architecture search, from search to a retrained, reported network.

The public API (``nasforge.search``, ``nasforge.train``, ``nasforge.describe``, ``nasforge.load_genotype``)
mirrors the command line; see :mod:`nasforge.api`.
"""

from . import errors  # noqa: E402
from ._version import __version__  # noqa: E402
from .api import SearchResult, describe, search, train  # noqa: E402
from .genotypes import Genotype, load_genotype, published, save_genotype  # noqa: E402
from .strategies import STRATEGIES  # noqa: E402

__all__ = ["search", "train", "describe", "SearchResult", "Genotype", "load_genotype", "save_genotype", "published",
           "STRATEGIES", "errors", "__version__"]
