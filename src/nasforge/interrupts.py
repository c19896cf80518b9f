"""Ctrl-C and SIGTERM that never cut a write in half.

:func:`interruptible` turns SIGINT and SIGTERM into :class:`Interrupted` (a ``KeyboardInterrupt``) for the life
of a run; :func:`critical` defers either signal until the block it guards has finished, so an atomic write
(temporary file, fsync, rename) always completes, and the run stops right after it. Signal handlers are
process-wide by nature: they are installed only from the main thread and restored when the run ends.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

__all__ = ["Interrupted", "interruptible", "critical"]

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; ``signum`` says which, the message what to do next."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + self.signum


class _Deferral:
    """How deep inside :func:`critical` blocks the main thread is, and a signal that arrived meanwhile."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None


_deferral = _Deferral()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _deferral.depth > 0:
        _deferral.pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (outside :func:`critical` sections)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _HANDLED}
    for s in _HANDLED:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def critical() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends; then raise the deferred one (if no other error is raised)."""
    _deferral.depth += 1
    try:
        yield
    except BaseException:
        _deferral.depth -= 1
        raise
    _deferral.depth -= 1
    if _deferral.depth == 0 and _deferral.pending is not None:
        signum, _deferral.pending = _deferral.pending, None
        raise Interrupted(signum)
