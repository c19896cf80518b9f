"""Batch streams with a run's augmentation settings (shared by the search loop and the trainer)."""

from __future__ import annotations

import torch

from ..config import RunConfig
from ..data import BatchStream, ImageDataset

__all__ = ["make_stream"]


def make_stream(data: ImageDataset, cfg: RunConfig, indices: torch.Tensor | None, generator: torch.Generator,
                train: bool, batch_size: int, *, split: str = "train", augment: bool = True) -> BatchStream:
    """A batch stream over ``indices`` of the training images (or the test split), with the run's augmentation."""
    d = cfg.data
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    return BatchStream(x, y, indices, batch_size, generator, train=train,
                       pad=(data.pad if d.pad < 0 else d.pad) if augment else 0,
                       flip=(data.flip if d.flip is None else d.flip) if augment else False,
                       cutout=d.cutout if augment else 0, mean=data.mean, std=data.std)
