"""The UCI 8×8 handwritten digits, embedded in the package.

A dataset that is always there: tiny presets, tests and first runs work offline, with no download, in
seconds on a CPU. The file ``digits.csv.gz`` holds the 1797 samples of the "Optical Recognition of Handwritten
Digits" data set by E. Alpaydin and C. Kaynak (UCI Machine Learning Repository; licensed CC BY 4.0), as
shipped by scikit-learn: per row 64 pixel values 0..16 (row-major 8×8), then the label.

Split: sample ``i`` (0-based row order of the file) is a test sample when ``i % 5 == 0`` (samples 0, 5, 10,
..., 1795), so every fifth sample is held out, giving 1437 training and 360 test images. A fixed rule rather
than a seeded shuffle, so every run, machine and version sees the same split.
"""

from __future__ import annotations

import gzip
import io
from importlib import resources

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset, channel_stats

__all__ = ["load_digits", "DIGITS_FILE"]

DIGITS_FILE = "digits.csv.gz"
_N_SAMPLES = 1797
# 0..16 -> 0..255 as round(v * 255 / 16); 8 -> 127.5 rounds to 128 (Python's round; no other value is a tie).
_LUT = np.array([round(v * 255 / 16) for v in range(17)], dtype=np.uint8)


def load_digits() -> ImageDataset:
    """Load the embedded digits: 1 channel, 8×8, 10 classes, 1437 train / 360 test (``i % 5 == 0`` is test).

    Pixel values 0..16 are scaled to uint8 with ``round(v * 255 / 16)`` so that every dataset shares one
    uint8 pipeline. mean/std are computed on the training split; pad is 1 and flip False (a mirrored digit
    is not the same digit).

    Raises:
        DataError: if the packaged file is missing or damaged (a broken installation).
    """
    try:
        raw = resources.files(__package__).joinpath(DIGITS_FILE).read_bytes()
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"the embedded digits data ({DIGITS_FILE}) is missing or damaged ({e}); "
                        f"reinstall nasforge") from None
    if table.shape != (_N_SAMPLES, 65) or table.min() < 0 or table[:, :64].max() > 16 or table[:, 64].max() > 9:
        raise DataError(f"the embedded digits data ({DIGITS_FILE}) has unexpected content (shape {table.shape}); "
                        f"reinstall nasforge")
    x = torch.from_numpy(_LUT[table[:, :64]].reshape(-1, 1, 8, 8))
    y = torch.from_numpy(table[:, 64].copy())
    test = torch.arange(_N_SAMPLES) % 5 == 0
    x_train, y_train = x[~test].contiguous(), y[~test].contiguous()
    mean, std = channel_stats(x_train)
    return ImageDataset(name="digits", x_train=x_train, y_train=y_train, x_test=x[test].contiguous(),
                        y_test=y[test].contiguous(), classes=[str(i) for i in range(10)], mean=mean, std=std,
                        pad=1, flip=False)
