"""The one search loop: it drives any :class:`~nasforge.strategies.Strategy` epoch by epoch.

Per epoch: ``begin_epoch`` → ``steps_per_epoch`` × ``step(train_batch, val_batch)`` → ``end_epoch`` →
(every ``loop.valid_every`` epochs) accuracy of the supernet on the architecture split → a metrics row, the
current genotype and an atomic checkpoint. A resumed run restores the strategy, both batch streams and the
RNG states and redoes the interrupted epoch, so it ends exactly where an uninterrupted run would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import RunConfig, run_dict
from ..data import ImageDataset, search_split
from ..genotypes import Genotype
from ..run import RunDir
from ..strategies import Strategy
from ..training import EpochMeter, check_finite, evaluate, make_stream
from .._rng import get_rng_state, set_rng_state

__all__ = ["SearchOutcome", "run_search"]


@dataclass
class SearchOutcome:
    genotype: Genotype
    history: list[dict[str, Any]] = field(default_factory=list)
    arch_history: list[dict[str, list[list[float]]]] = field(default_factory=list)
    extra: dict[str, Genotype] = field(default_factory=dict)
    wall_s: float = 0.0


def run_search(strategy: Strategy, data: ImageDataset, cfg: RunConfig, run: RunDir) -> SearchOutcome:
    """Search with ``strategy`` on ``data`` (already on the compute device), writing into ``run``."""
    device = data.x_train.device
    split_gen = torch.Generator().manual_seed(cfg.seed)
    train_idx, val_idx = search_split(len(data.y_train), cfg.data.train_portion, split_gen)
    train_idx, val_idx = train_idx.to(device), val_idx.to(device)
    gens = [torch.Generator(device=device).manual_seed(cfg.seed + k) for k in (1, 2)]
    train_stream = make_stream(data, cfg, train_idx, gens[0], True, cfg.data.batch_size)
    val_stream = make_stream(data, cfg, val_idx, gens[1], True, cfg.data.batch_size)
    steps = strategy.steps_per_epoch or train_stream.batches_per_epoch
    config_dict = run_dict(cfg, "search")

    start_epoch, outcome, elapsed = 0, SearchOutcome(genotype=strategy.export()), 0.0
    if run.resume:
        state = run.load_checkpoint(config_dict, map_location=device)
        strategy.load_state_dict(state["strategy"])
        train_stream.load_state_dict(state["train_stream"])
        val_stream.load_state_dict(state["val_stream"])
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
        strategy.begin_epoch(epoch)
        if strategy.has_supernet:
            strategy.model.train()
        meter = EpochMeter()
        bar = tqdm(range(steps), desc=f"search epoch {epoch + 1}/{strategy.epochs}", leave=False,
                   disable=None if cfg.loop.progress else True, unit="step")
        for step in bar:
            val_batch = val_stream.next_batch() if strategy.needs_val_batch else None
            metrics = strategy.step(train_stream.next_batch(), val_batch)
            check_finite(metrics["loss"], f"epoch {epoch + 1}, step {step + 1}",
                         "lower the learning rate (e.g. --set search.w_lr=0.01) or check the data")
            meter.update(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        events = strategy.end_epoch(epoch)
        row: dict[str, Any] = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in meter.means().items()}}
        last = epoch + 1 == strategy.epochs
        if strategy.has_supernet and (last or (cfg.loop.valid_every and (epoch + 1) % cfg.loop.valid_every == 0)):
            val_eval = make_stream(data, cfg, val_idx, gens[1], False, cfg.data.eval_batch_size, augment=False)
            res = evaluate(strategy.model, val_eval.iter_epoch(), cfg.loop.valid_batches)
            row.update(valid_loss=res["loss"], valid_acc=res["acc"])
        row.update(strategy.epoch_metrics())
        genotype = strategy.export()
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
