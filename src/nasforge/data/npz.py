"""A user's own image dataset from one ``.npz`` file (``npz:PATH``).

The smallest format that needs no code from the user: ``numpy.savez(path, x_train=..., y_train=...,
x_test=..., y_test=...)``. Expected arrays:

* ``x_train``, ``x_test``: uint8 images, N×H×W×C (C of 1 to 4) or N×H×W (grayscale); same H, W, C in both.
* ``y_train``, ``y_test``: integer labels >= 0, shape (N,) (or (N, 1)), one per image.
* ``classes`` (optional): one name per class, a string array; else classes are named "0", "1", ...
* ``flip`` (optional): a boolean scalar, whether random horizontal flips suit the images (default False).

The file is opened with ``allow_pickle=False``: an ``.npz`` can then never run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, channel_stats

__all__ = ["load_npz", "NPZ_KEYS"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_KEYS = ("keys x_train, y_train, x_test, y_test (uint8 images N×H×W×C or N×H×W, integer labels) and optional "
         "classes, flip, as written by numpy.savez")
_FORM = "expected " + _KEYS


def load_npz(path: str | Path, name: str | None = None) -> ImageDataset:
    """Load ``path`` as an :class:`ImageDataset` (images converted to N×C×H×W).

    mean/std are computed on the training split; ``pad`` is 4 for images of 32 px or more, else
    ``max(1, H // 8)`` (a shift of about an eighth of the image, as 4 px is for CIFAR).

    Args:
        path: the ``.npz`` file.
        name: the dataset name to record (default ``"npz:<path>"``).

    Raises:
        DataError: missing or unreadable file, missing key, wrong dtype or shape, non-integer or negative
            labels, mismatched lengths, too few class names; the message names the key and the expected form.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"npz dataset {path} not found; give the path of an .npz file with {_KEYS}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({e}); {_FORM}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array, not an .npz archive of named arrays; {_FORM}")
    with archive:
        for key in NPZ_KEYS:
            if key not in archive.files:
                raise DataError(f"{path} has no array '{key}' (it has: {', '.join(archive.files) or 'none'}); "
                                f"{_FORM}")
        arrays = {key: _read(archive, key, path) for key in (*NPZ_KEYS, "classes", "flip") if key in archive.files}

    x_train = _images(arrays["x_train"], "x_train", path)
    x_test = _images(arrays["x_test"], "x_test", path)
    y_train = _labels(arrays["y_train"], "y_train", len(x_train), path)
    y_test = _labels(arrays["y_test"], "y_test", len(x_test), path)
    if len(x_train) == 0:
        raise DataError(f"{path}: 'x_train' holds no images; the training split needs at least one")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DataError(f"{path}: 'x_test' images are {_hwc(x_test)} but 'x_train' images are {_hwc(x_train)}; "
                        f"both splits need the same H×W×C")
    n_labels = 1 + max(int(y.max()) for y in (y_train, y_test) if y.size)
    if "classes" in arrays:
        classes = _classes(arrays["classes"], n_labels, path)
    else:
        classes = [str(i) for i in range(n_labels)]
    flip = _flip(arrays["flip"], path) if "flip" in arrays else False

    xt = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
    xs = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
    h = xt.shape[2]
    mean, std = channel_stats(xt)
    if not all(s > 0 for s in std):
        raise DataError(f"{path}: 'x_train' has a channel with constant value (std 0); images must vary")
    return ImageDataset(name=name or f"npz:{path}", x_train=xt, y_train=torch.from_numpy(y_train), x_test=xs,
                        y_test=torch.from_numpy(y_test), classes=classes, mean=mean, std=std,
                        pad=4 if h >= 32 else max(1, h // 8), flip=flip)


def _read(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: '{key}' is an array of Python objects; store plain numeric arrays "
                        f"(and classes as a string array, e.g. np.array(['cat', 'dog']))") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read '{key}' ({e}); the file is truncated or corrupt") from None


def _hwc(x: np.ndarray) -> str:
    return "×".join(str(d) for d in x.shape[1:])


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Validate images and return them as N×H×W×C."""
    if x.dtype != np.uint8:
        raise DataError(f"{path}: '{key}' has dtype {x.dtype}; expected uint8 pixel values 0..255 "
                        f"(N×H×W×C or N×H×W)")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or not 1 <= x.shape[3] <= 4 or x.shape[1] < 1 or x.shape[2] < 1:
        hint = " (channels last; transpose N×C×H×W arrays with x.transpose(0, 2, 3, 1))" if x.ndim == 4 else ""
        raise DataError(f"{path}: '{key}' has shape {x.shape}; expected N×H×W×C with C of 1 to 4, or "
                        f"N×H×W{hint}")
    return x


def _labels(y: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    """Validate labels and return them as int64 of shape (n,)."""
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: '{key}' has dtype {y.dtype}; expected integer class labels 0..K-1")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: '{key}' has shape {y.shape}; expected one integer label per image, shape (N,)")
    image_key = "x" + key[1:]
    if len(y) != n:
        raise DataError(f"{path}: '{key}' has {len(y)} labels but '{image_key}' has {n} images; they must match")
    if y.size and int(y.min()) < 0:
        raise DataError(f"{path}: '{key}' has negative labels (min {int(y.min())}); expected labels 0..K-1")
    return y.astype(np.int64)


def _classes(c: np.ndarray, n_labels: int, path: Path) -> list[str]:
    if c.ndim != 1 or c.dtype.kind not in "US":
        raise DataError(f"{path}: 'classes' has dtype {c.dtype} and shape {c.shape}; expected a 1-D string array "
                        f"with one name per class, e.g. np.array(['cat', 'dog'])")
    names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in c.tolist()]
    if len(names) < n_labels:
        raise DataError(f"{path}: 'classes' names {len(names)} classes but the labels go up to {n_labels - 1}; "
                        f"give one name per class")
    return names


def _flip(f: np.ndarray, path: Path) -> bool:
    boolish = f.dtype == np.bool_ or np.issubdtype(f.dtype, np.integer)
    if f.size != 1 or not boolish or int(f.ravel()[0]) not in (0, 1):
        raise DataError(f"{path}: 'flip' is {f.dtype} {f.shape}; expected a boolean scalar, e.g. flip=True")
    return bool(f.ravel()[0])
