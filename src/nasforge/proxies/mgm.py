"""KNAS's gradient kernel: MGM, the mean of the Gram matrix of per-sample gradients at initialisation.

KNAS (Xu, Zhao, Lin, Gao, Sun, Yang, ICML 2021, arXiv 2111.13293; code ``Jingjing-NLP/KNAS`` @ 5fbb0fe), METHODS.md
§6.2. Two statistics, registered as two proxies:

``mgm`` — the paper's definition. With per-sample gradients g_i = ∇_θ ℓ(f(x_i; θ0), y_i) of n samples,
    MGM = (1/n²) Σ_ij g_iᵀ g_j = ‖(1/n) Σ_i g_i‖²,
or, with ``drop_diagonal``, the mean of the off-diagonal entries (Σ_ij − Σ_i ‖g_i‖²) / (n(n−1)). The Gram matrix
is never formed: its sum is ‖Σ g_i‖² and its trace Σ ‖g_i‖². The per-sample gradients come from one batched
pass (``torch.func.vmap`` over ``grad``), not from n backward passes.

``mgm_official`` — what the official code computes (METHODS.md §6.2 steps 1-6), re-implemented from that
description: per-sample gradients of the first ``tensors`` (11) parameter tensors with at least ``min_numel``
(50) elements, in definition order; the first ``coords`` (50) entries of each; samples k and k + n/2 paired;
score = Σ over tensors and coordinates of Σ_k (a_k − ā)(b_k − b̄) / n² (the code's / 2500 at n = 50). It is a
paired covariance, about 0 in expectation for i.i.d. samples, not an estimate of the Gram mean.

BatchNorm (``bn_mode``): ``per_sample_train`` normalises each sample by its own statistics over H×W, exactly
what the official code's batch-1 training-mode passes do (the network's running statistics are switched off
for good — scoring networks are throwaway); ``eval`` uses the running statistics (identity at initialisation).
A batched backward with batch-mode BN would *not* give per-sample gradients.

Not implemented: the official code's data pipeline (its shuffled, augmented loader) is the caller's batch.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap
from torch.nn import functional as F

from ..errors import ConfigError
from .base import logits_of, register_proxy

__all__ = ["per_sample_grads", "per_sample_grads_loop", "select_params", "gram_mean", "official_code_statistic",
           "mgm", "mgm_official"]

BN_MODES = ("per_sample_train", "eval")


def select_params(net: nn.Module, which: str = "all", first_k: int = 11, min_numel: int = 50) -> list[str]:
    """Names of the parameters to differentiate: ``all``, or ``first_k`` = the first ``first_k`` tensors with at
    least ``min_numel`` elements in definition order (the official code's choice: the stem and first convs)."""
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if which == "all":
        return [n for n, _ in named]
    if which == "first_k":
        return [n for n, p in named if p.numel() >= min_numel][:first_k]
    raise ConfigError(f"mgm params must be 'all' or 'first_k', got {which!r}")


def _prepare_bn(net: nn.Module, bn_mode: str) -> None:
    if bn_mode == "per_sample_train":
        net.train()
        replace_all_batch_norm_modules_(net)  # batch statistics only, no running-statistics updates under vmap
    elif bn_mode == "eval":
        net.eval()
    else:
        raise ConfigError(f"mgm bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")


def per_sample_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Iterable[str],
                     bn_mode: str = "per_sample_train", chunk_size: int | None = None) -> dict[str, torch.Tensor]:
    """Per-sample gradients ``{name: [n, *shape]}`` of the cross-entropy w.r.t. parameters ``names``, in one
    vectorised pass. Each sample is forwarded alone (a batch of one), so BatchNorm never mixes samples."""
    _prepare_bn(net, bn_mode)
    names = list(names)
    params = dict(net.named_parameters())
    wanted = {n: params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in params.items() if n not in wanted}
    buffers = dict(net.named_buffers())

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, ({**fixed, **p}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(logits_of(out), yi.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(wanted, x, y)


def per_sample_grads_loop(net: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Iterable[str],
                          bn_mode: str = "per_sample_train") -> dict[str, torch.Tensor]:
    """The same as :func:`per_sample_grads` with one ordinary backward pass per sample (the official code's way).

    The reference the batched version is tested against and benchmarked with. Unused parameters get zeros."""
    net.train(bn_mode == "per_sample_train")
    if bn_mode not in BN_MODES:
        raise ConfigError(f"mgm bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    names = list(names)
    params = dict(net.named_parameters())
    tensors = [params[n] for n in names]
    rows: list[list[torch.Tensor]] = []
    for i in range(len(x)):
        loss = F.cross_entropy(logits_of(net(x[i:i + 1])), y[i:i + 1])
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        rows.append([torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)])
    return {n: torch.stack([r[j] for r in rows]) for j, n in enumerate(names)}


def gram_mean(grads: dict[str, torch.Tensor], drop_diagonal: bool = False) -> float:
    """Mean of the Gram matrix H_ij = g_iᵀ g_j of per-sample gradients ``{name: [n, ...]}``, in float64.

    (1/n²)‖Σ_i g_i‖², or with ``drop_diagonal`` (‖Σ_i g_i‖² − Σ_i ‖g_i‖²) / (n(n−1)).
    """
    total = torch.zeros((), dtype=torch.float64)
    trace = torch.zeros((), dtype=torch.float64)
    n = 0
    for g in grads.values():
        g = g.reshape(g.shape[0], -1).to(torch.float64)
        n = g.shape[0]
        s = g.sum(0)
        total += s @ s
        trace += (g * g).sum()
    if n == 0:
        raise ConfigError("mgm needs at least one sample")
    if drop_diagonal:
        if n < 2:
            raise ConfigError("mgm with drop_diagonal needs at least two samples")
        return float((total - trace) / (n * (n - 1)))
    return float(total / (n * n))


def official_code_statistic(grads: torch.Tensor) -> float:
    """The official code's score from per-sample gradient entries ``[n, tensors, coords]``.

    Samples k and k + n/2 are paired (k < n/2); for every tensor and coordinate the centred products of the
    pairs are summed; the total is divided by n² (2500 for the code's 50 samples). An odd last sample is unused.
    """
    if grads.dim() != 3 or grads.shape[0] < 2:
        raise ConfigError(f"the official-code statistic needs gradients [n >= 2, tensors, coords], got "
                          f"{tuple(grads.shape)}")
    n = grads.shape[0]
    half = n // 2
    g = grads.to(torch.float64)
    a, b = g[:half], g[half:2 * half]
    return float(((a - a.mean(0)) * (b - b.mean(0))).sum() / (n * n))


def _take(x: torch.Tensor, y: torch.Tensor, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n_samples < 1:
        raise ConfigError(f"mgm n_samples must be >= 1, got {n_samples}")
    return x[:n_samples], y[:n_samples]


@register_proxy("mgm", "KNAS gradient kernel, paper definition: mean of the Gram matrix of per-sample gradients",
                n_samples=50, params="all", first_k=11, min_numel=50, bn_mode="per_sample_train",
                drop_diagonal=False, chunk_size=0)
def mgm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, n_samples: int, params: str, first_k: int,
        min_numel: int, bn_mode: str, drop_diagonal: bool, chunk_size: int) -> float:
    """MGM of ``net`` on the first ``n_samples`` of the batch (see the module docstring)."""
    x, y = _take(x, y, n_samples)
    names = select_params(net, params, first_k, min_numel)
    return gram_mean(per_sample_grads(net, x, y, names, bn_mode, chunk_size or None), drop_diagonal)


@register_proxy("mgm_official", "KNAS gradient kernel as the official code computes it (paired covariance of "
                "per-sample gradient entries of the first 11 tensors)",
                n_samples=50, tensors=11, min_numel=50, coords=50, bn_mode="per_sample_train")
def mgm_official(net: nn.Module, x: torch.Tensor, y: torch.Tensor, n_samples: int, tensors: int, min_numel: int,
                 coords: int, bn_mode: str) -> float:
    """The official code's statistic (see :func:`official_code_statistic`)."""
    if not 1 <= coords <= min_numel:
        raise ConfigError(f"mgm_official coords must be in 1..min_numel ({min_numel}), got {coords}")
    x, y = _take(x, y, n_samples)
    names = select_params(net, "first_k", tensors, min_numel)
    grads = per_sample_grads(net, x, y, names, bn_mode)
    entries = torch.stack([grads[n].reshape(len(x), -1)[:, :coords] for n in names], dim=1)  # [n, tensors, coords]
    return official_code_statistic(entries)
