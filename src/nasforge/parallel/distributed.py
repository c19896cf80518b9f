"""Data-parallel runs under ``torchrun``: who this process is, and the few collectives a search or a training needs.

nasforge runs data-parallel the way DistributedDataParallel does — every rank holds the whole model, sees its own
slice of every batch, and all ranks average their gradients before each optimizer step — but it calls the
collectives itself instead of wrapping the model in ``DistributedDataParallel``, for three reasons:

- the architecture step asks autograd for gradients with ``torch.autograd.grad`` (first order, and every term of
  the second-order hypergradient), which bypasses DDP's reducer hooks;
- GOLD-NAS deletes operators for good in the middle of a run, and P-DARTS replaces its supernet between stages;
  DDP fixes its parameter list when it is built;
- the weight split and the architecture split have different batch sizes at the end of an epoch; averaging has
  to weight each rank by the samples it actually saw (:func:`average_gradients` does).

Batch statistics are synchronised across ranks (:mod:`nasforge.ops.norm`), so one step of ``N`` ranks with ``B``
images each is the step of one process with ``N·B`` images, up to float summation order. Every rank therefore
holds bit-identical weights, architecture parameters and BN statistics; :func:`check_same` verifies that once
per epoch.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment and no process group) everything here is a no-op for
a world of one, so library code calls these helpers unconditionally.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.distributed as dist

from ..errors import ConfigError, NasforgeError
from .executor import default_threads, machine_cores

__all__ = ["DistContext", "DivergedRanks", "current", "setup", "teardown", "average_gradients", "all_reduce_sum",
           "broadcast_object", "broadcast_module", "average_buffers", "check_same", "state_digest", "shard_batch",
           "rank_seed", "reduce_means", "launched_by_torchrun", "alone", "all_gather_objects"]


class DivergedRanks(NasforgeError):
    """Two ranks hold different architecture state: their decisions would differ from here on."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (``rank`` 0 of 1 outside ``torchrun``)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        """True when there is more than one rank to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, logs and shows progress bars."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process started by ``torchrun`` (or anything that sets its environment)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


_ALONE = [0]  # > 0 inside :func:`alone`


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Work of this rank alone (a candidate trained in the rank's own process while the other ranks train
    theirs): inside, :func:`current` is a world of one, so the helpers here leave the other ranks alone."""
    _ALONE[0] += 1
    try:
        yield
    finally:
        _ALONE[0] -= 1


def current() -> DistContext:
    """The context of the initialised default process group (a world of one when there is none, or inside
    :func:`alone`)."""
    if _ALONE[0] or not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                       local_world)


def setup(device: torch.device, threads: int | None = None) -> tuple[DistContext, torch.device, bool]:
    """Join the process group ``torchrun`` describes in the environment, if any, and pick this rank's device.

    Returns ``(context, device, owned)``: ``device`` maps ``cuda`` to ``cuda:LOCAL_RANK`` (one GPU per rank);
    ``owned`` is True when this call created the group (so :func:`teardown` should destroy it). The backend is
    ``nccl`` for CUDA tensors (with ``gloo`` beside it for CPU tensors) and ``gloo`` otherwise. Each rank gets
    ``cores // ranks on this node`` torch threads unless ``threads`` says otherwise, so ranks sharing a machine do
    not oversubscribe its cores.
    """
    if not launched_by_torchrun():
        return current(), device, False
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if device.type == "cuda":
        if device.index is not None and world > 1:
            raise ConfigError(f"--device {device} pins every rank to one GPU; under torchrun pass --device cuda and "
                              f"each rank takes the GPU of its local rank")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); start "
                              f"torchrun with --nproc-per-node at most the number of GPUs")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.set_num_threads(threads or default_threads(local_world, machine_cores()))
    owned = False
    if world > 1 and not dist.is_initialized():
        # CUDA: nccl for the tensors on the GPUs, gloo beside it for the few CPU ones (metric sums, counts, object
        # gathers); nccl alone refuses CPU tensors
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30),
                                **({"device_id": device} if device.type == "cuda" else {}))
        owned = True
    return current(), device, owned


def teardown(owned: bool) -> None:
    """Leave the process group created by :func:`setup` (a no-op for one made by the caller)."""
    if owned and dist.is_initialized():
        _PATIENT_GROUP.clear()
        dist.destroy_process_group()


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1).to(torch.float64 if t.dtype == torch.float64 else torch.float32)
                      for t in tensors])


def _unflat_into(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for t in tensors:
        n = t.numel()
        out.append(flat[i:i + n].view_as(t).to(t.dtype))
        i += n
    return out


def average_gradients(grads: Sequence[torch.Tensor | None], samples: int) -> list[torch.Tensor | None]:
    """The gradients of the whole global batch: Σ_r n_r·g_r / Σ_r n_r over the ranks, with ``samples`` = n_r the
    images this rank's loss averaged over (ranks may hold unequal slices of a short last batch). One collective
    for all tensors; ``None`` entries (parameters the step did not use, the same on every rank) stay ``None``.
    Returns the averaged tensors (new tensors; the world of one returns its input)."""
    ctx = current()
    if not ctx.active:
        return list(grads)
    present = [g for g in grads if g is not None]
    if not present:
        return list(grads)
    weight = torch.tensor([float(samples)], device=present[0].device)
    flat = torch.cat([_flat(present) * float(samples), weight])
    dist.all_reduce(flat)
    total = flat[-1]
    if float(total) <= 0:
        raise NasforgeError("no rank saw any sample in this step; lower the number of processes")
    averaged = iter(_unflat_into(flat[:-1] / total, present))
    return [None if g is None else next(averaged) for g in grads]


def average_param_grads(params: Iterable[torch.Tensor], samples: int) -> None:
    """:func:`average_gradients` of the ``.grad`` of ``params``, written back in place (before clipping and the
    optimizer step, so both see the global gradient)."""
    if not current().active:
        return
    params = [p for p in params if p.grad is not None]
    for p, g in zip(params, average_gradients([p.grad for p in params], samples)):
        p.grad = g


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum a few numbers over the ranks (metrics, counts); the world of one returns them unchanged."""
    if not current().active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def reduce_means(means: Mapping[str, float]) -> dict[str, float]:
    """Average per-rank metric means over the ranks (each rank ran the same number of steps)."""
    ctx = current()
    if not ctx.active:
        return dict(means)
    keys = sorted(means)
    sums = all_reduce_sum([means[k] for k in keys])
    return {k: s / ctx.world_size for k, s in zip(keys, sums)}


_PATIENT_GROUP: list[Any] = []
#: how long ranks wait for each other in :func:`all_gather_objects` with ``patient`` (each trains whole candidates)
PATIENT_TIMEOUT = datetime.timedelta(hours=48)


def all_gather_objects(obj: Any, patient: bool = False) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for a world of one).

    ``patient``: the ranks may arrive hours apart (each trained its own share of candidates), longer than the
    process group's 30-minute timeout, so the gather goes through a gloo group that waits
    :data:`PATIENT_TIMEOUT` (a crashed rank still ends the job: torchrun stops the others)."""
    ctx = current()
    if not ctx.active:
        return [obj]
    group = None
    if patient:
        if not _PATIENT_GROUP:
            _PATIENT_GROUP.append(dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT))
        group = _PATIENT_GROUP[0]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj, group=group)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (e.g. a checkpoint that only rank 0 read from disk). The object
    travels between the run's own processes; nothing read from disk is unpickled on the way."""
    if not current().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (as DDP does when it is built)."""
    if not current().active:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


@torch.no_grad()
def average_buffers(module: torch.nn.Module) -> None:
    """Average the floating-point buffers (BN running statistics) over the ranks, so that ranks that normalised
    with their own batch statistics hold the same model again (one collective)."""
    if not current().active:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _flat(buffers)
    dist.all_reduce(flat)
    flat /= current().world_size
    for b, v in zip(buffers, _unflat_into(flat, buffers)):
        b.copy_(v)


def state_digest(tensors: Mapping[str, torch.Tensor], extra: str = "") -> str:
    """A short hash of named tensors (bit-exact) and a string, to compare state across ranks."""
    h = hashlib.sha256(extra.encode())
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def check_same(digest: str, what: str) -> None:
    """Stop every rank with one line when the ranks' ``digest``s of ``what`` differ."""
    ctx = current()
    if not ctx.active:
        return
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, (digest, socket.gethostname()))
    if len({d for d, _ in gathered}) > 1:
        shown = ", ".join(f"rank {r} ({host}): {d}" for r, (d, host) in enumerate(gathered))
        raise DivergedRanks(f"the ranks hold different {what} ({shown}); their decisions would differ from here on. "
                            f"This is a bug in nasforge or a non-deterministic kernel: rerun with "
                            f"--set deterministic=true and report it")


def shard_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """This rank's contiguous slice of a global batch (ranks hold ⌈n/N⌉ or ⌊n/N⌋ samples; a rank may hold none
    when the batch is smaller than the world)."""
    ctx = current()
    if not ctx.active:
        return batch
    n = len(batch[0])
    lo, hi = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    return tuple(t[lo:hi] for t in batch)


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of rank ``rank``'s own random draws (dropout, drop-path) in ``epoch``: different per rank, the
    same for a given (seed, rank, epoch), so a run resumed with any number of processes draws as a fresh run
    with that number would."""
    digest = hashlib.sha256(f"nasforge:{seed}:{rank}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
