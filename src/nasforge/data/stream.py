"""Endless, resumable minibatch streams over a dataset split, on the data's device.

A search step needs one batch from the weight split and one from the architecture split, and the two splits
have their own epochs; a stream hides that bookkeeping. Its whole state (current permutation, position,
epoch, generator state) fits in :meth:`BatchStream.state_dict`, so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from ..errors import CheckpointError, ConfigError, DataError
from .augment import apply_cutout, augment_batch, normalize_with

__all__ = ["BatchStream"]

_STATE_VERSION = 1


class BatchStream:
    """Shuffled, augmented, normalised minibatches over ``indices`` of ``(x, y)``, epoch after epoch, forever.

    Training streams (``train=True``) draw a fresh permutation of the indices from ``generator`` at the start of
    every epoch and augment each batch (pad-and-crop, flip, then Cutout after normalisation as in DARTS, so
    the cut square has the mean colour). Evaluation streams (``train=False``) keep the given order, never
    augment and never touch the generator.

    An epoch ends after :attr:`batches_per_epoch` batches; the last batch is smaller unless ``drop_last``.
    After the last batch of an epoch the stream moves on at once: :attr:`epoch` is incremented (it counts
    completed epochs, so it is also the index of the epoch the next batch comes from), :attr:`position` is 0 and
    the next permutation has been drawn.

    Give each stream its own generator: :meth:`state_dict` saves the generator state, which could not be
    restored correctly for two streams sharing one.

    Args:
        x: uint8 images N×C×H×W (on the compute device).
        y: int64 labels N, on the same device.
        indices: the samples to iterate over (e.g. one side of :func:`search_split`); ``None`` = all.
        batch_size: samples per batch.
        generator: ``torch.Generator`` on the device of ``x``; drives shuffling and augmentation.
        train: shuffle and augment (``True``) or iterate in order for evaluation (``False``).
        pad: pad-and-crop padding (0 = off).
        flip: random horizontal flips.
        cutout: Cutout square side (0 = off).
        mean: per-channel normalisation mean in [0, 1] units.
        std: per-channel normalisation std in [0, 1] units.
        drop_last: drop the incomplete last batch of each epoch.

    Raises:
        ConfigError: bad batch size or augmentation settings.
        DataError: indices out of range, empty split, or mismatched tensors.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None, batch_size: int,
                 generator: torch.Generator, *, train: bool, pad: int, flip: bool, cutout: int,
                 mean: Sequence[float], std: Sequence[float], drop_last: bool = False) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise DataError(f"BatchStream needs uint8 N×C×H×W images, got {x.dtype} {tuple(x.shape)}")
        if y.dim() != 1 or len(y) != len(x) or y.device != x.device:
            raise DataError(f"BatchStream needs one label per image on {x.device}, got {tuple(y.shape)} on {y.device}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        if pad < 0 or cutout < 0:
            raise ConfigError(f"pad and cutout must be >= 0, got pad={pad}, cutout={cutout}")
        if generator.device.type != x.device.type:
            raise ValueError(f"the generator is on {generator.device} but the data is on {x.device}; create it with "
                             f"torch.Generator(device=...) on the data's device")
        c = x.shape[1]
        if len(mean) != c or len(std) != c:
            raise ConfigError(f"mean and std need {c} values (one per channel), got {len(mean)} and {len(std)}")
        if indices is None:
            indices = torch.arange(len(x), device=x.device)
        else:
            indices = torch.as_tensor(indices).to(device=x.device, dtype=torch.int64).reshape(-1)
            if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(x)):
                raise DataError(f"stream indices must lie in [0, {len(x) - 1}], got [{int(indices.min())}, "
                                f"{int(indices.max())}]")
        if indices.numel() == 0:
            raise DataError("a batch stream needs at least one sample; the split is empty")
        if drop_last and indices.numel() < batch_size:
            raise ConfigError(f"batch size {batch_size} is larger than the {indices.numel()} samples of the split "
                              f"and drop_last is set, so an epoch would have no batch; lower the batch size")
        self.x, self.y, self.indices = x, y, indices
        self.batch_size = int(batch_size)
        self.generator = generator
        self.train = bool(train)
        self.pad, self.flip, self.cutout = int(pad), bool(flip), int(cutout)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.drop_last = bool(drop_last)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        self.epoch = 0
        self.position = 0
        self._perm = self._draw_perm()

    @property
    def num_samples(self) -> int:
        """Samples per epoch (before ``drop_last``)."""
        return int(self.indices.numel())

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one pass over the split."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def _epoch_end(self) -> int:
        return self.batches_per_epoch * self.batch_size if self.drop_last else self.num_samples

    def _draw_perm(self) -> torch.Tensor:
        if not self.train:
            return self.indices
        order = torch.randperm(self.num_samples, generator=self.generator, device=self.indices.device)
        return self.indices[order]

    def _make_batch(self, idx: torch.Tensor, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        xb = self.x.index_select(0, idx)
        yb = self.y.index_select(0, idx)
        if augment:
            xb = augment_batch(xb, self.generator, self.pad, self.flip, 0)
        xf = normalize_with(xb, self._mean_t, self._std_t)
        if augment and self.cutout:
            xf = apply_cutout(xf, self.generator, self.cutout)
        return xf, yb

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(images float32 N×C×H×W normalised, labels int64)``; rolls over into the next epoch."""
        end = min(self.position + self.batch_size, self._epoch_end)
        batch = self._make_batch(self._perm[self.position:end], augment=self.train)
        self.position = end
        if self.position >= self._epoch_end:
            self.epoch += 1
            self.position = 0
            self._perm = self._draw_perm()
        return batch

    def iter_epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield every batch of one ordered pass, unaugmented (for evaluation streams, ``train=False``).

        Independent of :meth:`next_batch`: it neither reads nor moves the stream's position.

        Raises:
            ConfigError: on a training stream, whose batches must come from :meth:`next_batch` to stay
                reproducible.
        """
        if self.train:
            raise ConfigError("iter_epoch is for evaluation streams (train=False); use next_batch on training streams")
        for start in range(0, self._epoch_end, self.batch_size):
            yield self._make_batch(self.indices[start:start + self.batch_size], augment=False)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly here: permutation, position, epoch and generator state."""
        return {"version": _STATE_VERSION, "epoch": self.epoch, "position": self.position,
                "perm": self._perm.detach().to("cpu", copy=True), "generator": self.generator.get_state(),
                "batch_size": self.batch_size, "num_samples": self.num_samples, "train": self.train,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` of a stream built with the same data, indices and settings.

        Raises:
            CheckpointError: if the state is malformed or was saved by a stream with another split, batch
                size or mode, which would silently change the batches.
        """
        keys = ("epoch", "position", "perm", "generator", "batch_size", "num_samples", "train", "drop_last")
        missing = [k for k in keys if k not in state]
        if missing:
            raise CheckpointError(f"batch-stream state lacks {', '.join(missing)}; the checkpoint is not from this "
                                  f"version of nasforge or is damaged: start a new run")
        for k in ("batch_size", "num_samples", "train", "drop_last"):
            mine = getattr(self, k)
            if state[k] != mine:
                raise CheckpointError(f"the checkpoint's batch stream has {k}={state[k]} but this run has {k}={mine}; "
                                      f"resume with the same config and data, or start a new run")
        perm = torch.as_tensor(state["perm"]).to(device=self.indices.device, dtype=torch.int64)
        position = int(state["position"])
        if perm.shape != self.indices.shape or not 0 <= position < max(self._epoch_end, 1) or \
                not torch.equal(perm.sort().values, self.indices.sort().values):
            raise CheckpointError("the checkpoint's batch stream covers other samples than this run's split; "
                                  "resume with the same seed, data and train_portion, or start a new run")
        self.generator.set_state(state["generator"])
        self._perm, self.position, self.epoch = perm, position, int(state["epoch"])
