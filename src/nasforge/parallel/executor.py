"""One small interface for evaluating many independent candidates: :class:`Executor` and its local backend.

Scoring, brief training and re-ranking all evaluate candidates that share nothing but their inputs, so every
such place hands a module-level function and its items to an :class:`Executor` and gets one :class:`Outcome`
per item back. An outcome holds the value or the candidate's error (its type and a one-line message): one
candidate that raises never costs the others their results. :meth:`Executor.as_completed` yields outcomes as
they finish, so callers can cache each one at once and a rerun does not redo it.

Threads: torch processes sharing a machine must not oversubscribe its cores (two 2-thread processes on 2 cores
slowed a GOLD-NAS epoch 70-fold), so every worker runs with ``cores // workers`` intra-op threads unless told
otherwise (:func:`default_threads`).
"""

from __future__ import annotations

import abc
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from ..errors import ConfigError
from ..memory import peak_rss_mib

__all__ = ["Outcome", "Executor", "LocalExecutor", "available_cores", "machine_cores", "default_threads", "run_one",
           "one_line"]

_MAX_MESSAGE = 300  # characters of an error message kept in an outcome (one line)
_DIED = "WorkerDied:"  # the error of candidates lost with a worker process


@dataclass(frozen=True)
class Outcome:
    """What evaluating one candidate gave: ``value``, or ``error`` (``"TypeName: message"``, one line).

    ``seconds`` is the call's wall time in the worker; ``worker`` the worker's process id; ``threads`` the torch
    intra-op threads it ran with; ``peak_rss_mib`` the worker process's peak resident memory so far (what the
    scaling benchmark reports per worker)."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    worker: int = 0
    threads: int = 0
    peak_rss_mib: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``, cut to a readable length."""
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return msg if len(msg) <= _MAX_MESSAGE else msg[:_MAX_MESSAGE - 1] + "…"


def run_one(fn: Callable[..., Any], item: Any, shared: Any, threads: int) -> Outcome:
    """Evaluate one candidate where it runs (a pool process, a Ray task or the caller): set the torch threads,
    call ``fn(item)`` (``fn(item, shared)`` when ``shared`` is not None) and catch what it raises, so a failing
    candidate becomes an outcome rather than a lost batch."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        value, error = (fn(item) if shared is None else fn(item, shared)), None
    except Exception as exc:  # noqa: BLE001 - any candidate failure is reported, not raised
        value, error = None, one_line(exc)
    return Outcome(value, error, time.perf_counter() - t0, os.getpid(), torch.get_num_threads(), peak_rss_mib())


def machine_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_cores() -> int:
    """This process's share of the cores: all of :func:`machine_cores`, or under torchrun the share of one of
    the ``LOCAL_WORLD_SIZE`` ranks on this node (so an executor inside a rank does not oversubscribe either)."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "WORLD_SIZE" in os.environ else 1
    return max(1, machine_cores() // max(1, ranks))


def default_threads(workers: int, cores: int | None = None) -> int:
    """The thread rule: ``cores // workers`` intra-op threads per worker, at least one."""
    return max(1, (cores or available_cores()) // max(1, workers))


class Executor(abc.ABC):
    """Evaluates independent candidates: ``fn`` must be a module-level function (it is pickled to workers)."""

    kind: str = ""

    def __init__(self, workers: int, threads: int | None) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        self.workers = workers
        self.threads = threads

    @abc.abstractmethod
    def as_completed(self, fn: Callable[..., Any], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
                     gpus: float = 0) -> Iterator[tuple[int, Outcome]]:
        """``(index into items, outcome)`` pairs in the order the candidates finish.

        ``shared``: one object every call needs (e.g. the scoring batch), passed as ``fn(item, shared)``; a
        backend may send it once rather than once per item. ``cpus``/``gpus``: what one candidate needs (Ray
        schedules by it; local processes share the machine)."""

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
            gpus: float = 0) -> list[Outcome]:
        """One outcome per item, in the items' order."""
        out: list[Outcome | None] = [None] * len(items)
        for i, outcome in self.as_completed(fn, items, shared=shared, cpus=cpus, gpus=gpus):
            out[i] = outcome
        return [o for o in out if o is not None]

    def describe(self) -> str:
        return f"{self.kind} executor, {self.workers} worker{'s' * (self.workers != 1)}"

    def close(self) -> None:  # noqa: B027 - backends with resources override it
        """Release what the executor holds (nothing for most backends)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Processes on this machine (``spawn``: no forked torch state), ``workers`` at a time, each with
    ``threads`` intra-op threads (default: :func:`default_threads`). With one worker, or one item, candidates
    run in the calling process with the same thread count, so results equal a pool's bit for bit.

    The pool starts on first use and lives until :meth:`close` (``with`` block), so several batches of
    candidates pay the workers' start-up (importing torch) once; a pool broken by a dying worker is replaced."""

    kind = "local"

    def __init__(self, workers: int = 1, threads: int | None = None) -> None:
        super().__init__(workers, threads)
        self.threads = threads or default_threads(workers)
        self._pool: ProcessPoolExecutor | None = None

    def as_completed(self, fn: Callable[..., Any], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
                     gpus: float = 0) -> Iterator[tuple[int, Outcome]]:
        if self.workers == 1 or len(items) <= 1:
            yield from self._in_process(fn, items, shared)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        futures: dict[Future[Outcome], int] = {self._pool.submit(run_one, fn, item, shared, self.threads): i
                                               for i, item in enumerate(items)}
        died = False
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = _result(future)
                    died |= outcome.error is not None and outcome.error.startswith(_DIED)
                    yield futures.pop(future), outcome
        finally:
            for future in futures:  # the caller stopped early (an interrupt): drop the queued candidates
                future.cancel()
            if died:
                self.close()  # the pool is broken: the next batch gets a fresh one

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _in_process(self, fn: Callable[..., Any], items: Iterable[Any], shared: Any) -> Iterator[tuple[int, Outcome]]:
        before = torch.get_num_threads()
        try:
            for i, item in enumerate(items):
                yield i, run_one(fn, item, shared, self.threads)
        finally:
            torch.set_num_threads(before)  # the caller's own thread count is the caller's business


def _result(future: Future[Outcome]) -> Outcome:
    """The outcome, or the error of a worker that died (killed, out of memory) while it held the candidate."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return Outcome(error=f"{_DIED} a worker process ended abruptly (killed, out of memory or crashed): "
                             f"{exc}"[:_MAX_MESSAGE])
    except Exception as exc:  # noqa: BLE001 - e.g. an item or value that cannot be pickled
        return Outcome(error=one_line(exc))
