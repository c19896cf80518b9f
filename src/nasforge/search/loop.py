"""The one search loop: it drives any :class:`~nasforge.strategies.Strategy` epoch by epoch.

Per epoch: ``begin_epoch`` → ``steps_per_epoch`` × ``step(train_batch, val_batch)`` → ``end_epoch`` →
(every ``loop.valid_every`` epochs) accuracy of the supernet on the architecture split → a metrics row, the
current genotype and an atomic checkpoint. A resumed run restores the strategy, both batch streams and the
RNG states and redoes the interrupted epoch, so it ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from tqdm.auto import tqdm

from ..config import RunConfig, run_dict
from ..data import ImageDataset, search_split
from ..genotypes import Genotype
from ..ops.norm import sync_batch_norms
from ..parallel import distributed as ddp
from ..run import RunDir
from ..strategies import Strategy
from ..training import EpochMeter, check_finite, evaluate, make_stream, read_checkpoint
from .._rng import get_rng_state, set_rng_state

__all__ = ["SearchOutcome", "run_search"]


@dataclass
class SearchOutcome:
    genotype: Genotype
    history: list[dict[str, Any]] = field(default_factory=list)
    arch_history: list[dict[str, list[list[float]]]] = field(default_factory=list)
    extra: dict[str, Genotype] = field(default_factory=dict)
    wall_s: float = 0.0


class _RankAlignment:
    """Under torchrun: keeps every rank's supernet identical and synchronised (a no-op for one process).

    Architecture decisions (``begin_epoch``/``end_epoch``: P-DARTS stages, GOLD-NAS pruning) run under the same
    random state on every rank; steps draw from a per-rank seed (dropout differs per rank, as it would for the
    samples of one big batch). A model the strategy newly built is copied from rank 0 and its BNs synchronised."""

    def __init__(self, strategy: Strategy, seed: int, sync_bn: bool) -> None:
        self.strategy, self.seed, self.sync_bn, self.ctx = strategy, seed, sync_bn, ddp.current()
        self._replicated: list[torch.nn.Module] = []  # held, so that a new module never reuses an old one's id

    def model_built(self) -> None:
        if not self.ctx.active:
            return
        known = {id(m) for m in self._replicated}
        current = self.strategy.replicated_modules()
        for model in current:
            if id(model) not in known:
                if self.sync_bn:
                    sync_batch_norms(model)
                ddp.broadcast_module(model)
        self._replicated = list(current)

    def shared_rng(self, epoch: int, phase: int) -> "contextlib.AbstractContextManager[None]":
        if not self.ctx.active:
            return contextlib.nullcontext()
        return _seeded_fork(ddp.rank_seed(self.seed, -1 - phase, epoch))

    def rank_rng(self, epoch: int) -> None:
        if self.ctx.active:
            torch.manual_seed(ddp.rank_seed(self.seed, self.ctx.rank, epoch))

    def end_steps(self) -> None:
        """Per-rank BN statistics (``loop.sync_bn=false``) are averaged before anyone evaluates or saves them."""
        if self.ctx.active and not self.sync_bn:
            for model in self.strategy.replicated_modules():
                ddp.average_buffers(model)

    def check(self, epoch: int, genotype: Genotype) -> None:
        if self.ctx.active:
            ddp.check_same(ddp.state_digest(self.strategy.arch_weights(), genotype.hash()),
                           f"architecture state after epoch {epoch + 1}")


@contextlib.contextmanager
def _seeded_fork(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def run_search(strategy: Strategy, data: ImageDataset, cfg: RunConfig, run: RunDir) -> SearchOutcome:
    """Search with ``strategy`` on ``data`` (already on the compute device), writing into ``run``.

    Under torchrun every rank calls this with the same arguments (``run`` a follower on ranks other than 0):
    all ranks draw the same global batches and each computes its own slice (:func:`ddp.shard_batch`);
    ``data.batch_size`` is the global batch, so learning rates mean what they mean in one process."""
    device = data.x_train.device
    align = _RankAlignment(strategy, cfg.seed, cfg.loop.sync_bn)
    world = align.ctx.world_size
    split_gen = torch.Generator().manual_seed(cfg.seed)
    train_idx, val_idx = search_split(len(data.y_train), cfg.data.train_portion, split_gen)
    train_idx, val_idx = train_idx.to(device), val_idx.to(device)
    gens = [torch.Generator(device=device).manual_seed(cfg.seed + k) for k in (1, 2)]
    train_stream = make_stream(data, cfg, train_idx, gens[0], True, cfg.data.batch_size)
    val_stream = make_stream(data, cfg, val_idx, gens[1], True, cfg.data.batch_size)

    def epoch_steps() -> int:  # a strategy may change it by phase (NAO-V2's re-ranking epoch has none)
        steps = strategy.steps_per_epoch
        return train_stream.batches_per_epoch if steps is None else steps

    steps = epoch_steps()
    config_dict = run_dict(cfg, "search")

    start_epoch, outcome, elapsed = 0, SearchOutcome(genotype=strategy.export()), 0.0
    if run.resume:
        state = read_checkpoint(run, config_dict, device)
        strategy.load_state_dict(state["strategy"])
        train_stream.load_state_dict(state["train_stream"])
        val_stream.load_state_dict(state["val_stream"])
        if not align.ctx.active:
            set_rng_state(state["rng"])
        start_epoch, elapsed = state["epoch"], state["wall_s"]
        outcome.history, outcome.arch_history = state["history"], state["arch_history"]
        run.truncate_metrics(len(outcome.history))
        run.log(f"resumed from {run.checkpoint_path} at epoch {start_epoch}/{strategy.epochs}")
    else:
        run.write_json("split.json", {"seed": cfg.seed, "train_portion": cfg.data.train_portion,
                                      "train_indices": train_idx.tolist(), "val_indices": val_idx.tolist()})
        run.log(f"searching with {strategy.name} for {strategy.epochs} epochs of {steps} steps "
                f"({len(train_idx)} images for weights, {len(val_idx)} for the architecture)")

    for epoch in range(start_epoch, strategy.epochs):
        if strategy.should_stop():
            run.log(f"stopping before epoch {epoch + 1}: {strategy.name} reached its target")
            break
        t0 = time.perf_counter()
        with align.shared_rng(epoch, 0):
            strategy.begin_epoch(epoch)
        align.model_built()
        align.rank_rng(epoch)
        steps = epoch_steps()
        if strategy.has_supernet:
            strategy.model.train()
        meter = EpochMeter()
        bar = tqdm(range(steps), desc=f"search epoch {epoch + 1}/{strategy.epochs}", leave=False,
                   disable=None if cfg.loop.progress and align.ctx.is_main else True, unit="step")
        for step in bar:
            val_batch = val_stream.next_batch() if strategy.needs_val_batch else None
            train_batch = train_stream.next_batch()
            if len(train_batch[1]) < world or (val_batch is not None and len(val_batch[1]) < world):
                continue  # a short last batch with fewer images than ranks: skipped by every rank alike
            metrics = strategy.step(ddp.shard_batch(train_batch), val_batch and ddp.shard_batch(val_batch))
            loss = ddp.reduce_means({"loss": metrics["loss"]})["loss"]  # a NaN on any rank stops them all
            check_finite(loss, f"epoch {epoch + 1}, step {step + 1}",
                         "lower the learning rate (e.g. --set search.w_lr=0.01) or check the data")
            meter.update(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        align.end_steps()
        with align.shared_rng(epoch, 1):
            events = strategy.end_epoch(epoch)
        align.model_built()
        row: dict[str, Any] = {"epoch": epoch + 1, **{f"train_{k}": v
                                                      for k, v in ddp.reduce_means(meter.means()).items()}}
        last = epoch + 1 == strategy.epochs
        if strategy.has_supernet and (last or (cfg.loop.valid_every and (epoch + 1) % cfg.loop.valid_every == 0)):
            val_eval = make_stream(data, cfg, val_idx, gens[1], False, cfg.data.eval_batch_size, augment=False)
            res = evaluate(strategy.model, val_eval.iter_epoch(), cfg.loop.valid_batches)
            row.update(valid_loss=res["loss"], valid_acc=res["acc"])
        row.update(strategy.epoch_metrics())
        genotype = strategy.export()
        align.check(epoch, genotype)
        epoch_s = time.perf_counter() - t0
        elapsed += epoch_s
        row.update(epoch_s=epoch_s, wall_s=elapsed, genotype=genotype.to_dict(), genotype_hash=genotype.hash(),
                   events=events)
        if hasattr(strategy, "lr"):
            row["lr"] = strategy.lr
        strategy.on_epoch_row(row)
        outcome.history.append(row)
        outcome.arch_history.append({k: w.tolist() for k, w in strategy.arch_weights().items()})
        run.append_metrics(row)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "wall_s")
        run.log(f"epoch {epoch + 1}/{strategy.epochs}: {shown}" + (f"; {'; '.join(events)}" if events else ""))
        run.save_checkpoint({"epoch": epoch + 1, "wall_s": elapsed, "strategy": strategy.state_dict(),
                             "train_stream": train_stream.state_dict(), "val_stream": val_stream.state_dict(),
                             "rng": get_rng_state(device), "history": outcome.history,
                             "arch_history": outcome.arch_history}, config_dict)
    outcome.genotype = strategy.export()
    outcome.extra = strategy.extra_exports()
    outcome.wall_s = elapsed
    return outcome

