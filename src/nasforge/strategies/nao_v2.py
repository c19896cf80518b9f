"""NAO-V2: Neural Architecture Optimization with balanced, independent one-shot training (Luo, Qin, Chen, arXiv
1909.12432 / 1909.10815; METHODS.md §5, METHODS-ADDENDUM.md §4 and §7).

On the one search loop, an *iteration* is ``epochs_per_iteration`` loop epochs:

1. the first pool is ``seed_archs`` random architectures; every step trains the single-path supernet on one
   architecture drawn from the current pool, with probability ∝ its stand-alone model size (``balanced``) or
   uniformly; each iteration starts a fresh supernet and SGD optimiser (``independent``) or continues the old
   one (NAO-V1 style; ``restart_lr`` restarts the cosine schedule as the released code does);
2. at the end of the iteration every architecture evaluated so far is re-scored with the supernet on its own
   random batch of ``eval_batch_size`` validation images (drawn from the ``eval_pool`` validation images the
   iteration's last epoch saw);
3. except after the last iteration, the controller (:mod:`nasforge.controllers.nao`) is trained on all
   (architecture, accuracy) pairs and generates up to ``new_archs`` new architectures from the ``generate_top``
   best: the next pool.

Then the ``top_k`` best are re-ranked in one more loop epoch (without steps): each is trained from scratch for
``rerank_epochs`` epochs with the trainer's step and validated on the same ``eval_pool`` images
(:func:`nasforge.training.brief.train_finalist`), all through the configured executor (``workers`` local
processes or Ray tasks) and cached as each finishes, so an interrupted re-ranking redoes only the unfinished
finalists; or, on NAS-Bench-201 with ``rerank=benchmark``, looked up in the table (12-epoch validation
accuracy). With ``compare`` a second supernet with both flags flipped (V2 ↔ V1-style) trains on the same pools
and batches, so one report shows both rankings' Kendall τ against the NB201 table.

Under torchrun the supernets train data-parallel (gradients averaged, BN statistics over all ranks); the
validation images of the scoring epoch are gathered from every rank; each rank scores its share of the
architectures and of the finalists, and everyone receives all values, so every rank takes the same decisions
(rank 0's controller and pool are broadcast besides).

The strategy has no supernet the loop could evaluate (a forward needs an architecture), like KNAS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..benchmarks import SELECTION_COLUMNS, TEST_COLUMNS, NB201Table, load_nb201
from ..config import TrainConfig, check_ranges, to_dict
from ..controllers import NAOController, generate, nao_token_spec, plain_token_spec, swap_augment, train_controller
from ..errors import ConfigError, DataError
from ..genotypes import Genotype
from ..genotypes.nb201_text import NB201_OPS
from ..models.nao import nao_param_count
from ..models.nb201 import NB201Network
from ..ops.norm import local_statistics
from ..parallel import distributed as ddp
from ..proxies import ProxyScore, ScoreCache, default_cache_dir
from ..proxies.stats import kendall_tau
from ..spaces.nao import NAOSpace
from ..spaces.nb201 import NB201Arch, NB201Space
from ..supernets.nao import NAOSuperNet, WSFactorizedReduce
from ..supernets.nb201_path import NB201PathSuperNet
from ..training.brief import DataRecipe, FinalistTraining, train_finalist
from .base import STRATEGIES, Batch, SearchContext, Strategy
from .darts import cosine_lr
from .nao_config import NaoV2Config

__all__ = ["NaoV2", "NaoV2Config"]

_log = logging.getLogger(__name__)
Seq = tuple[int, ...]
_AUTO_DATASET = {10: "cifar10", 100: "cifar100", 120: "imagenet16"}


@dataclass
class _Trainee:
    """One supernet under training: the network, its optimiser and how it is trained."""

    net: nn.Module
    optimizer: torch.optim.SGD
    balanced: bool
    independent: bool


class NaoV2(Strategy):
    """NAO-V2 search (see the module docstring)."""

    name = "nao-v2"
    Config = NaoV2Config
    has_supernet = False

    def __init__(self, config: NaoV2Config, context: SearchContext) -> None:
        check_ranges(config, "search.")
        super().__init__(config, context)
        c = config
        self.base_seed = int(context.generator.initial_seed())
        self.gen = torch.Generator().manual_seed(self.base_seed)  # pools, sampling, init, controller, scoring
        self.dp_gen = torch.Generator(device=context.device).manual_seed(self.base_seed + 1)  # drop-path masks
        self.benchmark_dataset = (_AUTO_DATASET.get(context.num_classes, "cifar10")
                                  if c.benchmark_dataset == "auto" else c.benchmark_dataset)
        self.table: NB201Table | None = None
        if c.space == "nb201":
            self.space: Any = NB201Space()
            self.spec = plain_token_spec(6, len(NB201_OPS))
            self._augment = None  # NB201's six edges are distinct: no equivalent reordering
            try:
                self.table = load_nb201(c.table or None)
            except DataError:
                if c.rerank == "benchmark":
                    raise
        else:
            self.space = NAOSpace(ops=tuple(c.ops), nodes=c.nodes)
            self.spec = nao_token_spec(c.nodes, len(self.space.ops))
            self._augment = lambda s, g: swap_augment(s, c.nodes, g)
        self.controller = NAOController(self.spec, c.controller, self.gen).to(context.device)
        self.pool_new: list[Seq] = self._sample_new(c.seed_archs, set())
        self.evaluated: list[Seq] = []
        self.scores: dict[str, list[float]] = {}  # per trainee: accuracy of every evaluated architecture
        self.records: list[dict[str, Any]] = []  # per iteration
        self.finalists: list[Seq] = []
        self.rerank_acc: list[float] = []
        self.rerank_errors: dict[int, str] = {}  # finalist position → why its training failed
        self.rerank_s = 0.0  # compute seconds of the finalists' training (cached ones: their original time)
        self.chosen: Seq | None = None
        self.trainees: dict[str, _Trainee] = {}
        self.cache = ScoreCache(None if c.cache_dir == "off" else c.cache_dir or default_cache_dir())
        self._weights: dict[str, torch.Tensor] = {}
        self._reservoir: list[Batch] = []  # this rank's share of the scoring epoch's validation batches
        self._held = 0  # validation images all ranks hold together
        self._sizes: dict[Seq, int] = {}
        self.lr = c.lr
        self.epoch = 0

    # -- architectures --------------------------------------------------------------------------------------
    def _sample_new(self, n: int, exclude: set[Seq]) -> list[Seq]:
        if isinstance(self.space, NB201Space):
            out: list[Seq] = []
            for i in torch.randperm(len(self.space), generator=self.gen).tolist():
                seq = self._nb201_seq(i)
                if seq not in exclude:
                    out.append(seq)
                    if len(out) == n:
                        break
            return out
        return self.space.sample_pool(n, self.gen, list(exclude))

    @staticmethod
    def _nb201_seq(index: int) -> Seq:
        return tuple(NB201_OPS.index(op) for op in NB201Arch.from_index(index).ops)

    def genotype(self, seq: Seq) -> Genotype:
        if isinstance(self.space, NB201Space):
            return NB201Arch(tuple(NB201_OPS[v] for v in seq)).genotype()
        return self.space.genotype(seq)

    def nb201_index(self, seq: Seq) -> int:
        return NB201Arch(tuple(NB201_OPS[v] for v in seq)).index

    def model_size(self, seq: Seq) -> int:
        """Parameters of the stand-alone child network at the search size (the balanced-sampling weight)."""
        if seq not in self._sizes:
            c, ctx = self.config, self.context
            if isinstance(self.space, NB201Space):
                with torch.device("meta"):  # count only: no memory, no draw from the global RNG
                    net = NB201Network(self.genotype(seq), ctx.num_classes, c.channels, c.cells_per_stage,
                                       ctx.in_channels)
                self._sizes[seq] = sum(p.numel() for p in net.parameters())
            else:
                self._sizes[seq] = nao_param_count(self.genotype(seq), ctx.num_classes, 3 * c.cells_per_stage + 2,
                                                   c.channels, ctx.in_channels)
        return self._sizes[seq]

    def sampling_weights(self, pool: list[Seq], balanced: bool) -> torch.Tensor:
        """P(architecture) for one training step: ∝ model size when ``balanced``, else uniform."""
        if not balanced:
            return torch.full((len(pool),), 1.0 / len(pool), dtype=torch.float64)
        w = torch.tensor([float(self.model_size(s)) for s in pool], dtype=torch.float64)
        return w / w.sum()

    # -- phases -------------------------------------------------------------------------------------------
    @property
    def search_epochs(self) -> int:
        return self.config.iterations * self.config.epochs_per_iteration

    @property
    def reranks(self) -> bool:
        return self.config.rerank == "train" and self.config.top_k > 0

    @property
    def epochs(self) -> int:
        return self.search_epochs + int(self.reranks)  # the re-ranking: one loop epoch without steps

    @property
    def steps_per_epoch(self) -> int | None:
        return 0 if self._position(self.epoch)[0] == "rerank" else None

    @property
    def model(self) -> nn.Module:
        return nn.Module()  # no single network: the supernets need an architecture for a forward

    def replicated_modules(self) -> list[nn.Module]:
        return [t.net for t in self.trainees.values()]

    def op_names(self) -> list[str]:
        return list(self.space.ops)

    def _position(self, epoch: int) -> tuple[str, int, int]:
        """("search", iteration, epoch in it) or ("rerank", 0, 0)."""
        if epoch < self.search_epochs:
            return ("search", *divmod(epoch, self.config.epochs_per_iteration))
        return ("rerank", 0, 0)

    def _build_trainee(self, balanced: bool, independent: bool) -> _Trainee:
        c, ctx = self.config, self.context
        with torch.random.fork_rng(devices=[]):  # weights come from self.gen; module defaults must not move the
            net = self._new_supernet()          # global RNG (dropout, drop-path draw from it)
        net = net.to(ctx.device)
        opt = torch.optim.SGD(net.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        return _Trainee(net, opt, balanced, independent)

    def _new_supernet(self) -> nn.Module:
        c, ctx = self.config, self.context
        if isinstance(self.space, NB201Space):
            net: nn.Module = NB201PathSuperNet(ctx.num_classes, c.channels, c.cells_per_stage, ctx.in_channels,
                                               generator=self.gen)
        else:
            net = NAOSuperNet(self.space, ctx.num_classes, c.cells_per_stage, c.channels, ctx.in_channels,
                              generator=self.gen)
            net.generator = self.dp_gen
        return net

    def _trainee_flags(self) -> dict[str, tuple[bool, bool]]:
        c = self.config
        flags = {"main": (c.balanced, c.independent)}
        if c.compare:
            flags["compare"] = (not c.balanced, not c.independent)
        return flags

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._reservoir, self._held = [], 0
        phase, k, e = self._position(epoch)
        c = self.config
        dist = ddp.current()
        if dist.active:  # drop-path masks differ per rank, as they differ per image of one big batch
            self.dp_gen.manual_seed(ddp.rank_seed(self.base_seed + 1, dist.rank, epoch))
        if phase == "search":
            for key, (balanced, independent) in self._trainee_flags().items():
                if key not in self.trainees or (e == 0 and independent):
                    self.trainees[key] = self._build_trainee(balanced, independent)
                self._weights[key] = self.sampling_weights(self.pool_new, balanced)
            for t in self.trainees.values():
                if t.independent or c.restart_lr:
                    lr = cosine_lr(c.lr, c.lr_min, e, c.epochs_per_iteration)
                    dp = c.drop_path * e / c.epochs_per_iteration
                else:  # NAO-V1: one schedule over the whole search
                    lr = cosine_lr(c.lr, c.lr_min, epoch, self.search_epochs)
                    dp = c.drop_path * epoch / self.search_epochs
                for g in t.optimizer.param_groups:
                    g["lr"] = lr
                t.net.drop_path_prob = dp
                t.net.train()
            self.lr = self.trainees["main"].optimizer.param_groups[0]["lr"]
            return
        self.lr = c.rerank_lr

    def _last_epoch(self) -> bool:
        phase, _, e = self._position(self.epoch)
        return phase == "rerank" or e == self.config.epochs_per_iteration - 1

    # -- steps --------------------------------------------------------------------------------------------
    def step(self, train_batch: Batch, val_batch: Batch | None) -> dict[str, float]:
        if val_batch is not None and self._last_epoch() and self._held < self.config.eval_pool:
            x, y = val_batch  # this rank's slice; the first eval_pool images of all ranks' batches are kept
            self._reservoir.append((x.detach().clone(), y.detach().clone()))
            self._held += int(ddp.all_reduce_sum([len(y)])[0])
        metrics: dict[str, float] = {}
        for key, t in self.trainees.items():
            loss, acc = self._supernet_step(t, self.draw(key), train_batch)
            if key == "main":
                metrics.update(loss=loss, acc=acc)
            else:
                metrics[f"{key}_loss"] = loss
        return metrics

    def draw(self, key: str = "main") -> Seq:
        """The architecture of one training step of trainee ``key``: drawn from the current pool with its weights."""
        return self.pool_new[int(torch.multinomial(self._weights[key], 1, generator=self.gen))]

    def _supernet_step(self, t: _Trainee, seq: Seq, batch: Batch) -> tuple[float, float]:
        x, y = batch
        logits = t.net(x, seq)
        loss = F.cross_entropy(logits, y)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ddp.average_param_grads(t.net.parameters(), len(y))  # data-parallel: the global batch's gradient
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(t.net.parameters(), self.config.grad_clip)
        t.optimizer.step()
        return float(loss.detach()), 100.0 * float((logits.argmax(1) == y).float().mean())

    # -- end of an epoch: scoring, controller, generation, re-ranking ----------------------------------------
    def end_epoch(self, epoch: int) -> list[str]:
        if not self._last_epoch():
            return []
        phase, k, _ = self._position(epoch)
        if phase == "search":
            events = self._finish_iteration(k)
        else:
            events = self._rerank()
        self._share_rank0_decisions()
        return events

    def _share_rank0_decisions(self) -> None:
        """Every rank computed the same decisions from the same gathered values; rank 0's are sent to all anyway,
        so a controller that trained a hair differently on another machine cannot split the ranks' pools."""
        if not ddp.current().active:
            return
        state = ddp.broadcast_object((self.pool_new, self.records, self.finalists, self.rerank_acc, self.chosen,
                                      self.gen.get_state()))
        self.pool_new, self.records, self.finalists, self.rerank_acc, self.chosen, gen_state = state
        self.gen.set_state(gen_state)
        ddp.broadcast_module(self.controller)

    def _validation(self) -> Batch:
        """The first ``eval_pool`` validation images of the scoring epoch, gathered from every rank in the order
        one process would have seen them."""
        dist = ddp.current()
        if dist.active:
            device = self.context.device
            shards = ddp.all_gather_objects([(x.cpu(), y.cpu()) for x, y in self._reservoir])
            batches = [(torch.cat([x for x, _ in parts]).to(device), torch.cat([y for _, y in parts]).to(device))
                       for parts in zip(*shards)]
        else:
            batches = self._reservoir
        if not batches:
            raise DataError("NAO-V2 needs validation images to score architectures but the last epoch saw none; "
                            "lower data.train_portion")
        n = self.config.eval_pool
        return torch.cat([x for x, _ in batches])[:n], torch.cat([y for _, y in batches])[:n]

    def _set_bn_mode(self, net: nn.Module) -> None:
        """Scoring BatchNorm mode: ``train`` (batch statistics), ``eval`` (running ones) or ``code`` (batch
        statistics except the stem BN and the reduction cells' factorized-reduce BNs; METHODS-ADDENDUM N11)."""
        mode = self.config.eval_bn
        net.train(mode != "eval")
        if mode == "code":
            net.stem.eval()
            for cell in getattr(net, "cells", []):
                if getattr(cell, "reduction", False):
                    for m in cell.modules():
                        if isinstance(m, WSFactorizedReduce):
                            m.eval()

    @torch.no_grad()
    def score(self, net: nn.Module, seqs: list[Seq], val: Batch) -> list[float]:
        """Accuracy (%) of each architecture on its own random batch of ``eval_batch_size`` validation images.

        Scoring leaves the supernet as it was (BN running statistics restored). Under torchrun each rank scores
        every ``world``-th architecture with its own batch statistics and all ranks receive every score."""
        x, y = val
        n = min(self.config.eval_batch_size, len(y))
        picks = [torch.randperm(len(y), generator=self.gen)[:n].to(y.device) for _ in seqs]  # drawn in order
        dist = ddp.current()
        mine: dict[int, float] = {}
        with self._scoring_mode(net):
            for i in range(dist.rank, len(seqs), dist.world_size):
                idx = picks[i]
                mine[i] = 100.0 * float((net(x[idx], seqs[i]).argmax(1) == y[idx]).float().mean())
        scores = {i: v for part in ddp.all_gather_objects(mine) for i, v in part.items()}
        return [scores[i] for i in range(len(seqs))]

    @contextlib.contextmanager
    def _scoring_mode(self, net: nn.Module) -> Iterator[None]:
        """No drop-path, the configured BN mode, per-rank batch statistics; afterwards training mode, drop-path
        and the BN running statistics as they were."""
        dp, net.drop_path_prob = net.drop_path_prob, 0.0
        buffers = {k: b.clone() for k, b in net.named_buffers()}
        self._set_bn_mode(net)
        try:
            with local_statistics():
                yield
        finally:
            net.train()
            net.drop_path_prob = dp
            with torch.no_grad():
                for k, b in net.named_buffers():
                    b.copy_(buffers[k])

    def _table_values(self, seqs: list[Seq], column: str) -> np.ndarray | None:
        if self.table is None:
            return None
        return self.table.values([self.nb201_index(s) for s in seqs], column)

    def _finish_iteration(self, it: int) -> list[str]:
        c = self.config
        t0 = time.perf_counter()
        known = set(self.evaluated)
        self.evaluated += [s for s in self.pool_new if s not in known]
        val = self._validation()
        self.scores = {key: self.score(t.net, self.evaluated, val) for key, t in self.trainees.items()}
        acc = self.scores["main"]
        new_set = set(self.pool_new)
        rec: dict[str, Any] = {
            "iteration": it + 1, "n_evaluated": len(self.evaluated), "n_pool": len(self.pool_new),
            "pool_acc": list(acc), "new_acc": [a for s, a in zip(self.evaluated, acc) if s in new_set],
            "best_acc": float(max(acc)), "mean_acc": float(np.mean(acc)),
            "flags": {k: {"balanced": t.balanced, "independent": t.independent} for k, t in self.trainees.items()}}
        truth = self._table_values(self.evaluated, TEST_COLUMNS[self.benchmark_dataset])
        if truth is not None:
            for key, values in self.scores.items():
                rec["kendall_tau" if key == "main" else f"kendall_tau_{key}"] = kendall_tau(np.asarray(values), truth)
        events = [f"iteration {it + 1}: scored {len(self.evaluated)} architectures (best {rec['best_acc']:.2f}%)"
                  + (f", Kendall tau vs the table {rec['kendall_tau']:.3f}" if "kendall_tau" in rec else "")]
        order = sorted(range(len(acc)), key=lambda i: -acc[i])  # stable: ties keep the earlier architecture
        if it + 1 < c.iterations:
            stats = train_controller(self.controller, self.evaluated, acc, c.controller, self.gen, self._augment,
                                     self.context.device)
            seeds = [self.evaluated[i] for i in order[:c.generate_top]]
            new, step = generate(self.controller, seeds, c.new_archs, c.max_step_size, set(self.evaluated))
            rec.update(predictor_pairwise_acc=stats.pairwise_acc, decoder_val_hamming=stats.val_hamming,
                       decoder_token_acc=stats.train_token_acc, controller_loss=stats.train_loss,
                       n_generated=len(new), max_step_used=step)
            if not new:  # nothing new decodes: keep searching from random unseen architectures
                new = self._sample_new(c.new_archs, set(self.evaluated))
                events.append(f"the controller produced no new architecture; {len(new)} random ones instead")
            self.pool_new = new
            events.append(f"controller: pairwise accuracy {stats.pairwise_acc:.3f}, decoder token accuracy "
                          f"{stats.train_token_acc:.3f}; {len(new)} new architectures (step size up to {step})")
        else:
            self.finalists = [self.evaluated[i] for i in order[:max(c.top_k, 1)]]
            if c.rerank == "benchmark" and self.table is not None:
                values = self._table_values(self.finalists, SELECTION_COLUMNS[self.benchmark_dataset])
                self.rerank_acc = [float(v) for v in values]
                self.chosen = self.finalists[int(np.argmax(values))]
            elif not self.reranks:
                self.chosen = self.finalists[0]
        rec["wall_s"] = time.perf_counter() - t0
        self.records = [r for r in self.records if r["iteration"] != it + 1] + [rec]
        return events

    def finalist_job(self, seq: Seq) -> FinalistTraining:
        """What training finalist ``seq`` takes: its network at the re-ranking size and the evaluation recipe."""
        c, ctx = self.config, self.context
        nb201 = isinstance(self.space, NB201Space)
        recipe = TrainConfig(epochs=c.rerank_epochs, lr=c.rerank_lr, lr_min=0.0, weight_decay=c.rerank_weight_decay,
                             auxiliary=c.rerank_auxiliary and not nb201, aux_weight=0.4,
                             drop_path=0.0 if nb201 else c.rerank_drop_path, grad_clip=5.0)
        genotype = self.genotype(seq)
        if not nb201:
            self.space.validate(genotype)
        return FinalistTraining(
            genotype, ctx.num_classes, ctx.in_channels,
            c.rerank_cells_per_stage if nb201 else 3 * c.rerank_cells_per_stage + 2, c.rerank_channels,
            0.0 if nb201 else c.rerank_dropout, recipe, c.eval_pool, self.base_seed)

    def _rerank(self) -> list[str]:
        """Train every finalist through the executor (cached ones are read back); choose the best."""
        c, data = self.config, self.context.data
        if not isinstance(data, DataRecipe):
            raise ConfigError("re-ranking by training needs the run's data recipe (SearchContext.data); run NAO-V2 "
                              "through nasforge.search or the CLI, or set search.rerank=benchmark on NB201")
        jobs = [self.finalist_job(seq) for seq in self.finalists]
        keys = [_finalist_key(job, data) for job in jobs]
        values: dict[int, float] = {}
        seconds: dict[int, float] = {}
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None:
                values[i], seconds[i] = hit.value, hit.seconds
        hits = len(values)
        dist = ddp.current()
        todo = [i for i in range(len(jobs)) if i not in values]
        mine = todo[dist.rank::dist.world_size]  # under torchrun each rank trains its share
        errors: dict[int, str] = {}
        with c.make_executor() as executor:
            for j, outcome in executor.as_completed(train_finalist, [jobs[i] for i in mine], shared=data):
                i = mine[j]
                if outcome.ok:
                    values[i], seconds[i] = float(outcome.value), outcome.seconds
                    self.cache.put(keys[i], ProxyScore(values[i], outcome.seconds),
                                   {"kind": "nao-v2 finalist", "genotype": str(jobs[i].genotype)})
                else:
                    errors[i] = outcome.error or "failed"
                    _log.warning(f"training finalist {i + 1} failed: {outcome.error}")
        for part in ddp.all_gather_objects((values, seconds, errors), patient=True):
            values.update(part[0])
            seconds.update(part[1])
            errors.update(part[2])
        self.rerank_acc = [values.get(i, float("nan")) for i in range(len(jobs))]
        self.rerank_errors = errors
        self.rerank_s = float(sum(seconds.values()))
        ranked = np.nan_to_num(np.asarray(self.rerank_acc, dtype=np.float64), nan=-np.inf)
        best = int(np.argmax(ranked))
        self.chosen = self.finalists[best]
        events = [f"finalist {i + 1}/{len(jobs)}: validation accuracy {v:.2f}% after {c.rerank_epochs} epochs"
                  for i, v in enumerate(self.rerank_acc) if i not in errors]
        events += [f"finalist {i + 1} failed: {e}" for i, e in sorted(errors.items())]
        events.append(f"chose finalist {best + 1}" + (f" ({hits} read from the cache)" if hits else ""))
        return events

    # -- results ------------------------------------------------------------------------------------------
    def export(self) -> Genotype:
        if self.chosen is not None:
            return self.genotype(self.chosen)
        acc = self.scores.get("main")
        if acc:
            return self.genotype(self.evaluated[int(np.argmax(acc))])
        return self.genotype(self.pool_new[0])

    def extra_exports(self) -> dict[str, Genotype]:
        return {f"finalist{i + 1}": self.genotype(s) for i, s in enumerate(self.finalists)}

    def epoch_metrics(self) -> dict[str, Any]:
        phase, k, _ = self._position(self.epoch)
        if phase == "rerank":
            return {"phase": phase, "finalists": len(self.finalists)}
        row: dict[str, Any] = {"phase": phase, "iteration": k + 1}
        if phase == "search" and self.records and self.records[-1]["iteration"] == k + 1 and self._last_epoch():
            rec = self.records[-1]
            row.update({key: rec[key] for key in ("best_acc", "mean_acc", "kendall_tau", "kendall_tau_compare",
                                                  "predictor_pairwise_acc", "decoder_token_acc") if key in rec})
        return row

    def results(self) -> dict[str, Any]:
        if not self.records:
            return {}
        c = self.config
        out: dict[str, Any] = {"method": self.name, "space": c.space, "balanced": c.balanced,
                               "independent": c.independent, "compare": c.compare, "iterations": self.records,
                               "finalists": [list(s) for s in self.finalists], "rerank": c.rerank,
                               "rerank_acc": self.rerank_acc, "rerank_s": self.rerank_s,
                               "rerank_errors": {str(i + 1): e for i, e in self.rerank_errors.items()},
                               "chosen": list(self.chosen) if self.chosen is not None else None}
        if self.chosen is not None:
            out["genotype"] = str(self.genotype(self.chosen))
            if self.table is not None:
                row = self.table.query(self.nb201_index(self.chosen))
                out["nb201_index"] = row.index
                out["benchmark"] = {k: row[k] for k in ("cifar10_test", "cifar100_test", "imagenet16_test",
                                                        "cifar10_valid")}
        return out

    def report_sections(self, run_dir: Any) -> list[str]:
        from .nao_report import nao_report_sections

        return nao_report_sections(self, run_dir)

    # -- state --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 2, "base_seed": self.base_seed, "gen": self.gen.get_state(), "dp_gen": self.dp_gen.get_state(),
            "pool_new": [list(s) for s in self.pool_new], "evaluated": [list(s) for s in self.evaluated],
            "scores": self.scores, "records": self.records, "finalists": [list(s) for s in self.finalists],
            "rerank_acc": self.rerank_acc, "rerank_s": self.rerank_s,
            "rerank_errors": {str(i): e for i, e in self.rerank_errors.items()},
            "chosen": None if self.chosen is None else list(self.chosen),
            "controller": self.controller.state_dict(), "epoch": self.epoch,
            "trainees": {k: {"net": t.net.state_dict(), "optimizer": t.optimizer.state_dict()}
                         for k, t in self.trainees.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != 2:
            raise ConfigError("this checkpoint was written by another NAO-V2 version; start a new run")
        self.base_seed = int(state["base_seed"])
        self.pool_new = [tuple(s) for s in state["pool_new"]]
        self.evaluated = [tuple(s) for s in state["evaluated"]]
        self.scores = {k: list(v) for k, v in state["scores"].items()}
        self.records = list(state["records"])
        self.finalists = [tuple(s) for s in state["finalists"]]
        self.rerank_acc = list(state["rerank_acc"])
        self.rerank_s = float(state["rerank_s"])
        self.rerank_errors = {int(i): e for i, e in state["rerank_errors"].items()}
        self.chosen = None if state["chosen"] is None else tuple(state["chosen"])
        self.controller.load_state_dict(state["controller"])
        self.epoch = int(state["epoch"])
        flags = self._trainee_flags()
        self.trainees = {}
        for key, saved in state["trainees"].items():
            t = self._build_trainee(*flags[key])
            t.net.load_state_dict(saved["net"])
            t.optimizer.load_state_dict(saved["optimizer"])
            self.trainees[key] = t
        self.gen.set_state(state["gen"])
        self.dp_gen.set_state(state["dp_gen"])


def _finalist_key(job: FinalistTraining, data: DataRecipe) -> str:
    """The cache key of a finalist's accuracy: everything it depends on (the device kind, not its number)."""
    parts = {"kind": "nao-v2 finalist", "genotype": job.genotype.to_dict(), "recipe": to_dict(job.recipe),
             "job": {k: v for k, v in vars(job).items() if k not in ("genotype", "recipe")},
             "data": {**vars(data), "device": torch.device(data.device).type}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


STRATEGIES.add("nao-v2", NaoV2)
