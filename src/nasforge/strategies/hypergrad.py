"""Architecture gradients for bilevel search (METHODS.md §1.4), independent of any particular network.

First order: ∇_α L_val(w, α), with the weights frozen (``requires_grad`` off) for that forward and backward, so
that no weight gradient is computed anywhere: autograd would skip the built-in ops' weight gradients anyway, but
a custom backward (``ops/depthwise.py``) can only know from ``requires_grad`` that a gradient is not wanted.

Second order (DARTS "unrolled"): with the virtual step w' = w − ξ·(μ·m + ∇_w L_train(w, α) + λ·w),
    ∇_α L_val(w', α) − ξ · ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α),
the Hessian-vector product taken as a central finite difference at w ± ε·v, v = ∇_{w'} L_val(w', α),
ε = 0.01 / ‖v‖. Weights (and BN running statistics) are restored afterwards.

Weights the training loss does not use (ops a supernet skips this step, e.g. EnTranNAS Transit-cell ops outside
the derived cell) take no part in the unrolled step, exactly as the real SGD step skips parameters without a
gradient: they do not move in the virtual step and contribute nothing to v.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["first_order_arch_grads", "second_order_arch_grads", "frozen"]

LossFn = Callable[[], torch.Tensor]
Reduce = Callable[[Sequence[torch.Tensor | None]], Sequence[torch.Tensor | None]]


def _same(grads: Sequence[torch.Tensor | None]) -> Sequence[torch.Tensor | None]:
    return grads


@contextlib.contextmanager
def frozen(params: Sequence[torch.Tensor]) -> Iterator[None]:
    """``requires_grad`` off for ``params`` inside the block (and back on after it, whatever happens): a step
    that updates one set of parameters builds no gradient of the other."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def first_order_arch_grads(val_loss: LossFn, arch: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] = ()
                           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(L_val, ∇_α L_val)``; ``weights`` are frozen meanwhile (their gradients are not wanted)."""
    with frozen(weights):
        loss = val_loss()
        grads = torch.autograd.grad(loss, list(arch))
    return loss.detach(), list(grads)


@torch.no_grad()
def _set(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    for p, v in zip(params, values):
        p.copy_(v)


def second_order_arch_grads(model: nn.Module, train_loss: LossFn, val_loss: LossFn, weights: Sequence[torch.Tensor],
                            arch: Sequence[torch.Tensor], xi: float, momentum: float, weight_decay: float,
                            momentum_buffers: Sequence[torch.Tensor | None], r: float = 1e-2,
                            reduce_train: Reduce = _same, reduce_val: Reduce = _same
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The DARTS unrolled hypergradient. ``train_loss``/``val_loss`` evaluate the model at its current weights.

    ``reduce_train``/``reduce_val`` turn one process's gradients of the training/validation loss into those of
    the global batch (data-parallel runs average them over the ranks): each of the four gradient terms is
    reduced once, so every rank takes the same virtual step, the same ε and the same finite difference."""
    weights, arch = list(weights), list(arch)
    original = [w.detach().clone() for w in weights]
    buffers = [b.detach().clone() for b in model.buffers()]
    try:
        # 1. virtual step w' = w - xi * (momentum * m + dL_train/dw + wd * w), over the weights the loss uses
        g_train = reduce_train(torch.autograd.grad(train_loss(), weights, allow_unused=True))
        used = [g is not None for g in g_train]
        momentum_buffers = [m for m, u in zip(momentum_buffers, used) if u]
        g_train = [g for g in g_train if g is not None]
        weights, original = [w for w, u in zip(weights, used) if u], [w for w, u in zip(original, used) if u]
        with torch.no_grad():
            for w, g, m in zip(weights, g_train, momentum_buffers):
                step = g + weight_decay * w
                if m is not None:
                    step = step + momentum * m
                w.sub_(xi * step)
        # 2. gradients of L_val at w'
        loss = val_loss()
        grads = reduce_val(torch.autograd.grad(loss, arch + weights))
        d_arch, v = list(grads[: len(arch)]), list(grads[len(arch):])
        # 3. finite-difference Hessian-vector product at the original w
        eps = r / torch.sqrt(sum((g * g).sum() for g in v))
        _set(weights, [w + eps * g for w, g in zip(original, v)])
        g_pos = reduce_train(torch.autograd.grad(train_loss(), arch))
        _set(weights, [w - eps * g for w, g in zip(original, v)])
        g_neg = reduce_train(torch.autograd.grad(train_loss(), arch))
        hvp = [(p - n) / (2 * eps) for p, n in zip(g_pos, g_neg)]
        return loss.detach(), [d - xi * h for d, h in zip(d_arch, hvp)]
    finally:
        _set(weights, original)
        _set(list(model.buffers()), buffers)
