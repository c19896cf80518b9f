"""Scoring architectures with proxies: a fresh deterministic network per (architecture, proxy, seed), a fixed
batch of data, and an on-disk cache so repeats and resumed runs never recompute a score.

Scoring many architectures is embarrassingly parallel: :func:`score_many` hands the architectures still missing
from the cache to an executor (:mod:`nasforge.parallel`: local processes or Ray tasks) and writes every score to
the cache as soon as it arrives, so an interrupted run resumes where it stopped. A candidate whose scoring
raises comes back as a NaN score carrying its error (never cached, so a rerun tries it again); the rest finish.

The cache is one append-only JSON-lines file per folder (``scores-v1.jsonl``): ``--cache DIR`` or
``$NASFORGE_CACHE``, else ``~/.cache/nasforge/scores``. A key is the SHA-256 of everything a score depends on:
the architecture, the proxy and its options, the seed (unless the proxy ignores it), the data (a hash of the
batch's bytes, unless the proxy ignores data) and the scoring network's size. A record also keeps the seconds
the score took to compute, so costs stay honest when scores come from the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageDataset, augment_batch, normalize
from ..errors import ConfigError, DataError
from ..genotypes import Genotype
from ..genotypes.nb201_text import to_nb201_text
from ..models import build_network
from ..parallel import Executor, LocalExecutor, Outcome
from .base import PROXIES, init_network, resolve_options

__all__ = ["ProxyScore", "ScoreCache", "NetworkSpec", "score_architecture", "score_many", "proxy_batch",
           "data_id", "default_cache_dir", "CACHE_ENV_VAR"]

_log = logging.getLogger(__name__)
CACHE_ENV_VAR = "NASFORGE_CACHE"
_CACHE_FILE = "scores-v1.jsonl"


@dataclass(frozen=True)
class ProxyScore:
    value: float
    seconds: float  # time it took to build, initialise and score (when it was computed)
    cached: bool = False
    error: str | None = None  # "TypeName: message" when scoring raised (value is then NaN; never cached)


@dataclass(frozen=True)
class NetworkSpec:
    """The scoring network: its classes, input channels and size (``None``: the space's default — NB201 C=16,
    N=5; DARTS-space genotypes 8 cells, C=16, the DARTS search network's size)."""

    num_classes: int
    in_channels: int = 3
    channels: int | None = None
    cells: int | None = None

    def build(self, genotype: Genotype, seed: int) -> nn.Module:
        """The network of ``genotype``, initialised from ``seed`` alone (PyTorch's default distributions)."""
        nb201 = genotype.space == "nb201"
        net = build_network(genotype, num_classes=self.num_classes, in_channels=self.in_channels,
                            layers=self.cells or (5 if nb201 else genotype.num_cells_required or 8),
                            channels=self.channels or 16, auxiliary=False)
        return init_network(net, torch.Generator().manual_seed(seed))


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV_VAR, "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nasforge" / "scores"


class ScoreCache:
    """Scores on disk, keyed by everything they depend on (see the module docstring). ``None`` folder = off."""

    def __init__(self, directory: str | Path | None) -> None:
        self.path = None if directory is None else Path(directory).expanduser() / _CACHE_FILE
        self._records: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self._records[rec["key"]] = rec
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by a kill: the score is simply computed again

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> ProxyScore | None:
        rec = self._records.get(key)
        return None if rec is None else ProxyScore(float(rec["value"]), float(rec["seconds"]), cached=True)

    def put(self, key: str, score: ProxyScore, info: Mapping[str, Any]) -> None:
        rec = {"key": key, "value": score.value, "seconds": score.seconds, **info}
        self._records[key] = rec
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:  # one short write per line: appends stay whole
                f.write(json.dumps(rec) + "\n")
        except OSError as exc:
            raise DataError(f"cannot write the score cache {self.path}: {exc.strerror or exc}; pass another "
                            f"folder (--cache DIR or ${CACHE_ENV_VAR})") from None


def arch_key(genotype: Genotype) -> str:
    """The architecture part of a cache key: the NB201 string, or the genotype's exact JSON (not its
    isomorphism-invariant hash: isomorphic cells build differently ordered, differently initialised networks)."""
    if genotype.space == "nb201":
        return to_nb201_text(genotype)
    return json.dumps(genotype.to_dict(), sort_keys=True, separators=(",", ":"))


def data_id(x: torch.Tensor, y: torch.Tensor) -> str:
    """A short hash of a batch's exact contents."""
    h = hashlib.sha256()
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _key(genotype: Genotype, proxy: str, options: Mapping[str, Any], seed: int, data: str, x_shape: tuple,
         net: NetworkSpec) -> str:
    p = PROXIES.get(proxy)
    parts = {"arch": arch_key(genotype), "proxy": proxy, "options": dict(sorted(options.items())),
             "seed": seed if p.uses_seed else None, "data": data if p.uses_data else list(x_shape),
             "net": [net.num_classes, net.in_channels, net.channels, net.cells]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def score_architecture(genotype: Genotype, proxy: str, x: torch.Tensor, y: torch.Tensor, *, seed: int,
                       net: NetworkSpec, options: Mapping[str, Any] | None = None,
                       cache: ScoreCache | None = None, batch_id: str | None = None) -> ProxyScore:
    """Score one architecture with one proxy on the batch ``(x, y)`` (looked up in ``cache`` first)."""
    p = PROXIES.get(proxy)
    opts = resolve_options(p, options)
    key = _key(genotype, proxy, opts, seed, batch_id or data_id(x, y), tuple(x.shape[1:]), net)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    t0 = time.perf_counter()
    value = p(net.build(genotype, seed).to(x.device), x, y, opts)
    score = ProxyScore(value, time.perf_counter() - t0)
    if cache is not None:
        cache.put(key, score, {"proxy": proxy, "arch": arch_key(genotype)[:200], "seed": seed})
    return score


def _score_task(item: tuple, batch: tuple[torch.Tensor, torch.Tensor]) -> ProxyScore:
    """One (architecture, proxy) score where an executor runs it; the batch is the executor's shared object."""
    genotype_dict, proxy, seed, net, options, batch_id = item
    return score_architecture(Genotype.from_dict(genotype_dict), proxy, *batch, seed=seed, net=net, options=options,
                              batch_id=batch_id)


def _as_score(outcome: Outcome) -> ProxyScore:
    if outcome.ok:
        return outcome.value
    return ProxyScore(math.nan, outcome.seconds, error=outcome.error)


def score_many(genotypes: Sequence[Genotype], proxies: Sequence[str], x: torch.Tensor, y: torch.Tensor, *,
               seed: int, net: NetworkSpec, options: Mapping[str, Mapping[str, Any]] | None = None,
               cache: ScoreCache | None = None, workers: int = 1, executor: Executor | None = None,
               progress: bool = True) -> list[dict[str, ProxyScore]]:
    """Scores ``[architecture][proxy]`` of many architectures; cached ones are read, the rest computed by
    ``executor`` (default: ``workers`` local processes, 1 = in this process) and cached as they arrive.

    A score whose computation raised is NaN with its ``error`` set (logged, not cached); the others finish."""
    options = options or {}
    resolved = {p: resolve_options(PROXIES.get(p), options.get(p)) for p in proxies}  # bad input fails first
    batch = data_id(x, y)
    out: list[dict[str, ProxyScore]] = [{} for _ in genotypes]
    keys = {(i, p): _key(g, p, resolved[p], seed, batch, tuple(x.shape[1:]), net)
            for i, g in enumerate(genotypes) for p in proxies}
    todo: list[tuple[int, str]] = []
    for (i, p), key in keys.items():
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            out[i][p] = hit
        else:
            todo.append((i, p))
    items = [(genotypes[i].to_dict(), p, seed, net, options.get(p), batch) for i, p in todo]
    own = executor is None
    runner = LocalExecutor(workers) if executor is None else executor
    bar = tqdm(total=len(todo), desc="scoring", unit="score", disable=None if progress else True)
    try:
        for n, outcome in runner.as_completed(_score_task, items, shared=(x, y)):
            i, p = todo[n]
            out[i][p] = score = _as_score(outcome)
            if score.error is not None:
                _log.warning(f"{p} of {arch_key(genotypes[i])[:120]} failed: {score.error}")
            elif cache is not None:
                cache.put(keys[i, p], score, {"proxy": p, "arch": arch_key(genotypes[i])[:200], "seed": seed})
            bar.update(1)
    finally:
        bar.close()
        if own:
            runner.close()
    return [{p: row[p] for p in proxies} for row in out]  # the proxies' order, whatever order scores finished in


def proxy_batch(data: ImageDataset, n: int, seed: int, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training images drawn with ``seed`` (normalised; with the dataset's pad-crop/flip if ``augment``)."""
    if not 1 <= n <= len(data.y_train):
        raise ConfigError(f"cannot draw {n} scoring samples from {len(data.y_train)} training images")
    gen = torch.Generator(device=data.device).manual_seed(seed)
    idx = torch.randperm(len(data.y_train), generator=gen, device=data.device)[:n]
    x = data.x_train[idx]
    if augment:
        x = augment_batch(x, gen, data.pad, data.flip, 0)
    return normalize(x, data.mean, data.std), data.y_train[idx]
