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
differentiates (its backward all-reduces the incoming gradient), so gradients flow through the other ranks'
statistics exactly as in a single process.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

__all__ = ["SyncedBatchNorm2d", "sync_batch_norms", "synchronised", "batch_norm", "functional_batch_norm",
           "local_statistics"]

_LOCAL = [0]  # > 0 inside :func:`local_statistics`


@contextlib.contextmanager
def local_statistics() -> Iterator[None]:
    """Each rank normalises with its own batch statistics inside (ranks scoring different architectures on the
    same images: nothing to share, and the ranks would wait on each other's different BNs)."""
    _LOCAL[0] += 1
    try:
        yield
    finally:
        _LOCAL[0] -= 1


class _AllReduceSum(torch.autograd.Function):
    """Σ over the ranks, differentiable: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.clone()
        dist.all_reduce(out)
        return out


def differentiable_all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics are taken over the global batch of all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm(self, x, self.weight, self.bias)


def sync_batch_norms(model: nn.Module) -> int:
    """Convert the model's ``BatchNorm2d``s to :class:`SyncedBatchNorm2d` in place, and switch on modules of
    their own kind that normalise through :func:`batch_norm`'s functional form (they carry a ``synchronise``
    flag, e.g. NAO's indexed BN); returns how many changed. Idempotent, so a loop may call it whenever the model
    may have grown new BNs (a new P-DARTS stage)."""
    changed = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncedBatchNorm2d
            changed += 1
        elif getattr(m, "synchronise", None) is False:
            m.synchronise = True  # type: ignore[assignment]
            changed += 1
    return changed


def synchronised(bn: nn.Module) -> bool:
    """True when ``bn``'s training-mode statistics must span all ranks (converted, and a group of several)."""
    return ((isinstance(bn, SyncedBatchNorm2d) or getattr(bn, "synchronise", False)) and not _LOCAL[0]
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
    use_batch = bn.training or bn.running_mean is None
    tracked = not bn.training or bn.track_running_stats
    return functional_batch_norm(x, bn.running_mean if tracked else None, bn.running_var if tracked else None,
                                 weight, bias, use_batch, factor, bn.eps, synchronised(bn))


def functional_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                          weight: torch.Tensor | None, bias: torch.Tensor | None, training: bool, momentum: float,
                          eps: float, sync: bool) -> torch.Tensor:
    """``F.batch_norm`` with the same arguments; with ``sync`` (and several ranks) the batch statistics are those
    of the global batch, and the running statistics are updated in place from them, identically on every rank."""
    if not (sync and training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1, *([1] * (x.dim() - 2)))
    local_n = x.numel() // x.shape[1]
    sums = differentiable_all_reduce(torch.cat([x.sum(dims), x.new_full((1,), float(local_n))]))
    total, count = sums[:-1], sums[-1].detach()
    mean = total / count
    centred = x - mean.view(shape)
    var = differentiable_all_reduce(centred.pow(2).sum(dims)) / count
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            n = float(count)
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            running_var.mul_(1 - momentum).add_(var.detach() * (n / max(n - 1.0, 1.0)), alpha=momentum)
    out = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out
