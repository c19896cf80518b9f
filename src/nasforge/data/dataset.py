"""The in-memory dataset every search and training run consumes.

Whole splits are kept as uint8 tensors (CIFAR-10 is 180 MB) so they can sit on the accelerator and be
batched, augmented and normalised there, with no DataLoader workers and no host round trips per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from ..errors import ConfigError, DataError

__all__ = ["ImageDataset", "channel_stats"]


@dataclass(eq=False, repr=False)
class ImageDataset:
    """Train and test splits of an image-classification dataset, plus what is needed to feed a network.

    Attributes:
        name: the dataset name as given to :func:`~nasforge.data.load_dataset` (``"cifar10"``, ``"npz:..."``).
        x_train: uint8 images, N×C×H×W.
        y_train: int64 labels, N, in ``[0, num_classes)``.
        x_test: uint8 images, M×C×H×W (same C, H, W as ``x_train``).
        y_test: int64 labels, M.
        classes: class names; their count defines ``num_classes``.
        mean: per-channel mean in [0, 1] units, used by :func:`~nasforge.data.normalize`.
        std: per-channel standard deviation in [0, 1] units.
        pad: default pad-and-crop padding for training augmentation (4 for 32 px CIFAR, 1 for 8 px digits).
        flip: whether random horizontal flips are a sensible default (True for natural images like CIFAR,
            False for digits, whose mirror images are not digits).

    Raises:
        DataError: on construction, if dtypes, shapes, labels or statistics are inconsistent, so a malformed
            dataset fails where it is made rather than deep inside a training step.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    pad: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.pad = int(self.pad)
        self.flip = bool(self.flip)
        self._validate()

    def _validate(self) -> None:
        where = f"dataset {self.name!r}"
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
                got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
                raise DataError(f"{where}: x_{split} must be a uint8 N×C×H×W tensor, got {got}")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
                got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
                raise DataError(f"{where}: y_{split} must be an int64 tensor of labels, got {got}")
            if len(x) != len(y):
                raise DataError(f"{where}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
            if x.device != self.x_train.device or y.device != self.x_train.device:
                raise DataError(f"{where}: all tensors must be on one device; use ImageDataset.to(device)")
        if self.x_test.shape[1:] != self.x_train.shape[1:]:
            raise DataError(f"{where}: test images are {tuple(self.x_test.shape[1:])} but train images are "
                            f"{tuple(self.x_train.shape[1:])}; both splits must have the same C×H×W")
        if not self.classes:
            raise DataError(f"{where}: no class names; give one name per class")
        k = len(self.classes)
        for split, y in (("train", self.y_train), ("test", self.y_test)):
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
                raise DataError(f"{where}: y_{split} has labels in [{int(y.min())}, {int(y.max())}] but there are "
                                f"{k} classes; labels must lie in [0, {k - 1}]")
        c = self.in_channels
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(f"{where}: mean and std need one value per channel ({c}), got {len(self.mean)} "
                            f"and {len(self.std)}")
        if not all(math.isfinite(s) and s > 0 for s in self.std) or not all(math.isfinite(m) for m in self.mean):
            raise DataError(f"{where}: mean must be finite and std positive, got mean {self.mean}, std {self.std}")
        if self.pad < 0:
            raise DataError(f"{where}: pad must be >= 0, got {self.pad}")

    @property
    def num_classes(self) -> int:
        """Number of classes (the width of the classifier head)."""
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Image channels (the input width of the stem)."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        """Image height in pixels (images are square for every built-in dataset)."""
        return int(self.x_train.shape[2])

    @property
    def device(self) -> torch.device:
        """The device the tensors are on."""
        return self.x_train.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """Return a copy with all tensors on ``device`` (the whole dataset then lives there)."""
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
        """Keep the first ``n_train`` training and ``n_test`` test samples (deterministic, for tests and tiny presets).

        Taking a prefix rather than a random sample keeps the subset identical across seeds and machines.
        ``mean``/``std`` stay those of the full dataset so that normalisation does not depend on the subset.

        Args:
            n_train: samples to keep; ``None`` or ``0`` keeps all (0 is the config's "all"); more than
                available keeps all.
            n_test: the same for the test split.

        Raises:
            ConfigError: if a count is negative.
        """
        def take(x: torch.Tensor, y: torch.Tensor, n: int | None, what: str) -> tuple[torch.Tensor, torch.Tensor]:
            if n is not None and n < 0:
                raise ConfigError(f"{what} must be >= 0 (0 = all), got {n}")
            if n is None or n == 0 or n >= len(x):
                return x, y
            return x[:n].clone(), y[:n].clone()

        x_tr, y_tr = take(self.x_train, self.y_train, n_train, "n_train")
        x_te, y_te = take(self.x_test, self.y_test, n_test, "n_test")
        return replace(self, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)

    def __repr__(self) -> str:
        c, h, w = self.x_train.shape[1:]
        return (f"ImageDataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"image={c}x{h}x{w}, classes={self.num_classes}, pad={self.pad}, flip={self.flip}, "
                f"device={self.device})")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 N×C×H×W images, in [0, 1] units.

    Computed from a 256-bin histogram per channel: exact, needs no float copy of the images, and is about ten
    times faster than summing floats (0.2 s for the CIFAR-10 training set on a CPU).

    Args:
        x: uint8 images.

    Returns:
        ``(mean, std)``, each a tuple with one float per channel.

    Raises:
        DataError: if there are no images to compute statistics from.
    """
    if x.dim() != 4 or x.dtype != torch.uint8 or x.numel() == 0:
        raise DataError(f"cannot compute channel statistics of {x.dtype} images of shape {tuple(x.shape)}; "
                        f"expected a non-empty uint8 N×C×H×W tensor")
    hist = torch.stack([torch.bincount(x[:, i].reshape(-1), minlength=256) for i in range(x.shape[1])])
    hist = hist.to(torch.float64)
    v = torch.arange(256, dtype=torch.float64, device=x.device)
    count = hist.sum(1)
    mean = (hist * v).sum(1) / count
    var = ((hist * v * v).sum(1) / count - mean * mean).clamp_min(0)
    return tuple((mean / 255).tolist()), tuple((var.sqrt() / 255).tolist())
