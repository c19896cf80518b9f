"""KNAS: Green neural architecture search (Xu, Zhao, Lin, Gao, Sun, Yang, ICML 2021; ``Jingjing-NLP/KNAS`` @
5fbb0fe), on NAS-Bench-201 (METHODS.md §6).

Per repeat: sample ``n_samples`` architectures, score each at initialisation with the gradient kernel MGM
(:mod:`nasforge.proxies.mgm`; any registered proxy via ``search.proxy``), keep the ``top_k`` best, then pick
one by the NB201 table's 12-epoch validation accuracy or by brief real training (see
:mod:`nasforge.strategies.sample_select`). Paper protocol: 300 samples, k = 40, 9 repeats; KNAS reports
93.43 / 71.05 / 45.05 % test accuracy on CIFAR-10 / CIFAR-100 / ImageNet16-120 (METHODS-ADDENDUM.md §3).

All architectures are scored on one fixed batch (the first ``proxy_samples`` images of the run's first training
batch, augmented as the run's training data is) with networks initialised from the run's seed, as the KNAS
code scores every architecture once with seed 777 before its 9 repeats; scores are cached on disk
(:class:`~nasforge.proxies.ScoreCache`), so repeated candidates, re-runs and resumed runs never recompute them.
With ``workers > 1`` or ``executor: ray`` a repeat's candidates are scored up front by an executor
(:mod:`nasforge.parallel`: ``workers`` local processes, or Ray tasks), cached as they finish, and the steps read
them; workers run with ``threads`` torch threads each (0: cores / workers locally, one per task on Ray), so
scores may differ from in-process ones in the last bits. A candidate whose scoring fails there gets a NaN score
(it ranks last) and its error in the log; the others finish.

Not implemented: the code's CIFAR-100 / ImageNet16-120 selection by *training loss* at epoch 20 (our table
has no losses; selection there uses the 12-epoch validation accuracy instead), and its unseeded sampling.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import option
from ..errors import ConfigError
from ..genotypes import Genotype
from ..proxies import (PROXIES, NetworkSpec, ProxyScore, ScoreCache, default_cache_dir, resolve_options,
                       score_architecture, score_many)
from ..proxies.scoring import data_id
from ..spaces import NB201Arch
from .base import STRATEGIES, Batch, SearchContext
from .sample_select import SampleSelect, SampleSelectConfig

__all__ = ["Knas", "KnasConfig"]

_log = logging.getLogger(__name__)


@dataclass
class KnasConfig(SampleSelectConfig):
    """KNAS settings; defaults are the paper protocol on CIFAR-10 (N=300, k=40, 9 repeats, table selection)."""

    top_k: int = option(40, ge=1)
    proxy: str = "mgm"  # mgm (paper definition), mgm_official (the code's statistic) or any registered proxy
    proxy_options: list[str] = field(default_factory=list)  # e.g. [bn_mode=eval, drop_diagonal=true]
    proxy_samples: int = option(50, ge=1)  # images in the scoring batch (MGM uses its n_samples of them, 50 by default)
    cache_dir: str = ""  # score cache folder ("" = $NASFORGE_CACHE, else ~/.cache/nasforge/scores; "off" = none)
    # workers/executor/ray_address/threads (SampleSelectConfig): with workers > 1 or Ray, a repeat's candidates
    # are scored up front through the executor, as the shortlist's brief training is

    def validate(self) -> None:
        super().validate()
        if self.top_k > self.n_samples:
            raise ConfigError(f"top_k={self.top_k} is out of range: must be <= n_samples ({self.n_samples}), the "
                              f"pool it is drawn from (e.g. top_k=40 of n_samples=300)")


class Knas(SampleSelect):
    """Training-free search: MGM top-k, then selection (see the module docstring)."""

    name = "knas"
    Config = KnasConfig

    def __init__(self, config: KnasConfig, context: SearchContext) -> None:
        if min(config.top_k, config.proxy_samples, config.workers) < 1:
            raise ConfigError(f"search.top_k, search.proxy_samples and search.workers must be >= 1, got "
                              f"{config.top_k}, {config.proxy_samples} and {config.workers}")
        self.proxy_options = _parse_options(config.proxy, config.proxy_options)
        super().__init__(config, context)
        self.cache = ScoreCache(None if config.cache_dir == "off" else config.cache_dir or default_cache_dir())
        self.net_spec = NetworkSpec(context.num_classes, context.in_channels, config.channels, config.cells_per_stage)
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._batch_id = ""
        self._ahead: list[ProxyScore] = []  # the current repeat's scores, when an executor computed them up front

    @property
    def shortlist_size(self) -> int:
        return min(self.config.top_k, self.config.n_samples)

    def screen(self, position: int, genotype: Genotype, batch: Batch) -> dict[str, float]:
        if self._batch is None:  # the first training batch of the run is every architecture's scoring batch
            x, y = batch
            n = min(self.config.proxy_samples, len(y))
            if n < self.config.proxy_samples:
                _log.warning(f"the batch has {len(y)} images, fewer than search.proxy_samples="
                             f"{self.config.proxy_samples}; scoring with {n} (raise data.batch_size)")
            self._batch = (x[:n].detach().clone(), y[:n].detach().clone())
            self._batch_id = data_id(*self._batch)
        x, y = self._batch
        c = self.config
        if position == 0:
            self._ahead = self._score_ahead(x, y) if c.workers > 1 or c.executor == "ray" else []
        if self._ahead:
            score = self._ahead[position]
            if score.error is not None:
                _log.warning(f"candidate {position} (NB201 #{self._candidates[position]}) failed: {score.error}")
        else:
            score = score_architecture(genotype, c.proxy, x, y, seed=self.base_seed, net=self.net_spec,
                                       options=self.proxy_options, cache=self.cache, batch_id=self._batch_id)
        self._scores.append(score.value)
        self._score_s += score.seconds
        self._hits += int(score.cached)
        return {"score": score.value} if math.isfinite(score.value) else {}

    def _score_ahead(self, x: torch.Tensor, y: torch.Tensor) -> list[ProxyScore]:
        """The whole repeat's scores through the configured executor (each cached as it finishes)."""
        c = self.config
        with c.make_executor() as executor:
            scores = score_many([NB201Arch.from_index(i).genotype() for i in self._candidates], [c.proxy], x, y,
                                seed=self.base_seed, net=self.net_spec, options={c.proxy: self.proxy_options},
                                cache=self.cache, executor=executor, progress=False)
        return [s[c.proxy] for s in scores]

    def shortlist(self) -> list[int]:
        """The ``top_k`` best-scored positions, best first (ties: earlier draw first); NaN scores rank last."""
        scores = np.nan_to_num(np.asarray(self._scores, dtype=np.float64), nan=-np.inf)
        order = np.argsort(-scores, kind="stable")
        return [int(i) for i in order[: self.config.top_k]]

    def results(self) -> dict[str, Any]:
        out = super().results()
        if out:
            out.update(proxy=self.config.proxy, proxy_options=self.proxy_options, top_k=self.config.top_k,
                       proxy_batch=len(self._batch[1]) if self._batch is not None else 0)
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"batch": self._batch}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._batch = state.get("batch")
        self._batch_id = data_id(*self._batch) if self._batch is not None else ""


def _parse_options(proxy: str, items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` into the proxy's typed options (unknown keys and bad values raise)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ConfigError(f"search.proxy_options entry {item!r}: expected key=value, e.g. bn_mode=eval")
        options[key.strip()] = value.strip()
    return resolve_options(PROXIES.get(proxy), options)


STRATEGIES.add("knas", Knas)
