"""``load_dataset``: one entry point from a dataset name (as in configs and on the command line) to data."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .cifar import load_cifar
from .dataset import ImageDataset
from .digits import load_digits
from .npz import load_npz
from .root import resolve_data_root

__all__ = ["load_dataset", "DATASET_NAMES"]

#: The names :func:`load_dataset` understands (``npz:PATH`` takes a file path after the colon).
DATASET_NAMES = ("digits", "cifar10", "cifar100", "npz:PATH")


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True, progress: bool = True
                 ) -> ImageDataset:
    """Load a dataset by name, on the CPU (move it with :meth:`ImageDataset.to`).

    Args:
        name: ``digits`` (embedded, offline), ``cifar10``, ``cifar100``, or ``npz:PATH`` (a user's arrays; a
            relative PATH is looked up in the working directory, then in the data root). Case-insensitive
            except for the path.
        data_dir: the data root; else ``$NASFORGE_DATA``, else ``~/.cache/nasforge/data``
            (see :func:`resolve_data_root`).
        download: allow downloading CIFAR archives that are not in the data root.
        progress: show a download progress bar.

    Raises:
        DataError: unknown name, or any problem with the data (the message says what to do).
    """
    key = name.strip()
    low = key.lower()
    if low.startswith("npz:"):
        raw = key[4:].strip()
        if not raw:
            raise DataError("npz: needs a file path, e.g. --dataset npz:my_images.npz")
        path = Path(raw).expanduser()
        if not path.is_absolute() and not path.exists():
            in_root = resolve_data_root(data_dir) / path
            if in_root.exists():
                path = in_root
        return load_npz(path, name=f"npz:{raw}")
    if low == "digits":
        return load_digits()
    if low in ("cifar10", "cifar100"):
        return load_cifar(low, resolve_data_root(data_dir), download=download, progress=progress)
    raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
