"""The one trainer for stand-alone networks and the evaluation helpers shared with the search loop."""

from .evaluate import EpochMeter, check_finite, evaluate
from .streams import make_stream
from .trainer import read_checkpoint

__all__ = ["evaluate", "check_finite", "EpochMeter", "make_stream", "read_checkpoint"]
