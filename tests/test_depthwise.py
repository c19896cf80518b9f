"""``ops.depthwise.depthwise_conv2d`` against ``F.conv2d`` under autograd: outputs, input gradients and weight
gradients for every route its backward takes (flipped forward conv, phase-0 grid of a strided dilated conv, the
native kernels, 3×3 pieces of wider kernels, dilation phases), odd and tiny images, unused outputs, gradients
that are not wanted, channels-last input and autocast."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from nasforge.ops.depthwise import _window_starts, avg_pool2d, depthwise_conv2d

TOL = {"rtol": 1e-4, "atol": 1e-5}

# (kernel, stride, padding, dilation): the DARTS ops (sep/dil 3x3/5x5 at stride 1 and 2) and the edges of the routes
GEOMETRIES = [
    (3, 1, 1, 1), (5, 1, 2, 1), (3, 1, 2, 2), (5, 1, 4, 2),  # stride 1: sep and dil convs
    (3, 2, 1, 1), (5, 2, 2, 1), (3, 2, 2, 2), (5, 2, 4, 2),  # stride 2: native (d=1) and phase-0 grid (d=2)
    (3, 1, 0, 1), (7, 1, 3, 1), (3, 1, 3, 3), (1, 1, 0, 1), (5, 1, 1, 1),  # no padding, 3-wide windows, d=3, 1x1
    (3, 2, 3, 3), (3, 3, 3, 3), (4, 1, 2, 1),
]


def _reference(x: torch.Tensor, weights: list[torch.Tensor], stride: int, padding: int, dilation: int):
    return [F.conv2d(x, w, None, stride, padding, dilation, x.shape[1]) for w in weights]


def _grads(fn, x: torch.Tensor, weights: list[torch.Tensor], upstream: list[torch.Tensor | None]):
    x = x.detach().clone().requires_grad_(True)
    ws = [w.detach().clone().requires_grad_(True) for w in weights]
    outs = fn(x, ws)
    loss = sum((o * u).sum() for o, u in zip(outs, upstream) if u is not None)
    loss.backward()
    return [o.detach() for o in outs], x.grad, [w.grad for w in ws]


@pytest.mark.parametrize("kernel,stride,padding,dilation", GEOMETRIES)
@pytest.mark.parametrize("size", [8, 7, 3])
def test_matches_conv2d(kernel: int, stride: int, padding: int, dilation: int, size: int) -> None:
    if size + 2 * padding < dilation * (kernel - 1) + 1:
        pytest.skip("kernel wider than the padded image")
    g = torch.Generator().manual_seed(size + 31 * kernel + 7 * dilation)
    x = torch.randn(3, 5, size, size, generator=g)
    weights = [torch.randn(5, 1, kernel, kernel, generator=g) for _ in range(3)]
    out_size = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    upstream = [torch.randn(3, 5, out_size, out_size, generator=g), None,  # output 1 unused: no gradient
                torch.randn(3, 5, out_size, out_size, generator=g)]
    ours = _grads(lambda x, ws: depthwise_conv2d(x, ws, (stride,) * 2, (padding,) * 2, (dilation,) * 2),
                  x, weights, upstream)
    ref = _grads(lambda x, ws: _reference(x, ws, stride, padding, dilation), x, weights, upstream)
    for a, b in zip(ours[0], ref[0]):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(ours[1], ref[1], **TOL)
    for a, b in zip(ours[2], ref[2]):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, **TOL)


def test_unwanted_gradients_are_not_computed() -> None:
    """Frozen weights (a first-order architecture step) get no gradient; an input without grad gets none."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 1, 5, 5)  # requires_grad False
    (y,) = depthwise_conv2d(x, [w], (1, 1), (2, 2), (1, 1))
    y.sum().backward()
    assert w.grad is None and x.grad is not None
    w.requires_grad_(True)
    (y,) = depthwise_conv2d(x.detach(), [w], (1, 1), (2, 2), (1, 1))
    y.sum().backward()
    torch.testing.assert_close(w.grad, torch.autograd.grad(
        F.conv2d(x.detach(), w, None, 1, 2, 1, 4).sum(), w)[0], **TOL)


def test_channels_last_input_and_autocast() -> None:
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    ws = [torch.randn(4, 1, 3, 3), torch.randn(4, 1, 5, 5)[:, :, 1:4, 1:4]]
    up = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)]
    ours = _grads(lambda x, w: depthwise_conv2d(x, w, (1, 1), (2, 2), (2, 2)), x, ws, up)
    ref = _grads(lambda x, w: _reference(x, w, 1, 2, 2), x, ws, up)
    torch.testing.assert_close(ours[1], ref[1], **TOL)
    for a, b in zip(ours[2], ref[2]):
        torch.testing.assert_close(a, b, **TOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the plain convolution, its own dtypes
        (y,) = depthwise_conv2d(x, ws[:1], (1, 1), (1, 1), (1, 1))
    assert y.dtype == torch.bfloat16


def test_window_starts_cover_the_kernel() -> None:
    for k in range(3, 12):
        covered = {s + i for s in _window_starts(k) for i in range(3)}
        assert covered == set(range(k)), k


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (5, 1, 2), (2, 2, 0), (3, None, 1)])
@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("size", [8, 7])
def test_avg_pool_matches(kernel: int, stride: int | None, padding: int, include: bool, size: int) -> None:
    x = torch.randn(3, 4, size, size, generator=torch.Generator().manual_seed(size))
    up = None
    grads = []
    for fn in (avg_pool2d, lambda x, k, s, p, i: F.avg_pool2d(x, k, s, p, count_include_pad=i)):
        xi = x.clone().requires_grad_(True)
        y = fn(xi, kernel, stride, padding, include)
        up = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)) if up is None else up
        (y * up).sum().backward()
        grads.append((y.detach(), xi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], **TOL)
    torch.testing.assert_close(grads[0][1], grads[1][1], **TOL)


def test_torch_func_transforms_take_the_plain_ops() -> None:
    """Per-sample gradients (``torch.func``, as the MGM proxy takes them) work through both functions."""
    x = torch.randn(3, 4, 6, 6)
    w = torch.randn(4, 1, 3, 3)

    def loss(w: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        (y,) = depthwise_conv2d(xi[None], [w], (1, 1), (1, 1), (1, 1))
        return avg_pool2d(y, 3, 1, 1, False).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(w, x)
    for i in range(3):
        ref = torch.autograd.grad(F.avg_pool2d(F.conv2d(x[i:i + 1], w.requires_grad_(), None, 1, 1, 1, 4), 3, 1, 1,
                                               count_include_pad=False).square().sum(), w)[0]
        torch.testing.assert_close(per_sample[i], ref, **TOL)


def test_second_derivatives_are_refused_not_dropped() -> None:
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, requires_grad=True)
    (y,) = depthwise_conv2d(x, [w], (1, 1), (1, 1), (1, 1))
    with pytest.raises(RuntimeError, match="first-order only"):
        torch.autograd.grad(y.square().sum(), w, create_graph=True)
