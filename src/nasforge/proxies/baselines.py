"""The training-free baselines any reader compares a new proxy with, so MGM is always shown next to them.

* ``params`` — number of parameters (without auxiliary head). Ignores data and initialisation; on NAS-Bench-201
  it is a strong baseline (Kendall τ ≈ 0.57 with CIFAR-10 test accuracy in ZiCo's Table 3).
* ``grad_norm`` — Σ over conv/linear weights of ‖∂L/∂W‖₂ for the batch's mean cross-entropy (Abdelfattah et al.,
  "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).
* ``snip`` — Σ |W ⊙ ∂L/∂W| over conv/linear weights (Lee et al., ICLR 2019; summed as in Abdelfattah et al.).
* ``synflow`` — Σ W ⊙ ∂R/∂W with R = Σ f(1) of the network with |W| on an all-ones input, in float64
  (Tanaka et al., NeurIPS 2020). BatchNorm runs in evaluation mode (identity at initialisation), as the
  zero-cost-proxy authors ran NB201 networks without BN for SynFlow: a training-mode BN would zero a constant input.
* ``naswot`` — log|det K| with K_ij = Σ over ReLUs of the number of units on which samples i and j agree
  (both active or both inactive), from the binary codes at each ReLU's input (Mellor et al., ICML 2021).

Each follows its paper's definition as summarised here; none copies a reference implementation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..costs import count_params
from ..errors import ConfigError
from .base import logits_of, register_proxy, weight_tensors

__all__ = ["params", "grad_norm", "snip", "synflow", "naswot"]


def _loss_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, ∂L/∂weight) for every conv/linear weight, L = mean cross-entropy of the batch, BN in train mode."""
    net.train()
    weights = [w for _, w in weight_tensors(net)]
    loss = F.cross_entropy(logits_of(net(x)), y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w, torch.zeros_like(w) if g is None else g) for w, g in zip(weights, grads)]


@register_proxy("params", "number of parameters (no auxiliary head)", uses_data=False, uses_seed=False)
def params(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(count_params(net))


@register_proxy("grad_norm", "sum of the L2 norms of the conv/linear weight gradients at initialisation")
def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(sum(g.norm() for _, g in _loss_grads(net, x, y)))


@register_proxy("snip", "SNIP saliency: sum of |weight x gradient| over conv/linear weights")
def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(sum((w.detach() * g).abs().sum() for w, g in _loss_grads(net, x, y)))


@register_proxy("synflow", "SynFlow: synaptic flow of the |weights| network on an all-ones input (float64)",
                uses_data=False)
def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    weights = [w for _, w in weight_tensors(net)]
    total = logits_of(net(ones)).sum()
    grads = torch.autograd.grad(total, weights, allow_unused=True)
    return float(sum((w.detach() * g).sum() for w, g in zip(weights, grads) if g is not None))


@register_proxy("naswot", "NASWOT: log-determinant of the ReLU activation-pattern agreement kernel",
                n_samples=64)
def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor, n_samples: int) -> float:
    if n_samples < 2:
        raise ConfigError(f"naswot n_samples must be >= 2, got {n_samples}")
    x = x[:n_samples]
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        codes = (inputs[0].detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError("naswot needs a network with nn.ReLU modules")
    handles = [m.register_forward_hook(hook) for m in relus]
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])
