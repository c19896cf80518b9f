"""DARTS: Differentiable Architecture Search (Liu, Simonyan, Yang, ICLR 2019; ``quark0/darts`` f276dd3).

Bilevel search on a softmax-relaxed supernet: per iteration an architecture step on a validation batch
(Adam; first order, or second order with the finite-difference Hessian-vector product of the paper), then a
weight step on a training batch (SGD with momentum, cosine learning rate, gradient norm clipped to 5).
Derivation: top-2 incoming edges per node, strongest non-`none` op (METHODS.md §1.4).

Not implemented: the paper's cell selection protocol (several seeds, brief retraining of each) is a workflow
of ``nasforge search`` + ``nasforge train`` runs, not part of one search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import option
from ..errors import ConfigError
from ..genotypes import Genotype
from ..ops import DARTS_OPS
from ..spaces import DartsSpace
from ..spaces.nb201 import NB201Space
from ..supernets import NB201SuperNet, SuperNet
from .base import STRATEGIES, Batch, SearchContext, Strategy
from ..parallel.distributed import average_gradients, average_param_grads
from .hypergrad import first_order_arch_grads, frozen, second_order_arch_grads

__all__ = ["Darts", "DartsConfig", "BilevelConfig", "cosine_lr"]


@dataclass
class BilevelConfig:
    """What every DARTS-style bilevel search shares: the cell space, the two optimizers, memory options.
    Defaults are DARTS's CIFAR-10 settings (METHODS.md §1.5)."""

    # "darts" (cells of 4 nodes, 8 ops) or "nb201" (NAS-Bench-201; judged by the table)
    space: str = option("darts", choices=("darts", "nb201"))
    channels: int = option(16, ge=1)  # initial channels C
    nodes: int = option(4, ge=1)  # intermediate nodes per cell (DARTS space)
    ops: list[str] = field(default_factory=lambda: list(DARTS_OPS))  # candidate ops (DARTS space)
    # "first" or "second" (unrolled, finite-difference Hessian-vector product)
    order: str = option("first", choices=("first", "second"))
    weighting: str = "softmax"
    w_lr: float = option(0.025, gt=0, hint="0.025")
    w_lr_min: float = option(0.001, ge=0)
    w_momentum: float = option(0.9, ge=0, lt=1)
    w_weight_decay: float = option(3e-4, ge=0)
    w_grad_clip: float = option(5.0, ge=0)
    arch_lr: float = option(3e-4, gt=0, hint="3e-4")
    arch_beta1: float = option(0.5, ge=0, lt=1)
    arch_beta2: float = option(0.999, ge=0, lt=1)
    arch_weight_decay: float = option(1e-3, ge=0)
    arch_grad_clip: float = option(0.0, ge=0)  # 0 = off, as in DARTS (P-DARTS clips to 5)
    warmup_epochs: int = option(0, ge=0)  # weight-only epochs before architecture updates start
    checkpoint_edges: bool = True  # recompute edge activations in backward: ~2x less peak memory, ~1/3 more time
    # speed (docs/performance.md); each gives the same results within float tolerance (tests/test_fastpath.py)
    fused: bool = option(True)  # all edges leaving a node computed together: far fewer, larger kernels
    # fused + checkpoint_edges: edges of one node recomputed together (more = faster, higher transient peak)
    recompute_chunk: int = option(4, ge=1)
    channels_last: bool = option(False)  # NHWC activations: faster BN and pools on CPU, tensor cores on GPU
    amp: bool = option(False)  # bf16 autocast of the supernet forward (a GPU option; looser agreement)
    compile: bool = option(False)  # torch.compile each search cell (GPU option; slow to compile on CPU)


@dataclass
class DartsConfig(BilevelConfig):
    """DARTS search hyper-parameters; defaults are the paper's CIFAR-10 settings (METHODS.md §1.5)."""

    epochs: int = option(50, ge=1, hint="50")
    layers: int = option(8, ge=1)  # cells in the supernet (nb201: cells per stage, N)


def cosine_lr(base: float, minimum: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base`` (epoch 0) towards ``minimum``, evaluated per epoch as DARTS does."""
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


class Darts(Strategy):
    """DARTS on the DARTS cell space; subclasses (P-DARTS) reuse the steps and change the schedule."""

    name = "darts"
    Config = DartsConfig
    supports_nb201 = True

    def __init__(self, config: DartsConfig, context: SearchContext) -> None:
        super().__init__(config, context)
        if config.order not in ("first", "second"):
            raise ConfigError(f"search.order must be 'first' or 'second', got {config.order!r}")
        if config.space == "darts":
            self.space: Any = DartsSpace(ops=tuple(config.ops), nodes=config.nodes)
        elif config.space == "nb201" and type(self).supports_nb201:
            self.space = NB201Space()
        else:
            raise ConfigError(f"search.space must be 'darts'{' or nb201' if self.supports_nb201 else ''} for "
                              f"{self.name}, got {config.space!r}")
        self.epoch = 0
        self.use_supernet(self.build_supernet(self.initial_layers()))

    def initial_layers(self) -> int:
        return self.config.layers

    def build_supernet(self, layers: int, channels: int | None = None,
                       alive: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A fresh supernet of ``layers`` cells holding only the ``alive`` ops, with fresh alphas."""
        c, ctx = self.config, self.context
        if isinstance(self.space, NB201Space):
            return NB201SuperNet(num_classes=ctx.num_classes, channels=channels or c.channels, cells_per_stage=layers,
                                 in_channels=ctx.in_channels, weighting=c.weighting, generator=ctx.generator)
        net = SuperNet(self.space, channels or c.channels, ctx.num_classes, layers, in_channels=ctx.in_channels,
                       weighting=c.weighting, alive=alive, generator=ctx.generator)
        return net.configure(fused=c.fused, checkpoint_edges=c.checkpoint_edges, amp=c.amp,
                             channels_last=c.channels_last, compile=c.compile, recompute_chunk=c.recompute_chunk)

    def use_supernet(self, net: nn.Module) -> None:
        """Search ``net`` from now on, with fresh optimizers (P-DARTS starts every stage this way)."""
        c = self.config
        self.net = net.to(self.context.device)
        self.w_optimizer = torch.optim.SGD(self.net.weight_parameters(), lr=c.w_lr, momentum=c.w_momentum,
                                           weight_decay=c.w_weight_decay)
        self.a_optimizer = torch.optim.Adam(self.net.arch_parameters(), lr=c.arch_lr,
                                            betas=(c.arch_beta1, c.arch_beta2), weight_decay=c.arch_weight_decay)

    # -- contract ----------------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def model(self) -> nn.Module:
        return self.net

    def schedule_position(self) -> tuple[int, int]:
        """(epoch within the current schedule, its length): the whole search for DARTS, a stage for P-DARTS."""
        return self.epoch, self.config.epochs

    @property
    def lr(self) -> float:
        return cosine_lr(self.config.w_lr, self.config.w_lr_min, *self.schedule_position())

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for group in self.w_optimizer.param_groups:
            group["lr"] = self.lr

    def searching_arch(self) -> bool:
        return self.schedule_position()[0] >= self.config.warmup_epochs

    def step(self, train_batch: Batch, val_batch: Batch | None) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if val_batch is not None and self.searching_arch():
            metrics["arch_loss"] = self.arch_step(train_batch, val_batch)  # phase 1: architecture
        metrics.update(self.weight_step(train_batch))  # phase 2: weights
        return metrics

    def arch_step(self, train_batch: Batch, val_batch: Batch) -> float:
        arch = self.net.arch_parameters()
        val_loss = lambda: self.arch_loss(val_batch)  # noqa: E731
        n_val, n_train = len(val_batch[1]), len(train_batch[1])
        if self.config.order == "first":
            loss, grads = first_order_arch_grads(val_loss, arch, self.net.weight_parameters())
            grads = average_gradients(grads, n_val)
        else:
            weights = self.net.weight_parameters()
            momenta = [self.w_optimizer.state.get(w, {}).get("momentum_buffer") for w in weights]
            loss, grads = second_order_arch_grads(
                self.net, lambda: F.cross_entropy(self.net(train_batch[0]), train_batch[1]), val_loss, weights,
                arch, xi=self.lr, momentum=self.config.w_momentum, weight_decay=self.config.w_weight_decay,
                momentum_buffers=momenta, reduce_train=lambda g: average_gradients(g, n_train),
                reduce_val=lambda g: average_gradients(g, n_val))
        for p, g in zip(arch, grads):
            p.grad = g
        if self.config.arch_grad_clip > 0:
            nn.utils.clip_grad_norm_(arch, self.config.arch_grad_clip)
        self.a_optimizer.step()
        self.a_optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def arch_loss(self, batch: Batch) -> torch.Tensor:
        """The architecture objective on a validation batch; methods with a regulariser of the architecture
        parameters (EnTranNAS's DST sparsity) add it here, so first and second order both see it."""
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def weight_step(self, batch: Batch) -> dict[str, float]:
        x, y = batch
        with frozen(self.net.arch_parameters()):  # no architecture gradients in the weight step
            logits = self.net(x)
            loss = F.cross_entropy(logits, y)
            self.w_optimizer.zero_grad(set_to_none=True)
            loss.backward()
        average_param_grads(self.net.weight_parameters(), len(y))  # data-parallel: the global batch's gradient
        if self.config.w_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.config.w_grad_clip)
        self.w_optimizer.step()
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        return {"loss": float(loss.detach()), "acc": 100.0 * float(acc)}

    def export(self) -> Genotype:
        return self.space.derive({k: w.detach() for k, w in self.net.op_weights().items()},
                                 {k: self.net.alive(k) for k in self.net.arch_keys()})

    def arch_weights(self) -> dict[str, torch.Tensor]:
        return {k: w.detach().cpu() for k, w in self.net.op_weights().items()}

    def op_names(self) -> list[str]:
        return list(self.space.ops)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
                "a_optimizer": self.a_optimizer.state_dict(), "epoch": self.epoch,
                "generator": self.context.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.epoch = state["epoch"]
        self.context.generator.set_state(state["generator"])  # later supernets (P-DARTS stages) draw from it


STRATEGIES.add("darts", Darts)
