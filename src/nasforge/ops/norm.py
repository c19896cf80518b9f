"""Batch normalisation whose batch statistics span every rank of a data-parallel run.

A search splits each batch over the ranks (:mod:`nasforge.parallel.distributed`). With per-rank statistics a
DARTS batch of 64 on 8 GPUs would normalise over 8 images, and the ranks' running statistics would drift apart;
with these, one step on ``N`` ranks of ``B`` images equals one step of a single process on ``N·B`` images.

:func:`sync_batch_norms` turns every ``nn.BatchNorm2d`` of a model into a :class:`SyncedBatchNorm2d` in place
(same object, same parameters, buffers and state-dict keys, so references such as a supernet's folded-BN splits
stay valid). Code that calls the functional form with a BN's buffers (a supernet folding an op weight into the
BN's scale) goes through :func:`batch_norm`, which synchronises when the module has been converted. Outside a
process group, or in eval mode, both are exactly ``F.batch_norm``.

The mean and variance are gathered in two passes (Σx, then Σ(x − mean)²), each one ``all_reduce`` that autograd
differentiates (``torch.distributed.nn.functional.all_reduce``), so gradients flow through the other ranks'
statistics exactly as in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce
from torch.nn import functional as F

__all__ = ["SyncedBatchNorm2d", "sync_batch_norms", "batch_norm"]


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are taken over the global batch of all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm(self, x, self.weight, self.bias)


def sync_batch_norms(model: nn.Module) -> int:
    """Convert the model's ``BatchNorm2d``s to :class:`SyncedBatchNorm2d` in place; returns how many changed.
    Idempotent, so a loop may call it whenever the model may have grown new BNs (a new P-DARTS stage)."""
    changed = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncedBatchNorm2d
            changed += 1
    return changed


def _synced(bn: nn.BatchNorm2d, x: torch.Tensor) -> bool:
    return (isinstance(bn, SyncedBatchNorm2d) and (bn.training or not bn.track_running_stats)
            and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
               ) -> torch.Tensor:
    """``bn`` applied to ``x`` with the given affine ``weight``/``bias`` (which may differ from ``bn``'s own, e.g.
    an architecture weight folded into a non-affine BN), updating ``bn``'s running statistics and batch count as
    ``nn.BatchNorm2d`` does."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    if not _synced(bn, x):
        use_batch = bn.training or bn.running_mean is None
        return F.batch_norm(x, bn.running_mean if not bn.training or bn.track_running_stats else None,
                            bn.running_var if not bn.training or bn.track_running_stats else None,
                            weight, bias, use_batch, factor, bn.eps)
    dims = [0] + list(range(2, x.dim()))
    local_n = x.numel() // x.shape[1]
    sums = differentiable_all_reduce(torch.cat([x.sum(dims), x.new_full((1,), float(local_n))]))
    total, count = sums[:-1], sums[-1].detach()
    mean = total / count
    centred = x - mean.view(1, -1, *([1] * (x.dim() - 2)))
    var = differentiable_all_reduce(centred.pow(2).sum(dims)) / count
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            n = float(count)
            unbiased = var.detach() * (n / max(n - 1.0, 1.0))
            bn.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
    shape = (1, -1, *([1] * (x.dim() - 2)))
    out = centred * torch.rsqrt(var + bn.eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return out
