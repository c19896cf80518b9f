"""Tabular NAS benchmarks: trained results of every architecture of a space, looked up instead of trained.

Today: NAS-Bench-201 (:mod:`nasforge.benchmarks.nb201`). ``nasforge bench --space nb201 --arch ...`` prints one
architecture's results; KNAS and random search use the table to stand in for training in benchmark mode.
"""

from .nb201 import (ACCURACY_COLUMNS, COLUMN_ALIASES, NB201_COLUMNS, NB201_ENV_VAR, NB201_READERS, SELECTION_COLUMNS,
                    TEST_COLUMNS, NB201Result, NB201Table, load_nb201, resolve_nb201_path)

__all__ = ["NB201Table", "NB201Result", "load_nb201", "resolve_nb201_path", "NB201_READERS", "NB201_COLUMNS",
           "ACCURACY_COLUMNS", "COLUMN_ALIASES", "SELECTION_COLUMNS", "TEST_COLUMNS", "NB201_ENV_VAR"]
