"""Atomic file writes: write to a temporary file in the same folder, then rename, so a kill never leaves a
half-written file behind; a signal arriving meanwhile waits for the rename (:func:`~nasforge.interrupts.critical`),
and a full disk ends in :class:`~nasforge.errors.DiskFullError` with the previous file intact."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import DiskFullError
from .interrupts import critical

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_save", "append_text", "raise_if_disk_full"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def raise_if_disk_full(exc: OSError, path: Path) -> None:
    """Turn "no space left" (or a file-size limit) into one clear line; other OS errors pass through."""
    if exc.errno in _NO_SPACE:
        raise DiskFullError(f"no space left on the device writing {path} ({os.strerror(exc.errno)}); the files "
                            f"written before are intact: free some space, then continue with --resume") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with critical():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise_if_disk_full(exc, path)
            raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise_if_disk_full(exc, path)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save(path: Path, writer: Callable[[io.BytesIO], Any]) -> None:
    """``writer(buffer)`` fills a buffer (e.g. ``torch.save(obj, buf)``); the bytes land atomically at ``path``."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


def append_text(path: Path, text: str) -> None:
    """Append ``text`` whole or not at all: on a failed write the file is cut back to its previous length."""
    path = Path(path)
    data = text.encode("utf-8")
    with critical():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise_if_disk_full(exc, path)
            raise
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise_if_disk_full(exc, path)
            raise
        finally:
            os.close(fd)
