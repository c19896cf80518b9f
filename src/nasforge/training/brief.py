"""Brief training of one candidate network, runnable in any process: selection by training (KNAS, random search).

Selecting among a shortlist by a few hundred SGD steps each is independent work per candidate, so it goes through
an executor (:mod:`nasforge.parallel`): local processes or Ray tasks. Each candidate therefore gets everything it
needs as plain data — a :class:`BriefTraining` (its network and recipe) and the run's :class:`DataRecipe`, from
which the worker loads the same dataset and the same weight/architecture split the search loop uses — and draws
its batches from its own generators, seeded by (run seed, architecture). A candidate's result then depends on
nothing but itself: not on its place in the shortlist, the number of workers or the backend.

Two recipes: :func:`train_briefly` (a few hundred NB201-style SGD steps, KNAS and random search) and
:func:`train_finalist` (whole epochs of the evaluation recipe, NAO-V2's final re-ranking).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import RunConfig, TrainConfig
from ..data import BatchStream, ImageDataset, load_dataset, search_split
from ..models import build_network, init_network
from ..models.nb201 import NB201Network
from ..parallel import distributed as ddp
from .trainer import begin_train_epoch, train_step

__all__ = ["DataRecipe", "BriefTraining", "FinalistTraining", "remember_data", "split_data", "train_briefly",
           "train_finalist", "architecture_seed"]


@dataclass(frozen=True)
class DataRecipe:
    """Where a run's images come from and how its search loop splits and augments them (picklable)."""

    dataset: str
    data_dir: str | None
    n_train: int
    n_test: int
    train_portion: float
    seed: int
    batch_size: int
    pad: int
    flip: bool | None
    cutout: int
    device: str = "cpu"

    @classmethod
    def from_config(cls, cfg: RunConfig, device: torch.device | str) -> "DataRecipe":
        d = cfg.data
        return cls(d.dataset, d.data_dir, d.n_train, d.n_test, d.train_portion, cfg.seed, d.batch_size, d.pad,
                   d.flip, d.cutout, str(device))


_DATA: dict[DataRecipe, tuple[ImageDataset, torch.Tensor, torch.Tensor]] = {}


def _split(recipe: DataRecipe, data: ImageDataset) -> tuple[ImageDataset, torch.Tensor, torch.Tensor]:
    train_idx, val_idx = search_split(len(data.y_train), recipe.train_portion,
                                      torch.Generator().manual_seed(recipe.seed))  # as the search loop splits
    device = data.x_train.device
    return data, train_idx.to(device), val_idx.to(device)


def remember_data(recipe: DataRecipe, data: ImageDataset) -> None:
    """Let candidates trained in this process use the already loaded ``data`` instead of loading it again."""
    _DATA[recipe] = _split(recipe, data)


def split_data(recipe: DataRecipe) -> tuple[ImageDataset, torch.Tensor, torch.Tensor]:
    """``(dataset on the recipe's device, weight-split indices, architecture-split indices)``, loaded once per
    process (a worker on another machine needs the dataset in its own data folder; nothing is downloaded)."""
    if recipe not in _DATA:
        data = load_dataset(recipe.dataset, recipe.data_dir, download=False, progress=False)
        if recipe.n_train or recipe.n_test:
            data = data.subset(recipe.n_train or None, recipe.n_test or None)
        _DATA[recipe] = _split(recipe, data.to(torch.device(recipe.device)))
    return _DATA[recipe]


@dataclass(frozen=True)
class BriefTraining:
    """One candidate: its genotype (built as an NB201 network), the SGD recipe and the seeds of its draws."""

    genotype: Any
    key: int  # what identifies the candidate for its seeds (the NB201 index)
    num_classes: int
    in_channels: int
    channels: int
    cells: int
    steps: int
    lr: float
    momentum: float
    weight_decay: float
    eval_batches: int
    seed: int  # the run's seed
    init_seed: int  # the network's initialisation


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def architecture_seed(genotype: Any) -> int:
    """A seed that names an architecture (its text), for candidates identified by nothing shorter."""
    return _seed(int.from_bytes(hashlib.sha256(str(genotype).encode()).digest()[:8], "little"))


def _train_stream(recipe: DataRecipe, data: ImageDataset, train_idx: torch.Tensor, seed: int) -> BatchStream:
    """The weight split, augmented as the search loop augments it, in an order drawn from ``seed``."""
    pad = data.pad if recipe.pad < 0 else recipe.pad
    flip = data.flip if recipe.flip is None else recipe.flip
    return BatchStream(data.x_train, data.y_train, train_idx, recipe.batch_size,
                       torch.Generator(device=data.x_train.device).manual_seed(seed), train=True, pad=pad,
                       flip=flip, cutout=recipe.cutout, mean=data.mean, std=data.std)


def _eval_stream(recipe: DataRecipe, data: ImageDataset, indices: torch.Tensor, order_seed: int,
                 first: int | None = None) -> BatchStream:
    """``indices`` (of the architecture split) in an order drawn from ``order_seed`` (only the ``first`` of that
    order, if given), unaugmented."""
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(order_seed))[:first]
    device = data.x_train.device
    return BatchStream(data.x_train, data.y_train, indices[order.to(device)], recipe.batch_size,
                       torch.Generator(device=device), train=False, pad=0, flip=False, cutout=0, mean=data.mean,
                       std=data.std)


@torch.no_grad()
def _accuracy(net: nn.Module, batches: Any, limit: int | None = None) -> float:
    """Top-1 accuracy (%) of ``net`` in eval mode on ``batches`` (the first ``limit`` of them)."""
    net.eval()
    correct = seen = 0
    for i, (x, y) in enumerate(batches):
        if limit is not None and i >= limit:
            break
        correct += int((net(x)[0].argmax(1) == y).sum())
        seen += len(y)
    return 100.0 * correct / max(seen, 1)


def train_briefly(job: BriefTraining, recipe: DataRecipe) -> float:
    """Train ``job``'s network for ``steps`` SGD steps (Nesterov momentum, cosine learning rate per step, gradient
    norm clipped to 5, as NAS-Bench-201 trains) on the weight split; return its top-1 accuracy (%) on
    ``eval_batches`` batches of the architecture split, in a shuffled order of its own and unaugmented."""
    data, train_idx, val_idx = split_data(recipe)
    train = _train_stream(recipe, data, train_idx, _seed(job.seed, job.key, 1))
    val = _eval_stream(recipe, data, val_idx, _seed(job.seed, job.key, 2))
    device = data.x_train.device
    net = NB201Network(job.genotype, job.num_classes, job.channels, job.cells, job.in_channels)
    net = init_network(net, torch.Generator().manual_seed(job.init_seed)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=job.lr, momentum=job.momentum, weight_decay=job.weight_decay,
                          nesterov=job.momentum > 0)
    net.train()
    for step in range(job.steps):
        for group in opt.param_groups:
            group["lr"] = 0.5 * job.lr * (1 + math.cos(math.pi * step / job.steps))
        x, y = train.next_batch()
        loss = F.cross_entropy(net(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    return _accuracy(net, val.iter_epoch(), job.eval_batches)


@dataclass(frozen=True)
class FinalistTraining:
    """One finalist of a search, trained from scratch for whole epochs of an evaluation recipe (NAO-V2's final
    re-ranking): its genotype, the network's size, the recipe and the seeds of its draws."""

    genotype: Any
    num_classes: int
    in_channels: int
    layers: int  # cells (NB201: cells per stage)
    channels: int
    dropout: float
    recipe: TrainConfig  # epochs, learning rate, weight decay, auxiliary head, drop-path, clipping
    eval_images: int  # validation images (the same for every finalist of a run)
    seed: int  # the run's seed: picks the validation images; with the architecture, the batches and draws


def train_finalist(job: FinalistTraining, recipe: DataRecipe) -> float:
    """Train ``job``'s network from scratch for ``job.recipe.epochs`` passes over the weight split with the
    evaluation recipe's step (:func:`~nasforge.training.trainer.train_step`: SGD with momentum, cosine learning
    rate, auxiliary loss, drop-path, clipping); return its top-1 accuracy (%) in eval mode on ``eval_images``
    images of the architecture split (drawn from the run's seed alone, so every finalist sees the same ones).

    Initialisation, batches, augmentation, dropout and drop-path draw from seeds of (run seed, architecture), so
    the value depends on nothing but the finalist. It runs as this process's own work even inside a torchrun
    rank (its gradients are not averaged with the other ranks', which train other finalists)."""
    data, train_idx, val_idx = split_data(recipe)
    key = architecture_seed(job.genotype)
    train = _train_stream(recipe, data, train_idx, _seed(job.seed, key, 1))
    val = _eval_stream(recipe, data, val_idx, _seed(job.seed, 0, 2), first=job.eval_images)
    tc = job.recipe
    with ddp.alone(), torch.random.fork_rng(devices=[data.x_train.device] if data.x_train.is_cuda else []):
        torch.manual_seed(_seed(job.seed, key, 3))  # dropout and drop-path masks
        net = build_network(job.genotype, num_classes=job.num_classes, layers=job.layers, channels=job.channels,
                            auxiliary=tc.auxiliary, in_channels=job.in_channels, dropout=job.dropout)
        net = init_network(net, torch.Generator().manual_seed(_seed(job.seed, key, 4))).to(data.x_train.device)
        opt = torch.optim.SGD(net.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        for epoch in range(tc.epochs):
            begin_train_epoch(net, opt, tc, epoch)
            for _ in range(train.batches_per_epoch):
                train_step(net, opt, train.next_batch(), tc)
        return _accuracy(net, val.iter_epoch())
