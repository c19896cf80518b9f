"""The weight/architecture split of a search run.

One-shot NAS (DARTS and its successors) trains supernet weights on one part of the training set and the
architecture on the other part; the test set is never touched during search.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["search_split"]


def search_split(n: int, portion: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly split ``range(n)`` into two disjoint index sets.

    Args:
        n: number of training samples.
        portion: share for weight training (``data.train_portion``, 0.5 in DARTS); the first
            ``int(n * portion)`` indices of a random permutation train the weights, the rest validate the
            architecture.
        generator: the source of the permutation; the indices are created on its device.

    Returns:
        ``(weight_indices, arch_indices)``, int64, disjoint, together covering ``range(n)``.

    Raises:
        ConfigError: if ``portion`` is not in (0, 1) or leaves one side empty.
    """
    if not 0.0 < portion < 1.0:
        raise ConfigError(f"data.train_portion must be between 0 and 1 (exclusive), got {portion}")
    k = int(n * portion)
    if k == 0 or k == n:
        raise ConfigError(f"data.train_portion={portion} splits {n} training images into {k} and {n - k}; both "
                          f"parts need at least one image: use more data or a portion nearer 0.5")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    first, second = perm[:k], perm[k:]
    seen = torch.zeros(n, dtype=torch.bool, device=perm.device)
    seen[first] = True
    if bool(seen[second].any()):  # cannot happen for a permutation; guards against a broken generator/backend
        raise RuntimeError("search_split produced overlapping index sets")
    return first, second
