"""The proxy registry and what every proxy shares: options, deterministic initialisation, parameter selection.

A proxy is a function ``fn(net, x, y, **options) -> float`` that scores a freshly initialised network (higher
is meant to be better) from one batch of data, without training it. It may change the network (SynFlow takes
absolute values of the weights; per-sample gradients switch BatchNorm off running statistics), so callers give
each proxy its own network — :func:`nasforge.proxies.scoring.score_architecture` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from ..models.init import init_network
from ..registry import Registry

__all__ = ["Proxy", "PROXIES", "register_proxy", "resolve_options", "init_network", "logits_of", "weight_tensors"]

ProxyFn = Callable[..., float]


@dataclass(frozen=True)
class Proxy:
    """A registered proxy: the function, its default options and what it measures."""

    name: str
    fn: ProxyFn
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    uses_data: bool = True  # False: the score ignores the batch (e.g. parameter count)
    uses_seed: bool = True  # False: the score ignores the initialisation

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, options: Mapping[str, Any] | None = None
                 ) -> float:
        return float(self.fn(net, x, y, **resolve_options(self, options)))


PROXIES: Registry[Proxy] = Registry("proxy")


def register_proxy(name: str, description: str, uses_data: bool = True, uses_seed: bool = True,
                   **defaults: Any) -> Callable[[ProxyFn], ProxyFn]:
    """Decorator: register ``fn(net, x, y, **options)`` as proxy ``name`` with its option defaults."""

    def deco(fn: ProxyFn) -> ProxyFn:
        PROXIES.add(name, Proxy(name, fn, description, dict(defaults), uses_data, uses_seed))
        return fn

    return deco


def resolve_options(proxy: Proxy, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The proxy's defaults updated with ``options``; unknown keys and wrong types raise one-line errors.

    Values given as text (from the command line) are converted to the default's type.
    """
    out = dict(proxy.defaults)
    for key, value in (options or {}).items():
        if key not in out:
            known = ", ".join(out) or "none"
            raise ConfigError(f"proxy {proxy.name!r} has no option {key!r}; its options: {known}")
        out[key] = _coerce(value, out[key], f"{proxy.name}.{key}")
    return out


def _coerce(value: Any, default: Any, where: str) -> Any:
    kind = type(default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind is bool and text.lower() in ("true", "false", "1", "0", "yes", "no"):
                return text.lower() in ("true", "1", "yes")
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            pass
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"proxy option {where}: expected {kind.__name__}, got {value!r}")


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a network's output (evaluation networks return ``(logits, aux)``)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def weight_tensors(net: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The conv and linear weights (what the pruning-at-initialisation scores sum over), in definition order."""
    return [(f"{name}.weight" if name else "weight", m.weight) for name, m in net.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))]
