"""Parameter and multiply-add counts of networks and of single ops (DESIGN.md "costs"; METHODS.md §1.3, §3.2).

Conventions, chosen to reproduce the papers' tables:

* **Parameters** follow DARTS's ``count_parameters_in_MB``: every parameter except those of the auxiliary head
  (the head only exists for training). BN ``weight``/``bias`` count (2 per channel when affine); running
  statistics are buffers and do not.
* **Multiply-adds** ("×+" in the DARTS/P-DARTS/NASNet tables, "FLOPs" in much of the later literature) count
  one per multiply-accumulate of a ``Conv2d`` (``out_elements × C_in/groups × kH × kW``) or ``Linear``
  (``out_elements × in_features``), for one image in evaluation mode (so the aux head, which only runs in
  training, is not counted). BN, ReLU, pooling, biases, element-wise additions and concatenations are *not*
  counted — they are memory-bound and the papers leave them out too.

:func:`flop_counter_macs` measures the same quantity with ``torch.utils.flop_counter`` as an independent check.
:func:`op_cost` gives the analytic cost of one candidate op at its real width and resolution, which
resource-constrained search (GOLD-NAS) weights by the architecture parameters; ops it has no formula for are
built and measured once (cached), so newly registered ops still get a cost.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .ops import create_op
__all__ = ["count_params", "count_macs", "flop_counter_macs", "op_cost"]


def count_params(model: nn.Module, exclude_prefixes: Sequence[str] = ("auxiliary",)) -> int:
    """Number of parameters, leaving out submodules whose name starts with one of ``exclude_prefixes``.

    A parameter is excluded when any component of its dotted name starts with a prefix, so
    ``auxiliary_head.features.2.weight`` and a wrapped ``module.auxiliary_head...`` are both left out, as in
    DARTS (which drops every name containing "auxiliary"). Shared parameters count once.
    """
    prefixes = tuple(exclude_prefixes)
    return sum(p.numel() for name, p in model.named_parameters()
               if not (prefixes and any(part.startswith(prefixes) for part in name.split("."))))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluation mode for the duration, then every submodule's own previous mode back (modes may be mixed)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _probe(model: nn.Module, input_size: tuple[int, int, int]) -> torch.Tensor:
    """One image of ``input_size`` on the model's device and dtype (random: some ops could special-case zeros)."""
    ref = next(iter(model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)  # never touch the global RNG
    return torch.randn((1, *input_size), generator=gen).to(device=device, dtype=dtype)


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of one ``(C, H, W)`` image in evaluation mode (see module docstring).

    Counted with forward hooks on every ``Conv2d`` and ``Linear``, so only the modules the forward pass really
    runs are counted (a ``none`` op or an unused aux head costs nothing). The model's train/eval modes are
    restored afterwards.
    """
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with _eval_mode(model), torch.no_grad():
            model(_probe(model, input_size))
    finally:
        for h in handles:
            h.remove()
    return total


def flop_counter_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of one ``(C, H, W)`` image in eval mode measured by ``FlopCounterMode`` (its FLOPs / 2).

    ``FlopCounterMode`` counts convolutions and matrix products at the aten level, independently of the module
    hooks of :func:`count_macs`; the two agree on conv/linear networks and disagree where a model computes
    matrix products outside ``Conv2d``/``Linear``.
    """
    with _eval_mode(model), torch.no_grad():
        x = _probe(model, input_size)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    return int(counter.get_total_flops()) // 2


# -- analytic per-op costs ---------------------------------------------------------------------------------------

def _out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Conv/pool output length (the ``Conv2d`` formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _dil_block(c: int, k: int, h: int, w: int, stride: int, padding: int, dilation: int) -> tuple[int, int, int, int]:
    """ReLU → depthwise k×k → pointwise 1×1 → BN: (params, MACs, out_h, out_w)."""
    ho, wo = _out(h, k, stride, padding, dilation), _out(w, k, stride, padding, dilation)
    params = c * k * k + c * c + 2 * c
    macs = c * ho * wo * k * k + c * c * ho * wo
    return params, macs, ho, wo


def _sep(k: int):
    def cost(c: int, h: int, w: int, s: int) -> tuple[int, int]:
        p1, m1, ho, wo = _dil_block(c, k, h, w, s, k // 2, 1)
        p2, m2, _, _ = _dil_block(c, k, ho, wo, 1, k // 2, 1)
        return p1 + p2, m1 + m2
    return cost


def _dil(k: int):
    def cost(c: int, h: int, w: int, s: int) -> tuple[int, int]:
        p, m, _, _ = _dil_block(c, k, h, w, s, (k // 2) * 2, 2)
        return p, m
    return cost


def _conv(k: int):
    def cost(c: int, h: int, w: int, s: int) -> tuple[int, int]:
        ho, wo = _out(h, k, s, k // 2), _out(w, k, s, k // 2)
        return c * c * k * k + 2 * c, c * c * k * k * ho * wo
    return cost


def _skip(c: int, h: int, w: int, s: int) -> tuple[int, int]:
    if s == 1:
        return 0, 0  # Identity
    if c % 2:
        raise ValueError(f"FactorizedReduce needs an even number of channels, got {c}")
    half = c // 2
    # branch 1 on x; branch 2 on x[1:, 1:], padded back to (h, w) when w is odd (see FactorizedReduce)
    h2, w2 = (h, w) if w % 2 else (h - 1, w - 1)
    out1 = _out(h, 1, 2, 0) * _out(w, 1, 2, 0)
    out2 = _out(h2, 1, 2, 0) * _out(w2, 1, 2, 0)
    return 2 * c * half + 2 * c, half * c * (out1 + out2)


def _conv7x1_1x7(c: int, h: int, w: int, s: int) -> tuple[int, int]:
    w1 = _out(w, 7, s, 3)  # 1×7 conv, stride (1, s)
    h2 = _out(h, 7, s, 3)  # 7×1 conv, stride (s, 1)
    return 14 * c * c + 2 * c, c * c * 7 * (h * w1) + c * c * 7 * (h2 * w1)


def _free(c: int, h: int, w: int, s: int) -> tuple[int, int]:
    return 0, 0  # none and pools: no parameters in evaluation mode; pooling is not counted


_ANALYTIC = {
    "none": _free, "max_pool_3x3": _free, "avg_pool_3x3": _free, "max_pool_5x5": _free, "max_pool_7x7": _free,
    "avg_pool_5x5": _free, "skip_connect": _skip, "sep_conv_3x3": _sep(3), "sep_conv_5x5": _sep(5),
    "sep_conv_7x7": _sep(7), "dil_conv_3x3": _dil(3), "dil_conv_5x5": _dil(5), "conv_7x1_1x7": _conv7x1_1x7,
    "conv_1x1": _conv(1), "conv_3x3": _conv(3),
}


@lru_cache(maxsize=4096)
def _measured_op_cost(op: str, channels: int, height: int, width: int, stride: int) -> tuple[int, int]:
    module = create_op(op, channels, stride)
    return count_params(module, exclude_prefixes=()), count_macs(module, (channels, height, width))


def op_cost(op: str, channels: int, height: int, width: int, stride: int) -> tuple[int, int]:
    """(params, multiply-adds) of one evaluation-mode op (affine BN) on a ``channels × height × width`` input.

    Exact for the op module ``create_op(op, channels, stride)`` builds, at its real output resolution (strided
    ops are charged at the reduced size). Ops without a formula here — e.g. registered later by a new search
    space — are built and measured once instead.

    Raises:
        NasforgeError: ``op`` is not a registered op.
    """
    cost = _ANALYTIC.get(op)
    if cost is not None:
        return cost(channels, height, width, stride)
    return _measured_op_cost(op, channels, height, width, stride)
