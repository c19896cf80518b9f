"""The one trainer for stand-alone networks: the evaluation recipe of the DARTS family (METHODS.md §1.5).

SGD with momentum and a per-epoch learning-rate schedule (cosine for CIFAR, ×0.97 per epoch for ImageNet),
cutout, drop-path ramped linearly from 0 to ``drop_path`` over the epochs, the auxiliary head's loss weighted
by ``aux_weight``, gradient norm clipping, optional label smoothing. Test accuracy on the official test split.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .._rng import get_rng_state, set_rng_state
from ..config import RunConfig, TrainConfig, run_dict
from ..data import ImageDataset
from ..errors import ConfigError
from ..ops.norm import sync_batch_norms
from ..parallel import distributed as ddp
from ..parallel.distributed import average_param_grads
from ..run import RunDir
from .evaluate import EpochMeter, check_finite, evaluate
from .streams import make_stream

__all__ = ["TrainOutcome", "train_network", "epoch_lr", "begin_train_epoch", "train_step", "read_checkpoint"]


@dataclass
class TrainOutcome:
    test_acc: float
    test_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based) under ``cfg.lr_schedule``."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / cfg.epochs))
    if cfg.lr_schedule == "exponential":
        return cfg.lr * cfg.lr_gamma ** epoch
    if cfg.lr_schedule == "linear":
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 - epoch / cfg.epochs)
    raise ConfigError(f"train.lr_schedule must be cosine, exponential or linear, got {cfg.lr_schedule!r}")


def begin_train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, tc: TrainConfig, epoch: int) -> float:
    """Set epoch ``epoch``'s learning rate and drop-path rate (ramped linearly) and training mode; returns the lr.
    Shared with search methods that retrain candidates (NAO's final re-ranking)."""
    lr = epoch_lr(tc, epoch)
    for g in optimizer.param_groups:
        g["lr"] = lr
    net.drop_path_prob = tc.drop_path * epoch / tc.epochs
    net.train()
    return lr


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor],
               tc: TrainConfig) -> dict[str, float]:
    """One SGD step of the evaluation recipe (cross-entropy, auxiliary loss, label smoothing, clipping); returns
    the batch's ``loss`` and training ``acc`` (in %)."""
    x, y = batch
    logits, aux = net(x)
    loss = F.cross_entropy(logits, y, label_smoothing=tc.label_smoothing)
    if aux is not None and tc.aux_weight > 0:
        loss = loss + tc.aux_weight * F.cross_entropy(aux, y, label_smoothing=tc.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_param_grads(net.parameters(), len(y))  # data-parallel: the global batch's gradient
    if tc.grad_clip > 0:
        nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
    optimizer.step()
    return {"loss": float(loss.detach()), "acc": 100.0 * float((logits.argmax(1) == y).float().mean())}


def read_checkpoint(run: RunDir, config: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The run's last checkpoint with its tensors on ``device``. Under torchrun rank 0 reads the file and the
    other ranks receive it from rank 0, so nodes need no shared disk (RNG states stay on the CPU, as torch
    keeps them)."""
    if not ddp.current().active:
        return run.load_checkpoint(config, map_location=device)
    state = ddp.broadcast_object(run.load_checkpoint(config, map_location="cpu") if ddp.current().is_main else None)
    return _to_device(state, device)


def _to_device(state: Any, device: torch.device) -> Any:
    if isinstance(state, torch.Tensor):
        return state if state.dtype == torch.uint8 else state.to(device)
    if isinstance(state, dict):
        return {k: v if k in ("generator", "rng") else _to_device(v, device) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(v, device) for v in state)
    return state


def train_network(net: nn.Module, data: ImageDataset, cfg: RunConfig, run: RunDir) -> TrainOutcome:
    """Train ``net`` (already on the device) from scratch on the training split; test on the test split.

    Under torchrun every rank calls this alike: all draw the same global batches (``data.batch_size`` is the
    global batch) and train on their slice, with gradients averaged and BN statistics synchronised over the
    ranks, so the ranks' networks stay identical; drop-path masks come from a per-rank seed of each epoch."""
    tc = cfg.train
    dctx = ddp.current()
    if dctx.active:
        if cfg.loop.sync_bn:
            sync_batch_norms(net)
        ddp.broadcast_module(net)
    epoch_lr(tc, 0)  # validate the schedule name before any work
    device = data.x_train.device
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    stream = make_stream(data, cfg, None, gen, True, cfg.data.batch_size)
    optimizer = torch.optim.SGD(net.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    config_dict = run_dict(cfg, "train")
    outcome = TrainOutcome(test_acc=float("nan"), test_loss=float("nan"))
    start = 0
    if run.resume:
        state = read_checkpoint(run, config_dict, device)
        if not dctx.active:
            set_rng_state(state["rng"])
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stream.load_state_dict(state["stream"])
        start, outcome.wall_s, outcome.history = state["epoch"], state["wall_s"], state["history"]
        run.truncate_metrics(len(outcome.history))
        run.log(f"resumed training at epoch {start}/{tc.epochs}")
    else:
        run.log(f"training for {tc.epochs} epochs of {stream.batches_per_epoch} steps")

    for epoch in range(start, tc.epochs):
        t0 = time.perf_counter()
        lr = begin_train_epoch(net, optimizer, tc, epoch)
        if dctx.active:
            torch.manual_seed(ddp.rank_seed(cfg.seed, dctx.rank, epoch))
        meter = EpochMeter()
        bar = tqdm(range(stream.batches_per_epoch), desc=f"train epoch {epoch + 1}/{tc.epochs}", leave=False,
                   disable=None if cfg.loop.progress and dctx.is_main else True, unit="step")
        for step in bar:
            batch = stream.next_batch()
            if len(batch[1]) < dctx.world_size:
                continue  # a short last batch with fewer images than ranks: skipped by every rank alike
            metrics = train_step(net, optimizer, ddp.shard_batch(batch), tc)
            check_finite(ddp.reduce_means({"loss": metrics["loss"]})["loss"], f"epoch {epoch + 1}, step {step + 1}",
                         "lower the learning rate (e.g. --set train.lr=0.01) or check the data")
            meter.update(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if not cfg.loop.sync_bn:
            ddp.average_buffers(net)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "drop_path": net.drop_path_prob,
                               **{f"train_{k}": v for k, v in ddp.reduce_means(meter.means()).items()}}
        last = epoch + 1 == tc.epochs
        if last or (cfg.loop.valid_every and (epoch + 1) % cfg.loop.valid_every == 0):
            test = make_stream(data, cfg, None, gen, False, cfg.data.eval_batch_size, split="test", augment=False)
            res = evaluate(net, test.iter_epoch(), 0 if last else cfg.loop.valid_batches)
            row.update(test_loss=res["loss"], test_acc=res["acc"])
            if last:
                outcome.test_acc, outcome.test_loss = res["acc"], res["loss"]
        epoch_s = time.perf_counter() - t0
        outcome.wall_s += epoch_s
        row.update(epoch_s=epoch_s, wall_s=outcome.wall_s)
        if dctx.active:
            ddp.check_same(ddp.state_digest(net.state_dict()), f"network weights after epoch {epoch + 1}")
        outcome.history.append(row)
        run.append_metrics(row)
        run.log(f"epoch {epoch + 1}/{tc.epochs}: " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k not in ("wall_s", "drop_path")))
        run.save_checkpoint({"epoch": epoch + 1, "wall_s": outcome.wall_s, "model": net.state_dict(),
                             "optimizer": optimizer.state_dict(), "stream": stream.state_dict(),
                             "rng": get_rng_state(device), "history": outcome.history}, config_dict)
    if start >= tc.epochs and outcome.history:  # resumed a finished run: report its final numbers
        outcome.test_acc = outcome.history[-1].get("test_acc", float("nan"))
        outcome.test_loss = outcome.history[-1].get("test_loss", float("nan"))
    return outcome
