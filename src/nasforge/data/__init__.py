"""Datasets, splits, augmentation and batch streams.

Everything a search or training run needs from data, kept on the compute device: whole splits as uint8
tensors (:class:`ImageDataset`, from :func:`load_dataset`), the weight/architecture split of a search
(:func:`search_split`), vectorised augmentation (:func:`augment_batch`, :func:`normalize`) and endless,
resumable minibatch streams (:class:`BatchStream`). Every user-facing problem raises
:class:`~nasforge.errors.DataError` with a one-line message.

The embedded ``digits`` dataset is the UCI "Optical Recognition of Handwritten Digits" data (Alpaydin &
Kaynak, UCI Machine Learning Repository, CC BY 4.0); see :mod:`nasforge.data.digits`.
"""

from __future__ import annotations

from .augment import apply_cutout, augment_batch, normalize, pad_crop_flip
from .cifar import CIFAR_MD5, CIFAR_URLS
from .dataset import ImageDataset, channel_stats
from .digits import load_digits
from .load import DATASET_NAMES, load_dataset
from .npz import load_npz
from .root import DATA_ENV_VAR, resolve_data_root
from .split import search_split
from .stream import BatchStream

__all__ = ["ImageDataset", "load_dataset", "resolve_data_root", "search_split", "augment_batch", "normalize",
           "pad_crop_flip", "apply_cutout", "BatchStream", "channel_stats", "load_digits", "load_npz",
           "DATASET_NAMES", "DATA_ENV_VAR", "CIFAR_URLS", "CIFAR_MD5"]
