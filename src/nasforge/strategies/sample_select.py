"""Sample, shortlist, select: the loop shared by training-free KNAS and random search on NAS-Bench-201.

One *epoch* of the search loop is one *repeat*: draw ``n_samples`` architectures (seed = run seed + repeat),
screen them one per step (KNAS scores each with a proxy; random search looks at none), shortlist (KNAS: the
``top_k`` best scores; random search: all), then select one:

* ``selection: benchmark`` — by the NAS-Bench-201 table's 12-epoch validation accuracy of ``benchmark_dataset``
  (what "train each briefly and validate" costs nothing to look up; the KNAS code does the same);
* ``selection: train`` — by real training: each shortlisted network gets ``train_steps`` SGD steps on the weight
  split (NB201 recipe: Nesterov momentum 0.9, weight decay 5e-4, cosine learning rate) and is validated on
  ``eval_batches`` batches of the architecture split (:mod:`nasforge.training.brief`). The shortlist is trained
  at the end of the repeat through the configured executor (``workers`` local processes or Ray tasks); each
  candidate draws its batches from its own seeds, so the choice does not depend on the number of workers.

After the repeats the chosen architectures' 200-epoch test accuracies (mean ± std) and the search cost go to
``result.json`` and ``report.md``. A method without a supernet: ``model`` is the network in training, if any.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..benchmarks import COLUMN_ALIASES, SELECTION_COLUMNS, NB201Table, load_nb201
from ..config import option
from ..errors import ConfigError, DataError
from ..genotypes import Genotype
from ..parallel.options import ExecutorOptions
from ..spaces import NB201Arch, NB201Space
from ..spaces.nb201 import NB201_SIZE
from ..training.brief import BriefTraining, train_briefly
from .base import Batch, SearchContext, Strategy

__all__ = ["SampleSelectConfig", "SampleSelect", "RepeatRecord"]

_log = logging.getLogger(__name__)
_REPORTED = ("cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid")  # COLUMN_ALIASES keys
_AUTO_DATASET = {10: "cifar10", 100: "cifar100", 120: "imagenet16"}


@dataclass
class SampleSelectConfig(ExecutorOptions):
    """Settings shared by the sample-and-select methods (defaults: the KNAS NB201 protocol on CIFAR-10); the
    executor settings (``workers``, ``executor``, ...) train the shortlist when ``selection=train``."""

    repeats: int = option(9, ge=1)
    n_samples: int = option(300, ge=1)  # architectures drawn per repeat
    replace: bool = False  # draw with replacement (the KNAS code does; duplicates then compete twice)
    # [first, last] official NB201 indices drawn from, inclusive (the KNAS code's README scores 0..5000)
    index_range: list[int] = option(factory=lambda: [0, NB201_SIZE - 1], ge=0, le=NB201_SIZE - 1)
    # benchmark (NB201 12-epoch validation accuracy) or train (brief real training)
    selection: str = option("benchmark", choices=("benchmark", "train"))
    # cifar10, cifar100, imagenet16 or auto (by the run's number of classes)
    benchmark_dataset: str = option("auto", choices=("auto", "cifar10", "cifar100", "imagenet16"))
    table: str = ""  # NB201 table file ("" = $NASFORGE_NB201, else <data root>/nas-bench-201/nb201_table.csv)
    channels: int = option(16, ge=1)  # C of the NB201 networks scored and trained
    cells_per_stage: int = option(5, ge=1)  # N
    train_steps: int = option(200, ge=1)  # selection=train: SGD steps per shortlisted architecture
    train_lr: float = option(0.1, gt=0)
    train_momentum: float = option(0.9, ge=0, lt=1)
    train_weight_decay: float = option(5e-4, ge=0)
    # selection=train: validation batches per candidate after its training
    eval_batches: int = option(10, ge=1)

    @property
    def epochs(self) -> int:
        """Search-loop epochs: one per repeat."""
        return self.repeats

    def validate(self) -> None:
        self.validate_executor()
        if len(self.index_range) != 2 or self.index_range[0] > self.index_range[1]:
            raise ConfigError(f"index_range={self.index_range} is out of range: must be [first, last] with first <= "
                              f"last (e.g. [0, 5000])")
        pool = self.index_range[1] - self.index_range[0] + 1
        if not self.replace and self.n_samples > pool:
            raise ConfigError(f"n_samples={self.n_samples} is out of range: must be <= the {pool} architectures of "
                              f"index_range {self.index_range} unless replace=true")
        if self.eval_batches > self.train_steps:
            raise ConfigError(f"eval_batches={self.eval_batches} is out of range: must be <= train_steps "
                              f"({self.train_steps})")


@dataclass
class RepeatRecord:
    """What one repeat did and chose."""

    repeat: int
    seed: int
    candidates: list[int]  # official NB201 indices, in draw order
    scores: list[float]  # screening scores (empty for random search)
    shortlist: list[int]  # positions in ``candidates``
    selection_values: list[float]  # per shortlisted candidate: table value or validation accuracy
    chosen: int  # official index
    chosen_arch: str
    benchmark: dict[str, float] = field(default_factory=dict)  # table numbers of the chosen one (if a table)
    screening_s: float = 0.0  # compute time of the scores (original compute time when read from the cache)
    selection_s: float = 0.0  # training time (0 for table lookups)
    wall_s: float = 0.0
    cache_hits: int = 0


class SampleSelect(Strategy):
    """Base of KNAS and random search; subclasses implement :meth:`screen` and :meth:`shortlist`."""

    Config: ClassVar[type] = SampleSelectConfig
    has_supernet = False
    data_parallel = False  # independent candidates and supernets: parallel through an executor, not torchrun

    def __init__(self, config: SampleSelectConfig, context: SearchContext) -> None:
        super().__init__(config, context)
        self._check_config(config)
        #: the table's dataset; "auto" follows the data searched on (CIFAR-100: 100 classes, ImageNet16-120: 120)
        self.benchmark_dataset = (_AUTO_DATASET.get(context.num_classes, "cifar10")
                                  if config.benchmark_dataset == "auto" else config.benchmark_dataset)
        self.space = NB201Space()
        # the run's seed: repeats draw with seed + repeat; scores use the seed itself (shared across repeats)
        self.base_seed = int(context.generator.initial_seed())
        self.table: NB201Table | None = None
        if config.selection == "benchmark":
            self.table = load_nb201(config.table or None)
        else:
            try:  # optional in train mode: only for reporting the chosen architectures' benchmark numbers
                self.table = load_nb201(config.table or None)
            except DataError as exc:
                _log.info(f"no NB201 table ({exc}); results will not include benchmark accuracies")
        self.records: list[RepeatRecord] = []
        self._begin(0)

    @staticmethod
    def _check_config(c: SampleSelectConfig) -> None:
        """Ranges and cross-field rules are checked with the config (:meth:`SampleSelectConfig.validate`); this
        stays for configs built in code without :func:`~nasforge.config.build_config`."""
        c.validate()

    # -- hooks for subclasses --------------------------------------------------------------------------------
    def screen(self, position: int, genotype: Genotype, batch: Batch) -> dict[str, float]:
        """Screen candidate ``position`` of the current repeat; return metrics worth logging."""
        return {}

    def shortlist(self) -> list[int]:
        """Positions (in the current repeat's candidates) that go on to selection, best first."""
        return list(range(len(self._candidates)))

    # -- contract ----------------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return self.config.repeats

    @property
    def model(self) -> nn.Module:
        return nn.Module()  # no network lives in the search process (candidates train in executor workers)

    needs_val_batch = False  # selection by training draws its own batches (training.brief)

    @property
    def shortlist_size(self) -> int:
        return self.config.n_samples

    @property
    def steps_per_epoch(self) -> int:
        return self.config.n_samples

    def begin_epoch(self, epoch: int) -> None:
        self._begin(epoch)

    def _begin(self, repeat: int) -> None:
        gen = torch.Generator().manual_seed(self.base_seed + repeat)
        self._repeat = repeat
        first, last = self.config.index_range
        self._candidates = self.space.sample_indices(self.config.n_samples, gen, self.config.replace, first, last)
        self._pos = 0
        self._scores: list[float] = []
        self._score_s = 0.0
        self._hits = 0
        self._short: list[int] | None = None
        self._values: list[float] = []
        self._t0 = time.perf_counter()
        self._select_s = 0.0

    def step(self, train_batch: Batch, val_batch: Batch | None) -> dict[str, float]:
        pos, self._pos = self._pos, self._pos + 1
        if pos >= len(self._candidates):
            return {"loss": 0.0}
        genotype = NB201Arch.from_index(self._candidates[pos]).genotype()  # screening, one candidate per step
        return {"loss": 0.0, **self.screen(pos, genotype, train_batch)}

    def end_epoch(self, epoch: int) -> list[str]:
        if self._short is None:
            self._short = self.shortlist()
        short = self._short
        if not short:
            return ["no candidate was screened in this repeat; nothing chosen"]
        if self.config.selection == "benchmark":
            assert self.table is not None
            column = SELECTION_COLUMNS[self.benchmark_dataset]
            self._values = [float(self.table.column(column)[self._candidates[p]]) for p in short]
        else:
            self._values = self._train_shortlist(short)
        values = self._values[:len(short)]
        ranked = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)
        best = short[int(np.argmax(ranked))] if values else short[0]
        chosen = self._candidates[best]
        rec = RepeatRecord(
            repeat=epoch, seed=self.base_seed + epoch, candidates=list(self._candidates), scores=list(self._scores),
            shortlist=list(short), selection_values=values, chosen=chosen,
            chosen_arch=NB201Arch.from_index(chosen).string, benchmark=self._benchmark(chosen),
            screening_s=self._score_s, selection_s=self._select_s, wall_s=time.perf_counter() - self._t0,
            cache_hits=self._hits)
        self.records = [r for r in self.records if r.repeat != epoch] + [rec]
        shown = ", ".join(f"{k} {v:.2f}%" for k, v in rec.benchmark.items() if k.endswith("_test"))
        return [f"repeat {epoch + 1}: chose NB201 #{chosen} {rec.chosen_arch}" + (f" ({shown})" if shown else "")]

    def _benchmark(self, index: int) -> dict[str, float]:
        if self.table is None:
            return {}
        row = self.table.query(index)
        return {k: row[COLUMN_ALIASES[k]] for k in _REPORTED}

    # -- selection by brief training ------------------------------------------------------------------------
    def _train_shortlist(self, short: list[int]) -> list[float]:
        """Validation accuracy of every shortlisted candidate after brief training, through the executor; a
        candidate that fails is logged and ranks last (NaN)."""
        c, ctx = self.config, self.context
        if ctx.data is None:
            raise ConfigError("selection=train needs the run's data recipe (SearchContext.data); run it through "
                              "nasforge.search or the CLI")
        jobs = []
        for p in short:
            index = self._candidates[p]
            jobs.append(BriefTraining(
                NB201Arch.from_index(index).genotype(), index, ctx.num_classes, ctx.in_channels, c.channels,
                c.cells_per_stage, c.train_steps, c.train_lr, c.train_momentum, c.train_weight_decay, c.eval_batches,
                self.base_seed, self.base_seed * len(self.space) + index))  # init seed: per (seed, architecture)
        t0 = time.perf_counter()
        with c.make_executor() as executor:
            outcomes = executor.map(train_briefly, jobs, shared=ctx.data)
        self._select_s = time.perf_counter() - t0
        for p, o in zip(short, outcomes):
            if not o.ok:
                _log.warning(f"brief training of NB201 #{self._candidates[p]} failed: {o.error}")
        return [float(o.value) if o.ok else float("nan") for o in outcomes]

    # -- results -----------------------------------------------------------------------------------------
    def export(self) -> Genotype:
        if self.records:
            return NB201Arch.from_index(self.records[-1].chosen).genotype()
        if self._scores:  # the best screened so far in this repeat
            return NB201Arch.from_index(self._candidates[int(np.argmax(self._scores))]).genotype()
        return NB201Arch.from_index(self._candidates[0]).genotype()

    def extra_exports(self) -> dict[str, Genotype]:
        return {f"repeat{r.repeat}": NB201Arch.from_index(r.chosen).genotype() for r in self.records}

    def op_names(self) -> list[str]:
        return list(self.space.ops)

    def results(self) -> dict[str, Any]:
        if not self.records:
            return {}
        c = self.config
        out: dict[str, Any] = {
            "method": self.name, "space": "nb201", "selection": c.selection,
            "selection_column": SELECTION_COLUMNS[self.benchmark_dataset] if c.selection == "benchmark"
            else "validation accuracy after brief training",
            "benchmark_dataset": self.benchmark_dataset, "n_samples": c.n_samples,
            "shortlist_size": self.shortlist_size, "repeats": len(self.records),
            "seeds": [r.seed for r in self.records],
            "std": "population standard deviation over repeats (ddof=0, as the NAS-Bench-201 tables)",
        }
        for key in _REPORTED:
            vals = [r.benchmark[key] for r in self.records if key in r.benchmark]
            if vals:
                out[f"{key}_mean"], out[f"{key}_std"] = float(np.mean(vals)), float(np.std(vals))
        costs = [r.screening_s + r.selection_s for r in self.records]
        per_arch = [r.screening_s / len(r.candidates) for r in self.records if r.scores]
        out.update(search_cost_s_mean=float(np.mean(costs)), search_cost_s_std=float(np.std(costs)),
                   search_cost_s_total=float(np.sum(costs)), wall_s_total=float(sum(r.wall_s for r in self.records)),
                   cache_hits=int(sum(r.cache_hits for r in self.records)),
                   search_cost_note="compute seconds of screening and selection; table lookups cost 0 s (the 12-epoch "
                                    "training they stand for is not counted)")
        if per_arch:
            out["screening_s_per_arch_mean"] = float(np.mean(per_arch))
        out["per_repeat"] = [{k: v for k, v in asdict(r).items() if k not in ("candidates", "scores")}
                             for r in self.records]
        return out

    def report_sections(self, run_dir: Any) -> list[str]:
        res = self.results()
        if not res:
            return []
        lines = [f"## {self.name} on NAS-Bench-201\n",
                 f"{res['repeats']} repeats of {res['n_samples']} sampled architectures, shortlist "
                 f"{res['shortlist_size']}, selection by {res['selection_column']}.\n"]
        summary = [f"{k}: **{res[k + '_mean']:.2f} ± {res[k + '_std']:.2f}**" for k in _REPORTED
                   if k + "_mean" in res]
        if summary:
            lines.append("Chosen architectures' 200-epoch accuracy (mean ± std over repeats): " + "; ".join(summary)
                         + ".\n")
        lines.append(f"Search cost: {res['search_cost_s_mean']:.1f} ± {res['search_cost_s_std']:.1f} s per repeat "
                     f"({res['search_cost_s_total']:.1f} s in all; {res['search_cost_note']}).\n")
        lines += ["| repeat | seed | chosen | architecture | C10 test | C100 test | IN16 test | cost (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in self.records:
            b = r.benchmark
            cells = [f"{b[k]:.2f}" if k in b else "" for k in _REPORTED[:3]]
            lines.append(f"| {r.repeat + 1} | {r.seed} | {r.chosen} | `{r.chosen_arch}` | {' | '.join(cells)} | "
                         f"{r.screening_s + r.selection_s:.1f} |")
        return ["\n".join(lines) + "\n"]

    # -- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "base_seed": self.base_seed, "records": [asdict(r) for r in self.records],
                **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_seed = int(state["base_seed"])
        self.records = [RepeatRecord(**r) for r in state["records"]]
        self.load_extra_state(state)
        self._begin(len(self.records))

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
