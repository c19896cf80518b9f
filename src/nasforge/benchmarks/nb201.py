"""The NAS-Bench-201 results table: every architecture's trained accuracy, looked up in microseconds.

Where the table comes from, in order: the ``path`` argument (``--table``), the ``NASFORGE_NB201`` environment
variable (a file), then ``<data root>/nas-bench-201/nb201_table.csv`` (the data root is ``--data-dir``, else
``$NASFORGE_DATA``, else ``~/.cache/nasforge/data``). So a user with their own copy runs
``export NASFORGE_NB201=/path/to/nb201_table.csv`` or passes ``--table``.

The shipped format is the merged CSV described in the shared data README (one row per architecture: ``index``,
``arch_str``, then the numeric columns of :data:`NB201_COLUMNS`). Files are read by a *reader* chosen by name or
by file suffix from :data:`NB201_READERS`; a reader for the official NAS-Bench-201 ``.pth`` or NATS-Bench
archives can be added later with ``@NB201_READERS.register("pth")`` returning an :class:`NB201Table`, and no
caller changes.

The table holds one float64 array ``[15625, columns]`` in official-index order (1.6 MB) and the architecture
strings (about 3 MB); loading validates every row against the space (each index must carry its official string)
and takes about 0.1 s.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..data import resolve_data_root
from ..errors import DataError
from ..genotypes.nb201_text import format_nb201_ops
from ..registry import Registry
from ..spaces.nb201 import NB201_SIZE, NB201Arch, official_order

__all__ = ["NB201_COLUMNS", "ACCURACY_COLUMNS", "COLUMN_ALIASES", "SELECTION_COLUMNS", "TEST_COLUMNS", "NB201Result",
           "NB201Table", "NB201_READERS", "NB201_ENV_VAR", "resolve_nb201_path", "load_nb201"]

NB201_ENV_VAR = "NASFORGE_NB201"
_DEFAULT_RELATIVE = Path("nas-bench-201") / "nb201_table.csv"

#: Numeric columns, as named in the CSV (accuracies in %, parameters in millions).
NB201_COLUMNS: tuple[str, ...] = (
    "params_mb", "c10valid_xvalid_200", "c10valid_oritest_200", "c10_oritest_200", "c100_xtest_200",
    "in16_xtest_200", "c10valid_xvalid_12", "c10_oritest_12", "c100_xvalid_12", "c100_xtest_12", "in16_xvalid_12",
    "in16_xtest_12", "naswot_score_v1")
#: Columns that may be empty (NaN): the published NASWOT score is missing for 341 architectures.
OPTIONAL_COLUMNS: tuple[str, ...] = ("naswot_score_v1",)
#: The columns that are accuracies (what proxies are correlated against).
ACCURACY_COLUMNS: tuple[str, ...] = tuple(c for c in NB201_COLUMNS if c not in ("params_mb", "naswot_score_v1"))
#: Readable names for the columns reports use.
COLUMN_ALIASES: dict[str, str] = {
    "cifar10_valid": "c10valid_xvalid_200", "cifar10_test": "c10_oritest_200", "cifar100_test": "c100_xtest_200",
    "imagenet16_test": "in16_xtest_200", "cifar10_valid_12": "c10valid_xvalid_12",
    "cifar100_valid_12": "c100_xvalid_12", "imagenet16_valid_12": "in16_xvalid_12"}
#: Per dataset, the column that stands in for "train briefly, then validate" (12-epoch schedule, validation).
SELECTION_COLUMNS: dict[str, str] = {"cifar10": "c10valid_xvalid_12", "cifar100": "c100_xvalid_12",
                                     "imagenet16": "in16_xvalid_12"}
#: Per dataset, the 200-epoch test accuracy papers report.
TEST_COLUMNS: dict[str, str] = {"cifar10": "c10_oritest_200", "cifar100": "c100_xtest_200",
                                "imagenet16": "in16_xtest_200"}


@dataclass(frozen=True)
class NB201Result:
    """Everything the table knows about one architecture."""

    index: int
    arch: str
    values: dict[str, float]

    def __getitem__(self, column: str) -> float:
        key = COLUMN_ALIASES.get(column, column)
        try:
            return self.values[key]
        except KeyError:
            raise DataError(f"unknown NB201 column {column!r}; columns: {', '.join(self.values)}; aliases: "
                            f"{', '.join(COLUMN_ALIASES)}") from None

    @property
    def cifar10_test(self) -> float:
        return self.values["c10_oritest_200"]

    @property
    def cifar100_test(self) -> float:
        return self.values["c100_xtest_200"]

    @property
    def imagenet16_test(self) -> float:
        return self.values["in16_xtest_200"]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "arch": self.arch, **self.values}


class NB201Table:
    """The NB201 results of all 15,625 architectures, looked up by string, index, genotype or :class:`NB201Arch`.

    Args:
        values: ``[15625, len(columns)]`` floats, row i = official index i.
        columns: the names of ``values``' columns.
        source: where the numbers came from (shown in errors and reports).
    """

    space = "nb201"

    def __init__(self, values: np.ndarray, columns: tuple[str, ...], source: str) -> None:
        if values.shape != (NB201_SIZE, len(columns)):
            raise DataError(f"{source}: expected {NB201_SIZE} x {len(columns)} values, got {values.shape}")
        self._values = values
        self._values.setflags(write=False)
        self.columns = columns
        self._col = {c: i for i, c in enumerate(columns)}
        self.source = source

    def __len__(self) -> int:
        return NB201_SIZE

    def index_of(self, arch: Any) -> int:
        """Official index of ``arch`` (a string, index, genotype or :class:`NB201Arch`)."""
        return NB201Arch.parse(arch).index

    def query(self, arch: Any) -> NB201Result:
        """All columns of one architecture.

        Raises:
            GenotypeError: ``arch`` is not an NB201 architecture.
        """
        a = NB201Arch.parse(arch)
        row = self._values[a.index]
        return NB201Result(a.index, a.string, {c: float(row[i]) for c, i in self._col.items()})

    def column(self, name: str) -> np.ndarray:
        """One column (a read-only view) over all architectures, by official index; aliases allowed."""
        key = COLUMN_ALIASES.get(name, name)
        if key not in self._col:
            raise DataError(f"unknown NB201 column {name!r}; columns: {', '.join(self.columns)}")
        return self._values[:, self._col[key]]

    def values(self, indices: Any, name: str) -> np.ndarray:
        """``column(name)`` at the given official indices."""
        return self.column(name)[np.asarray(indices, dtype=np.int64)]

    def best(self, name: str = "c10_oritest_200") -> NB201Result:
        return self.query(int(np.argmax(self.column(name))))

    def __iter__(self) -> Iterator[NB201Result]:
        return (self.query(i) for i in range(NB201_SIZE))


NB201Reader = Callable[[Path], NB201Table]
#: File readers by name; :func:`load_nb201` picks one by name or by the file's suffix.
NB201_READERS: Registry[NB201Reader] = Registry("NB201 table reader")
_SUFFIX_READERS = {".csv": "csv"}


@NB201_READERS.register("csv")
def read_nb201_csv(path: Path) -> NB201Table:
    """The merged CSV (``index``, ``arch_str`` and the :data:`NB201_COLUMNS`), validated row by row."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise DataError(f"NB201 table {path} is empty; point --table or ${NB201_ENV_VAR} at nb201_table.csv")
            need = ["index", "arch_str", *NB201_COLUMNS]
            missing = [c for c in need if c not in header]
            if missing:
                raise DataError(f"NB201 table {path} lacks column(s) {', '.join(missing)}; is it nb201_table.csv?")
            pos = [header.index(c) for c in need]
            values = np.full((NB201_SIZE, len(NB201_COLUMNS)), np.nan)
            seen = np.zeros(NB201_SIZE, dtype=bool)
            order = official_order()
            for line, row in enumerate(reader, start=2):
                index, arch, numbers = _parse_row(row, pos, path, line)
                if seen[index]:
                    raise DataError(f"NB201 table {path}, line {line}: index {index} appears twice")
                expected = format_nb201_ops(order[index])
                if arch != expected:
                    raise DataError(f"NB201 table {path}, line {line}: index {index} is {arch!r} but NB201's index "
                                    f"{index} is {expected!r}; the table is corrupt or not NB201")
                seen[index] = True
                values[index] = numbers
    except OSError as exc:
        raise DataError(f"cannot read NB201 table {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"NB201 table {path} is not a text CSV file") from None
    if not seen.all():
        raise DataError(f"NB201 table {path} has {int(seen.sum())} of the {NB201_SIZE} architectures; the file is "
                        f"truncated or not the full table")
    return NB201Table(values, NB201_COLUMNS, str(path))


def _parse_row(row: list[str], pos: list[int], path: Path, line: int) -> tuple[int, str, list[float]]:
    if len(row) <= max(pos):
        raise DataError(f"NB201 table {path}, line {line}: has {len(row)} fields, expected at least {max(pos) + 1}")
    try:
        index = int(row[pos[0]])
    except ValueError:
        raise DataError(f"NB201 table {path}, line {line}: index {row[pos[0]]!r} is not an integer") from None
    if not 0 <= index < NB201_SIZE:
        raise DataError(f"NB201 table {path}, line {line}: index {index} is outside 0..{NB201_SIZE - 1}")
    numbers = []
    for column, p in zip(NB201_COLUMNS, pos[2:]):
        text = row[p].strip()
        if not text and column in OPTIONAL_COLUMNS:
            numbers.append(math.nan)
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"NB201 table {path}, line {line}: {column} is {text!r}, not a finite number")
        numbers.append(value)
    return index, row[pos[1]].strip(), numbers


def resolve_nb201_path(path: str | Path | None = None, data_dir: str | Path | None = None) -> Path:
    """The table file: ``path``, else ``$NASFORGE_NB201``, else ``<data root>/nas-bench-201/nb201_table.csv``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    env = os.environ.get(NB201_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return resolve_data_root(data_dir) / _DEFAULT_RELATIVE


def load_nb201(path: str | Path | None = None, *, data_dir: str | Path | None = None,
               reader: str | None = None) -> NB201Table:
    """Load the NB201 table (cached per file and modification time, so repeated loads are free).

    Args:
        path: the table file; see :func:`resolve_nb201_path` for the fallbacks.
        data_dir: the data root for the default location.
        reader: a name in :data:`NB201_READERS`; default: chosen by the file suffix.

    Raises:
        DataError: the file is missing, unreadable, of an unknown kind or corrupt (one line saying which).
    """
    file = resolve_nb201_path(path, data_dir)
    if not file.is_file():
        raise DataError(f"NB201 table not found at {file}; pass --table PATH, set ${NB201_ENV_VAR}=PATH, or put "
                        f"nb201_table.csv under <data root>/{_DEFAULT_RELATIVE.parent}/ (data root: --data-dir or "
                        f"$NASFORGE_DATA)")
    name = reader or _SUFFIX_READERS.get(file.suffix.lower())
    if name is None:
        raise DataError(f"no NB201 reader for {file.name!r} files; readers: {', '.join(NB201_READERS.names())} "
                        f"(choose one with reader=..., or register one for the official files in NB201_READERS)")
    NB201_READERS.get(name)  # unknown reader names fail with the list of known ones
    return _load_cached(str(file.resolve()), file.stat().st_mtime_ns, name)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, reader: str) -> NB201Table:
    return NB201_READERS.get(reader)(Path(path))

