"""The executor settings every method that evaluates independent candidates shares (KNAS's and random search's
selection training, NAO-V2's final re-ranking): one dataclass their configs inherit, so the keys and their valid
ranges are the same everywhere (``search.workers``, ``search.executor``, ``search.ray_address``,
``search.threads``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import option
from . import EXECUTOR_KINDS, check_executor, make_executor
from .executor import Executor

__all__ = ["ExecutorOptions"]


@dataclass
class ExecutorOptions:
    """Where independent candidates are evaluated: ``workers`` at once, in local processes or as Ray tasks."""

    # > 1: evaluate candidates this many at once (local processes or Ray tasks in flight)
    workers: int = option(1, ge=1)
    executor: str = option("local", choices=EXECUTOR_KINDS)  # ray: every candidate a Ray task (nasforge[ray])
    ray_address: str = ""  # Ray cluster to join ("auto", "HOST:6379"; "" = start a local Ray)
    threads: int = option(0, ge=0)  # torch threads per worker (0 = cores / workers locally, a task's CPUs on Ray)

    def validate_executor(self) -> None:
        """Refuse a bad executor choice in one line before any work starts."""
        check_executor(self.executor, self.ray_address or None, flag="executor")

    def make_executor(self) -> Executor:
        return make_executor(self.executor, self.workers, self.threads or None, self.ray_address or None)
