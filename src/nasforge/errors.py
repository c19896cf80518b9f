"""User-facing errors.

Every mistake a user can make (bad genotype, unknown op or config key, missing data, a resume that does not
match) raises a :class:`NasforgeError` whose message is one line saying what is wrong and what to do. The CLI
prints that line and exits non-zero; only ``--debug`` shows a traceback.
"""

from __future__ import annotations

__all__ = ["NasforgeError", "GenotypeError", "ConfigError", "DataError", "CheckpointError", "TrainingDiverged", "DiskFullError",
           "RunLockedError"]


class NasforgeError(Exception):
    """Base class for errors caused by user input; the message is meant to be shown as is."""


class GenotypeError(NasforgeError, ValueError):
    """A genotype is malformed: a bad edge, an unknown op, a node without input."""


class ConfigError(NasforgeError, ValueError):
    """A config key is unknown, a value has the wrong type, or a preset does not exist."""


class DataError(NasforgeError):
    """A dataset is missing, corrupt (md5 mismatch, truncated file) or malformed."""


class CheckpointError(NasforgeError):
    """A checkpoint is missing, corrupt, or was written by a different config."""


class TrainingDiverged(NasforgeError):
    """The loss became NaN or infinite."""


class DiskFullError(NasforgeError):
    """A write failed for lack of space; what was written before is intact and the run can be resumed."""


class RunLockedError(NasforgeError):
    """Another live process is writing the same run folder."""
