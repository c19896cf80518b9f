"""The contract every search method implements, so that one search loop drives them all.

The loop calls, per epoch: ``begin_epoch(epoch)``, then per iteration ``step(train_batch, val_batch)`` (the
architecture step and the weight step, visibly separate inside), then ``end_epoch(epoch)``; at the end
``export()``. ``state_dict()``/``load_state_dict()`` carry everything a resumed run needs (model, arch params,
optimizers, schedulers, the strategy's own state). Each strategy owns a config dataclass (``Config``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..genotypes import Genotype
from ..registry import Registry

__all__ = ["Strategy", "STRATEGIES", "Batch", "SearchContext"]

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SearchContext:
    """What a strategy learns about the run when it is set up."""

    num_classes: int
    in_channels: int
    image_size: int
    steps_per_epoch: int
    device: torch.device
    generator: torch.Generator  # CPU generator for the strategy's own random draws (alpha init, sampling)
    #: where the run's images come from (a picklable ``training.brief.DataRecipe``), for candidates trained in
    #: other processes; None when a strategy is built outside a run
    data: Any = None


class Strategy(ABC):
    """A search method. Subclasses set ``name`` and ``Config`` and implement the abstract methods."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: False for methods (one-level, training-free) that need no validation batch per step.
    needs_val_batch: ClassVar[bool] = True
    #: False for methods without a supernet whose accuracy the loop could measure (training-free search).
    has_supernet: ClassVar[bool] = True
    #: True when torchrun can split the method's steps across processes (one supernet, data-parallel: every
    #: gradient goes through :func:`nasforge.parallel.distributed.average_gradients` before its optimizer step).
    data_parallel: ClassVar[bool] = True

    def __init__(self, config: Any, context: SearchContext) -> None:
        self.config = config
        self.context = context

    @property
    @abstractmethod
    def epochs(self) -> int:
        """Total number of epochs the loop must run."""

    @property
    @abstractmethod
    def model(self) -> nn.Module:
        """The network being searched (for evaluation by the loop)."""

    @property
    def steps_per_epoch(self) -> int | None:
        """Iterations per epoch; None = one pass over the weight split (the default for supernet methods)."""
        return None

    def begin_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Called before the first step of each epoch (learning-rate or dropout schedules)."""

    @abstractmethod
    def step(self, train_batch: Batch, val_batch: Batch | None) -> dict[str, float]:
        """One search iteration; returns scalar metrics (at least ``loss``)."""

    def end_epoch(self, epoch: int) -> list[str]:
        """Called after the last step of each epoch; returns events worth logging in words."""
        return []

    def epoch_metrics(self) -> dict[str, Any]:
        """Method-specific numbers for this epoch's metrics row (e.g. ops left, the constraint weight)."""
        return {}

    def on_epoch_row(self, row: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Sees the finished metrics row of the epoch (with the held-out accuracy when measured)."""

    def config_warnings(self) -> list[str]:
        """Legal but suspicious settings of this method, one sentence each (shown before the run starts)."""
        return []

    def should_stop(self) -> bool:
        """True to end the search before ``epochs`` (e.g. a resource target reached)."""
        return False

    @abstractmethod
    def export(self) -> Genotype:
        """The architecture derived now."""

    def extra_exports(self) -> dict[str, Genotype]:
        """Other architectures worth saving (``genotypes/<name>.json``), e.g. per skip cap."""
        return {}

    def results(self) -> dict[str, Any]:
        """Method-specific results written to the run's ``result.json`` (empty: no file)."""
        return {}

    def report_sections(self, run_dir: Any) -> list[str]:
        """Extra markdown for ``report.md`` (figures may be written into ``run_dir``)."""
        return []

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Per cell key, the op weights ``[edges, ops]`` for reports (empty if the method has none)."""
        return {}

    def op_names(self) -> list[str]:
        return []

    def replicated_modules(self) -> list[nn.Module]:
        """The networks a torchrun search trains data-parallel: each is copied from rank 0 when it first appears
        and its BNs synchronised (the loop does both). The supernet by default; NAO-V2 its one or two supernets."""
        return [self.model] if self.has_supernet else []

    def inactive_parameters(self) -> set[str]:
        """Names of model parameters the current architecture does not compute, so they rightly get no gradient
        in a step (EnTranNAS Transit-cell ops outside the derived cell). Empty for methods that use them all."""
        return set()

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


STRATEGIES: Registry[type[Strategy]] = Registry("search method")
