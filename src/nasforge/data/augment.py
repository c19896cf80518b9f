"""Batch augmentation and normalisation on the data's own device, fully vectorised.

The CIFAR recipe of DARTS and its successors (random 4 px pad-and-crop, random horizontal flip, optional
Cutout, then per-channel normalisation) applied to a whole uint8 batch at once with index arithmetic, so it
runs on the accelerator next to the model with no per-image Python work. All randomness comes from an explicit
``torch.Generator`` on the batch's device: results depend only on the generator state, never on global RNG.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

__all__ = ["augment_batch", "pad_crop_flip", "apply_cutout", "normalize"]


def _check(x: torch.Tensor, generator: torch.Generator) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected an N×C×H×W batch, got shape {tuple(x.shape)}")
    if generator.device.type != x.device.type:
        raise ValueError(f"the generator is on {generator.device} but the batch is on {x.device}; create it with "
                         f"torch.Generator(device=x.device)")


def pad_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """Random pad-and-crop (zero padding) and random horizontal flip, independently per sample.

    The padded batch is built once; each output pixel is then gathered with per-sample row/column offsets
    (a flipped sample simply reads its columns in reverse), so crop and flip cost one indexing op.

    Args:
        x: N×C×H×W batch (any dtype; uint8 in the pipeline).
        generator: source of the random offsets and flips, on ``x``'s device.
        pad: zero padding on each side; offsets are uniform in ``[0, 2 * pad]``. 0 disables the crop.
        flip: flip each sample left-right with probability 1/2.

    Returns:
        A batch of the same shape and dtype (``x`` itself when both are disabled).
    """
    _check(x, generator)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if (pad == 0 and not flip) or x.shape[0] == 0:
        return x
    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
        rows = rows + torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
        cols = cols + torch.randint(0, 2 * pad + 1, (n, 1), generator=generator, device=dev)
    if flip:
        flipped = torch.rand(n, 1, generator=generator, device=dev) < 0.5
        cols = torch.where(flipped, cols.flip(1), cols)
    return x[torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1),
             rows.reshape(n, 1, h, 1), cols.reshape(n, 1, 1, w)]


def apply_cutout(x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """Zero a ``size``×``size`` square per sample at a uniformly random centre, clipped at the borders.

    As DARTS's ``Cutout``: centre ``(cy, cx)`` uniform over the image, rows ``[cy - size // 2, cy - size // 2 +
    size)`` (likewise columns) clipped to the image, so squares near a border are partly outside. For even
    ``size`` (DARTS uses 16) this is exactly DARTS's region.

    Args:
        x: N×C×H×W batch (uint8 or float; the square is set to 0 in its units).
        generator: source of the centres, on ``x``'s device.
        size: side of the square; 0 disables.

    Returns:
        A new batch (``x`` itself when disabled).
    """
    _check(x, generator)
    if size < 0:
        raise ValueError(f"cutout size must be >= 0, got {size}")
    if size == 0 or x.shape[0] == 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    top = torch.randint(0, h, (n, 1), generator=generator, device=dev) - size // 2
    left = torch.randint(0, w, (n, 1), generator=generator, device=dev) - size // 2
    r = torch.arange(h, device=dev)
    q = torch.arange(w, device=dev)
    in_rows = (r >= top) & (r < top + size)  # n×h
    in_cols = (q >= left) & (q < left + size)  # n×w
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # n×1×h×w
    return x.masked_fill(mask, 0)


def augment_batch(x_uint8: torch.Tensor, generator: torch.Generator, pad: int, flip: bool, cutout: int
                  ) -> torch.Tensor:
    """Random pad-and-crop, horizontal flip and Cutout of a uint8 batch, on its device.

    Random numbers are drawn in a fixed order (crop offsets, flips, cutout centres), skipping disabled steps,
    so a batch is a pure function of the input and the generator state.

    Args:
        x_uint8: N×C×H×W uint8 batch.
        generator: a ``torch.Generator`` on the batch's device.
        pad: pad-and-crop padding (0 = no crop).
        flip: random horizontal flips.
        cutout: Cutout square side; the square becomes 0 (black). 0 disables. (:class:`BatchStream` applies
            Cutout after normalisation instead, as DARTS does, so there the square is the mean colour.)

    Returns:
        The augmented uint8 batch, same shape.
    """
    if x_uint8.dtype != torch.uint8:
        raise ValueError(f"augment_batch expects uint8 images, got {x_uint8.dtype}")
    out = pad_crop_flip(x_uint8, generator, pad, flip)
    return apply_cutout(out, generator, cutout)


def normalize(x_uint8: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
              ) -> torch.Tensor:
    """uint8 N×C×H×W → float32 ``(x / 255 - mean) / std`` per channel, on the batch's device.

    Args:
        x_uint8: uint8 batch.
        mean: per-channel mean in [0, 1] units (sequence or tensor of C values).
        std: per-channel std in [0, 1] units.

    Returns:
        The normalised float32 batch.
    """
    if x_uint8.dim() != 4:
        raise ValueError(f"expected an N×C×H×W batch, got shape {tuple(x_uint8.shape)}")
    c = x_uint8.shape[1]
    m = torch.as_tensor(mean, dtype=torch.float32, device=x_uint8.device).reshape(-1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x_uint8.device).reshape(-1)
    if m.numel() != c or s.numel() != c:
        raise ValueError(f"mean and std need {c} values (one per channel), got {m.numel()} and {s.numel()}")
    return normalize_with(x_uint8, m.view(1, c, 1, 1), s.view(1, c, 1, 1))


def normalize_with(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """:func:`normalize` with ready 1×C×1×1 float32 ``mean``/``std`` tensors on the batch's device (no checks)."""
    return x_uint8.to(torch.float32).div_(255.0).sub_(mean).div_(std)
