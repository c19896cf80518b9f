"""Scale-out: evaluating many independent candidates in parallel (local processes or Ray).

:func:`make_executor` turns the command line's ``--executor {local,ray} --workers N --threads T --ray-address A``
(or a config's ``search.executor`` ...) into an :class:`Executor`; every place that evaluates many independent
candidates goes through it. The torch.distributed helpers (rank, world size, all-reduce of architecture state)
belong here too, beside the executor, and follow the same thread rule (:func:`default_threads`).
"""

from __future__ import annotations

from ..errors import ConfigError
from .executor import Executor, LocalExecutor, Outcome, available_cores, default_threads, one_line, run_one
from .ray_executor import RayExecutor, ray_installed, require_ray

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "Outcome", "EXECUTOR_KINDS", "make_executor",
           "check_executor", "available_cores", "default_threads", "ray_installed", "require_ray", "one_line",
           "run_one"]

EXECUTOR_KINDS = ("local", "ray")


def check_executor(kind: str, ray_address: str | None = None, flag: str = "--executor") -> None:
    """Check an executor choice without starting anything (so bad input fails before any work)."""
    if kind not in EXECUTOR_KINDS:
        raise ConfigError(f"{flag} {kind!r}: choose one of: {', '.join(EXECUTOR_KINDS)}")
    if kind == "ray":
        require_ray(f"{flag} ray")
    elif ray_address:
        raise ConfigError(f"a Ray address ({ray_address}) needs {flag} ray")


def make_executor(kind: str = "local", workers: int = 1, threads: int | None = None,
                  ray_address: str | None = None) -> Executor:
    """The executor for ``kind``: ``local`` (``workers`` processes here) or ``ray`` (``workers`` tasks in flight
    on a local Ray or the cluster at ``ray_address``). ``threads``: torch threads per worker (None: the rule)."""
    check_executor(kind, ray_address)
    if kind == "ray":
        return RayExecutor(ray_address, workers, threads)
    return LocalExecutor(workers, threads)
