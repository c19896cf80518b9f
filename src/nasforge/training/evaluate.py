"""Evaluation and the small helpers both loops share (accuracy, NaN guard, epoch meters)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import TrainingDiverged
from ..parallel.distributed import all_reduce_sum, shard_batch

__all__ = ["evaluate", "check_finite", "EpochMeter"]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_batches: int = 0
             ) -> dict[str, float]:
    """Loss and top-1 accuracy (in %) of ``model`` in eval mode over ``batches``; restores the mode after.
    In a data-parallel run every rank passes the same batches, scores its slice of each, and all get the totals."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    n = 0
    try:
        for i, (x, y) in enumerate(batches):
            if max_batches and i >= max_batches:
                break
            x, y = shard_batch((x, y))
            out = model(x)
            logits = out[0] if isinstance(out, tuple) else out
            loss_sum += F.cross_entropy(logits, y, reduction="sum").float().cpu()
            correct += (logits.argmax(1) == y).sum().cpu()
            n += y.numel()
    finally:
        model.train(was_training)
    loss_total, correct_total, n = all_reduce_sum([float(loss_sum), float(correct), n])  # over the ranks
    if n == 0:
        return {"loss": float("nan"), "acc": float("nan")}
    return {"loss": loss_total / n, "acc": 100.0 * correct_total / n}


def check_finite(value: float, where: str, hint: str) -> None:
    """Stop with one clear line when the loss is NaN or infinite."""
    if not math.isfinite(value):
        raise TrainingDiverged(f"the loss became {value} at {where}; {hint}")


class EpochMeter:
    """Averages scalar metrics over the steps of an epoch."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def update(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] += v
            self.counts[k] += 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}
