"""The Ray backend: each candidate one Ray task with its CPU/GPU request, on this machine or a cluster.

Ray is an optional extra (``pip install 'nasforge[ray]'``), imported only when a :class:`RayExecutor` is made.
The executor joins the Ray session the process already has (a test's ``ray.init(num_cpus=2)``, a user's own
``ray.init``); otherwise it starts one (``address=None``: a local Ray on this machine; ``"auto"`` or
``"HOST:PORT"``: an existing cluster) and leaves it to Ray's exit handler, so several searches in one process
pay the start-up once. Workers on a cluster import nasforge themselves: install it on every node.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Callable, Iterator, Sequence

from ..errors import ConfigError
from .executor import Executor, Outcome, one_line, run_one

__all__ = ["RayExecutor", "ray_installed", "require_ray"]

_log = logging.getLogger(__name__)


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def require_ray(what: str = "--executor ray") -> None:
    """Raise the one-line install hint when Ray is missing."""
    if not ray_installed():
        raise ConfigError(f"{what} needs Ray, which is not installed: pip install 'nasforge[ray]'")


class RayExecutor(Executor):
    """Candidates as Ray tasks, at most ``workers`` in flight (Ray queues them by their resource requests).

    A task requesting ``cpus`` CPUs runs with ``threads`` torch threads (default: its CPUs, rounded, at least
    one) — the thread rule with the cluster's scheduler as the divider."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int = 1, threads: int | None = None) -> None:
        super().__init__(workers, threads)
        require_ray()
        import ray

        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address or None, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ConfigError(f"cannot start {where}: {one_line(exc)}") from None
        elif address:
            _log.info(f"Ray is already initialised in this process; using that session, not {address}")
        self._task = ray.remote(run_one)

    def describe(self) -> str:
        cpus = self._ray.cluster_resources().get("CPU", 0)
        return f"ray executor, {self.workers} task{'s' * (self.workers != 1)} in flight on {cpus:g} CPUs"

    def as_completed(self, fn: Callable[..., Any], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
                     gpus: float = 0) -> Iterator[tuple[int, Outcome]]:
        ray = self._ray
        threads = self.threads or max(1, round(cpus))
        task = self._task.options(num_cpus=cpus, num_gpus=gpus)
        shared_ref = None if shared is None else ray.put(shared)  # sent to the object store once, not per task
        queue = iter(enumerate(items))
        pending: dict[Any, int] = {}

        def submit_next() -> None:
            nxt = next(queue, None)
            if nxt is not None:
                pending[task.remote(fn, nxt[1], shared_ref, threads)] = nxt[0]

        for _ in range(self.workers):
            submit_next()
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died, or the task could not run at all
                outcome = Outcome(error=one_line(exc))
            submit_next()
            yield index, outcome
