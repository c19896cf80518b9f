"""Published cells, available by name (``nasforge show DARTS_V2``).

Sources: DARTS (Liu et al., ICLR 2019, ``quark0/darts`` ``cnn/genotypes.py``: NASNet-A, AmoebaNet-A as the
DARTS paper re-expresses them, DARTS_V1 = first order, DARTS_V2 = second order) and P-DARTS (Chen et al.,
ICCV 2019, ``chenxin061/pdarts``), and NAO-V2 (Luo et al., ``renqianluo/NAO_pytorch`` README: ``NAONET_V2`` is
the current released string, 4,387,654 parameters at N=6, C=36; ``NAONET_V2_2019_09`` the string released before
2019-09-29, 3,802,150 parameters; METHODS-ADDENDUM.md §7 N12). Written out from the papers' released genotypes;
the parameter counts of the evaluation networks (3,349,342 for DARTS_V2 etc.) are checked in the tests.
"""

from __future__ import annotations

from ..errors import GenotypeError
from .core import Genotype
from .darts_text import from_darts_pairs
from .nao_seq import from_nao_seq, parse_nao_seq

__all__ = ["PUBLISHED", "published", "published_names"]

_RAW: dict[str, tuple[list, list, list, list]] = {
    "NASNet": (
        [("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 0), ("sep_conv_3x3", 0), ("avg_pool_3x3", 1),
         ("skip_connect", 0), ("avg_pool_3x3", 0), ("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 1)],
        [2, 3, 4, 5, 6],
        [("sep_conv_5x5", 1), ("sep_conv_7x7", 0), ("max_pool_3x3", 1), ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
         ("sep_conv_5x5", 0), ("skip_connect", 3), ("avg_pool_3x3", 2), ("sep_conv_3x3", 2), ("max_pool_3x3", 1)],
        [4, 5, 6],
    ),
    "AmoebaNet": (
        [("avg_pool_3x3", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2), ("sep_conv_3x3", 0),
         ("avg_pool_3x3", 3), ("sep_conv_3x3", 1), ("skip_connect", 1), ("skip_connect", 0), ("avg_pool_3x3", 1)],
        [4, 5, 6],
        [("avg_pool_3x3", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("sep_conv_7x7", 2), ("sep_conv_7x7", 0),
         ("avg_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5)],
        [3, 4, 6],
    ),
    "DARTS_V1": (
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1), ("skip_connect", 0),
         ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [2, 3, 4, 5],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        [2, 3, 4, 5],
    ),
    "DARTS_V2": (
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [2, 3, 4, 5],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1), ("max_pool_3x3", 0),
         ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        [2, 3, 4, 5],
    ),
    "PDARTS": (
        [("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        [2, 3, 4, 5],
        [("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
         ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
        [2, 3, 4, 5],
    ),
}

PUBLISHED: dict[str, Genotype] = {name: from_darts_pairs(*raw) for name, raw in _RAW.items()}
PUBLISHED["DARTS"] = PUBLISHED["DARTS_V2"]  # the name the DARTS code uses for its headline cell
# NAO sequences in the small op set (normal cell's 20 integers, then the reduction cell's)
PUBLISHED["NAONET_V2"] = from_nao_seq(parse_nao_seq(
    "1 1 0 1 2 4 0 0 0 0 2 1 0 0 0 2 0 3 0 0  0 2 0 2 2 2 1 0 0 0 0 1 0 0 0 3 0 0 0 1"))
PUBLISHED["NAONET_V2_2019_09"] = from_nao_seq(parse_nao_seq(
    "0 1 0 4 0 1 1 0 2 0 2 4 2 4 2 1 2 0 3 2  1 3 0 4 0 1 1 0 0 1 0 2 2 0 0 1 1 0 1 4"))


def published_names() -> list[str]:
    return sorted(PUBLISHED)


def published(name: str) -> Genotype:
    """A published genotype by name (case-insensitive)."""
    for key, g in PUBLISHED.items():
        if key.lower() == name.lower():
            return g
    raise GenotypeError(f"no published genotype named {name!r}; known: {', '.join(published_names())}")
