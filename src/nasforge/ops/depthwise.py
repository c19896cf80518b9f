"""Depthwise convolutions (and average pools) with a backward that takes the fast CPU kernel per gradient.

A search cell runs every sep/dil conv's depthwise stage on the same few inputs, and PyTorch's CPU backward of a
depthwise conv is far slower than its forward. oneDNN (torch 2.13's CPU convolutions) has a fast depthwise
forward for every geometry, but a fast depthwise *weight gradient* only for 3×3, dilation 1, stride 1: the
others fall to generic or gemm kernels (``ONEDNN_VERBOSE=1`` shows ``jit_dw`` against ``jit:avx512_core`` and
``x64:gemm:jit``). Measured on this repository's 2-core CPU (``docs/performance.md``):

* forward: NCHW as given (oneDNN reorders internally); converting to channels-last costs more than it saves.
* input gradient: the native kernel is slow (3x3 dilation 2 at [64, 64, 32, 32]: 31 ms NCHW, 10 ms
  channels-last); at stride 1 it is exactly the *forward* conv of the output gradient with the flipped kernel
  (5 ms), and at a stride dividing the dilation the same on the phase-0 grid of the padded input.
* weight gradient: on channels-last copies, rewritten into 3×3 dilation-1 problems (``_weight_grads``), made
  once per call and only when a weight gradient is wanted: a first-order DARTS architecture step freezes the
  weights and makes none.
* ``avg_pool2d``: a depthwise conv with a kernel of ones over the window count, 4-9x faster than PyTorch's NCHW
  average pool here (used by the fused supernet path).

Same convolutions in another summation order (``tests/test_depthwise.py``). Off the CPU, under autocast and
under ``torch.func`` transforms, the plain ``F.conv2d`` / ``F.avg_pool2d`` run. The backward is
first order only and says so if asked for more (``create_graph=True``): nothing in nasforge differentiates twice
through a supernet (second-order DARTS uses a finite difference).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.nn import functional as F

__all__ = ["avg_pool2d", "depthwise_conv2d"]

Pair = tuple[int, int]


def depthwise_conv2d(x: torch.Tensor, weights: Sequence[torch.Tensor], stride: Pair, padding: Pair,
                     dilation: Pair) -> list[torch.Tensor]:
    """``[F.conv2d(x, w, groups=C, stride, padding, dilation) for w in weights]``, every ``w`` of shape
    ``[C, 1, k, k]`` (zero padding, no bias), with the CPU backward described in the module docstring."""
    if _plain_ops_only(x):
        return [F.conv2d(x, w.to(x.dtype), None, stride, padding, dilation, x.shape[1]) for w in weights]
    return list(_SharedInputDepthwise.apply(x, (stride, padding, dilation), *weights))


def avg_pool2d(x: torch.Tensor, kernel: int | Pair, stride: int | Pair | None, padding: int | Pair,
               count_include_pad: bool) -> torch.Tensor:
    """``F.avg_pool2d`` (floor mode) as a depthwise conv with a kernel of ones, divided by the window's count.
    PyTorch's NCHW average-pool kernel is slow on this CPU: forward + backward at [64, 16, 32, 32], 3x3, stride 1,
    9.5 ms against about 1.5 ms this way (``docs/performance.md``). Off the CPU: ``F.avg_pool2d``."""
    k, p = _pair(kernel), _pair(padding)
    s = k if stride is None else _pair(stride)  # as F.avg_pool2d: no stride means the kernel's
    if _plain_ops_only(x):
        return F.avg_pool2d(x, k, s, p, count_include_pad=count_include_pad)
    (summed,) = depthwise_conv2d(x, [x.new_ones((x.shape[1], 1, *k))], s, p, (1, 1))
    if count_include_pad:
        return summed / (k[0] * k[1])
    count = F.conv2d(x.new_ones((1, 1, *x.shape[-2:])), x.new_ones((1, 1, *k)), None, s, p)  # window sizes
    return summed / count


def _pair(v: int | Sequence[int]) -> Pair:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _plain_ops_only(x: torch.Tensor) -> bool:
    """Whether the plain ops run instead: off the CPU (cuDNN has its own fast depthwise kernels), under autocast,
    or under a ``torch.func`` transform (vmap, grad; the proxies' per-sample gradients), which the custom
    backward supports neither of."""
    if x.device.type != "cpu":
        return True
    transforms = getattr(torch._C, "_are_functorch_transforms_active", None)
    if transforms is not None and transforms():
        return True
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def _flipped_padding(weight: torch.Tensor, padding: Pair, dilation: Pair) -> Pair | None:
    """The padding under which the forward conv of the output gradient with the flipped kernel is the input
    gradient of a stride-1 conv (the input's size comes back), or None where no such padding exists."""
    k = weight.shape[-2:]
    out = tuple(d * (kk - 1) - p for kk, p, d in zip(k, padding, dilation))
    return out if min(out) >= 0 else None  # type: ignore[return-value]


def _phase_dilation(kernel: Pair, stride: Pair, dilation: Pair) -> Pair | None:
    """The dilation d' = d / s left once a strided conv is read on the stride's phase-0 grid (possible where the
    stride divides the dilation: input index s·a + d·i = s·(a + d'·i)); None where it does not, or where a kernel
    side is under 3 (no 3×3 pieces)."""
    if any(d % s or k < 3 for k, s, d in zip(kernel, stride, dilation)):
        return None
    return (dilation[0] // stride[0], dilation[1] // stride[1])


def _native_input_grad(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: Pair, padding: Pair,
                       dilation: Pair) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(g, x, w, None, stride, padding, dilation, False, (0, 0), x.shape[1],
                                               (True, False, False))[0]


def _native_weight_grad(g: torch.Tensor, x: torch.Tensor, weight_shape: Sequence[int], stride: Pair,
                        padding: Pair, dilation: Pair) -> torch.Tensor:
    w = x.new_empty(weight_shape)  # only its shape is read
    return torch.ops.aten.convolution_backward(g, x, w, None, stride, padding, dilation, False, (0, 0), x.shape[1],
                                               (False, True, False))[1]


def _input_grad(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: Pair, padding: Pair,
                dilation: Pair) -> torch.Tensor:
    """∂L/∂x of one depthwise conv: a forward conv of the output gradient with the flipped kernel, at stride 1
    directly and at a stride dividing the dilation on the phase-0 grid of the padded input (oneDNN's native
    kernel there is a slow gemm: 7.4 ms against 1-2 ms for [64, 32, 32, 32], 5x5, dilation 2, stride 2)."""
    channels = x.shape[1]
    if stride == (1, 1):
        pad = _flipped_padding(w, padding, dilation)
        if pad is not None:
            return F.conv2d(g, w.flip(-2, -1), None, 1, pad, dilation, channels)
        return _native_input_grad(g, x, w, stride, padding, dilation)
    sub = _phase_dilation(tuple(w.shape[-2:]), stride, dilation)
    if sub is None:
        return _native_input_grad(g, x, w, stride, padding, dilation)
    (kh, kw), (h, wd) = w.shape[-2:], x.shape[-2:]
    # the gradient of a valid stride-1 conv with dilation d' on the phase-0 grid, scattered back onto that grid
    grid = F.conv2d(g, w.flip(-2, -1), None, 1, (sub[0] * (kh - 1), sub[1] * (kw - 1)), sub, channels)
    full = g.new_zeros((g.shape[0], channels, h + 2 * padding[0], wd + 2 * padding[1]))
    full[:, :, ::stride[0], ::stride[1]] = grid  # exactly the grid's size: ceil((H + 2p) / s) per side
    return full[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + wd]


def _phases(t: torch.Tensor, step: Pair) -> torch.Tensor:
    """``[N, C, H, W]`` (H, W divisible by ``step``) as ``[sh·sw·N, C, H/sh, W/sw]`` channels-last, phase (r, q)
    (``t[..., r::sh, q::sw]``) in batch block r·sw + q; one copy."""
    n, c, h, w = t.shape
    sh, sw = step
    v = t.reshape(n, c, h // sh, sh, w // sw, sw).permute(3, 5, 0, 2, 4, 1).contiguous()  # memory: r, q, n, a, b, c
    return v.view(sh * sw * n, h // sh, w // sw, c).permute(0, 3, 1, 2)


def _window_starts(k: int) -> list[int]:
    """Offsets of the 3-wide windows that cover a k-wide kernel (k >= 3): 3 -> [0], 5 -> [0, 2], 7 -> [0, 3, 4]."""
    return sorted({min(start, k - 3) for start in range(0, k, 3)})


def _weight_grads(x: torch.Tensor, grads: Sequence[torch.Tensor], kernel: Pair, stride: Pair, padding: Pair,
                  dilation: Pair) -> list[torch.Tensor]:
    """∂L/∂w of depthwise convs of the same input ``x``, one per output gradient in ``grads``, on channels-last
    copies. oneDNN's fast depthwise weight-gradient kernel takes only 3×3, dilation 1, stride 1 (others fall to
    generic kernels, 2-8x slower: [64, 16, 32, 32], 5x5: 4.2 ms against 2.0 ms; 5x5 dilation 2 at 8x8: 7.1 ms in
    a gemm). So every other geometry whose stride divides its dilation is rewritten into such 3×3 problems:
    read on the stride's phase-0 grid (leaving dilation d' = d / s), its d'×d' phases stacked into the batch
    (a dilation-d' correlation on each phase is a dilation-1 one), and a kernel wider than 3 assembled from the
    3×3 windows that cover it, each with the gradient shifted by the window's offset."""
    weight_shape = (x.shape[1], 1, *kernel)
    sub = _phase_dilation(kernel, stride, dilation)
    if sub is None or (kernel, stride, dilation) == ((3, 3), (1, 1), (1, 1)):
        x_cl = x.contiguous(memory_format=torch.channels_last)
        return [_native_weight_grad(g.contiguous(memory_format=torch.channels_last), x_cl, weight_shape, stride,
                                    padding, dilation) for g in grads]
    (kh, kw), (h, w) = kernel, x.shape[-2:]
    ho, wo = grads[0].shape[-2:]
    # output extent rounded up to whole phases (the added gradient rows are zeros and add nothing), and the
    # input extent a valid stride-1 dilation-d' correlation needs for it
    hq, wq = -(-ho // sub[0]) * sub[0], -(-wo // sub[1]) * sub[1]
    lh, lw = hq + sub[0] * (kh - 1), wq + sub[1] * (kw - 1)
    if stride == (1, 1):
        xs = F.pad(x, (padding[1], lw - w - padding[1], padding[0], lh - h - padding[0]))  # negative: a crop
    else:
        grid = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))[:, :, ::stride[0], ::stride[1]]
        xs = F.pad(grid, (0, lw - grid.shape[-1], 0, lh - grid.shape[-2]))
    xp = _phases(xs, sub)
    starts_h, starts_w = _window_starts(kh), _window_starts(kw)
    piece = (x.shape[1], 1, 3, 3)
    out = []
    for g in grads:
        gp = _phases(F.pad(g, (0, wq - wo, 0, hq - ho)), sub)
        dw = x.new_empty(weight_shape)
        for a in starts_h:
            for b in starts_w:
                shifted = F.pad(gp, (b, kw - 3 - b, a, kh - 3 - a)) if (kh, kw) != (3, 3) else gp
                dw[:, :, a:a + 3, b:b + 3] = _native_weight_grad(shifted, xp, piece, (1, 1), (0, 0), (1, 1))
        out.append(dw)
    return out


class _SharedInputDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, geometry: tuple, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stride, padding, dilation = geometry
        ctx.geometry = geometry
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None: nothing to compute for it
        ctx.save_for_backward(x, *weights)
        return tuple(F.conv2d(x, w.to(x.dtype), None, stride, padding, dilation, x.shape[1]) for w in weights)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: refuse loudly rather than drop the second derivative
            raise RuntimeError("nasforge's CPU depthwise backward is first-order only: differentiate twice with "
                               "search.fused=false (the plain path)")
        x, *weights = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = None
        if ctx.needs_input_grad[0]:
            for g, w in zip(grads, weights):
                if g is not None:
                    part = _input_grad(g, x, w.to(x.dtype), stride, padding, dilation)
                    grad_x = part if grad_x is None else grad_x.add_(part)
        grad_w: list[torch.Tensor | None] = [None] * len(weights)
        wanted = [i for i, (g, need) in enumerate(zip(grads, ctx.needs_input_grad[2:])) if need and g is not None]
        if wanted:
            kernel = tuple(weights[0].shape[-2:])
            dws = _weight_grads(x, [grads[i] for i in wanted], kernel, stride, padding, dilation)
            for i, dw in zip(wanted, dws):
                grad_w[i] = dw.to(weights[i].dtype)
        return (grad_x, None, *grad_w)
