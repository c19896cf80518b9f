"""Weight-sharing networks built from a search space, with pluggable edge weighting."""

from .nb201 import NB201MixedCell, NB201SuperNet
from .supernet import MixedEdge, SearchCell, SuperNet, reduction_positions
from .weighting import WEIGHTINGS, softmax_weights, sigmoid_weights

__all__ = ["SuperNet", "SearchCell", "MixedEdge", "reduction_positions", "WEIGHTINGS", "softmax_weights",
           "sigmoid_weights", "NB201SuperNet", "NB201MixedCell"]
