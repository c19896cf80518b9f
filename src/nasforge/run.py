"""A run directory: resolved config, metrics, log, checkpoints, exported genotypes, report.

Layout::

    config.yaml        the resolved config, with seed, nasforge version, git commit and device
    metrics.jsonl      one JSON object per epoch
    run.log            what happened, in words
    genotype.json      the result (search runs); genotypes/<name>.json for other exports
    checkpoints/last.pt  written atomically every epoch; --resume continues from it
    report.md          a readable summary with figures
    run.lock           held (flock) by the one process writing the folder; names its PID and host

Safety: every file is written atomically (temporary name, fsync, rename) and a signal waits for the rename;
checkpoints are loaded with ``weights_only=True``, so a crafted file cannot run code; one process at a time
writes a folder; a fresh run that fails before its first checkpoint leaves nothing behind.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pickle
import platform
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ._version import __version__
from ._io import append_text, atomic_save, atomic_write_text
from .config import config_diff
from .allocator import loaded
from .errors import CheckpointError, NasforgeError, RunLockedError

__all__ = ["RunDir", "environment_info", "check_writable"]

CHECKPOINT_FORMAT = "nasforge.checkpoint/1"
# keys that may change between a run and its resume without changing its result
_RESUME_FREE_KEYS = {"device", "data.data_dir", "data.download", "loop.progress"}
_MIN_FREE_BYTES = 2 * 2**20  # refuse to start where not even a small checkpoint fits (a full disk)


def environment_info(device: str) -> dict[str, Any]:
    return {"nasforge_version": __version__, "git_commit": _git_commit(), "torch": str(torch.__version__),
            "python": platform.python_version(), "device": device, "host": platform.node(),
            "allocator": loaded() or "system"}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    """Owns one run's folder. ``resume=True`` requires an existing checkpoint; ``resume=False`` refuses to
    overwrite a folder that already holds a run."""

    def __init__(self, path: str | Path, kind: str, resume: bool = False) -> None:
        self.path = Path(path)
        self.kind = kind
        self.resume = resume
        self.check(self.path, resume)
        existed = self.path.exists()
        before = set(os.listdir(self.path)) if existed else set()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NasforgeError(f"cannot create run folder {self.path}: {exc.strerror}; choose another --out") from None
        self._lock = _RunLock(self.path / "run.lock")
        try:
            self.check(self.path, resume)  # again, under the lock: another process may have finished a run here
        except NasforgeError:
            self._lock.release()
            raise
        self._created = None if existed else self.path  # what discard() may remove: the folder, or ...
        self._preexisting = before  # ... only the entries it did not hold before
        self.checkpointed = resume
        self.logger = logging.getLogger(f"nasforge.run.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        handler = _QuietFileHandler(self.path / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(handler)

    @staticmethod
    def check(path: Path, resume: bool) -> None:
        """Refuse, before any work, to resume without a checkpoint, to overwrite another run, or to start in a
        folder that cannot be created or written."""
        path = Path(path)
        ckpt = path / "checkpoints" / "last.pt"
        if resume and not ckpt.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {ckpt}; start the run without --resume, or point "
                                  f"--out at the folder of the run to continue")
        if not resume and (ckpt.is_file() or (path / "config.yaml").is_file()):
            raise NasforgeError(f"{path} already holds a run; pass --resume to continue it, or choose another --out")
        check_writable(path)

    @property
    def holder(self) -> str:
        return self._lock.holder

    def discard(self) -> None:
        """Remove what this run wrote, when it failed before its first checkpoint (nothing to resume)."""
        if self.checkpointed:
            return
        self.close()
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - self._preexisting:
            target = self.path / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def log(self, message: str) -> None:
        self.logger.info(message)
        logging.getLogger("nasforge").info(message)

    def close(self) -> None:
        """Close the log and release the folder (idempotent)."""
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)
        self._lock.release()

    # -- config and metrics ------------------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any], env: Mapping[str, Any]) -> None:
        doc = dict(config)
        doc["environment"] = dict(env)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(doc, sort_keys=False))

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        append_text(self.path / "metrics.jsonl", json.dumps(row) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, rows: int) -> None:
        """Drop metric rows written after the checkpoint we resume from (the epoch in progress is redone)."""
        kept = self.metrics()[:rows]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return path

    # -- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], config: Mapping[str, Any]) -> None:
        payload = {"format": CHECKPOINT_FORMAT, "kind": self.kind, "config": dict(config), **state}
        atomic_save(self.checkpoint_path, lambda buf: torch.save(payload, buf))
        self.checkpointed = True

    def load_checkpoint(self, config: Mapping[str, Any], map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load the last checkpoint, refusing one written by another kind of run or another config."""
        try:
            state = torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            text = str(exc).lower()
            if "weights only" not in text or "unsupported global" not in text:  # garbage, not a crafted object
                raise CheckpointError(f"cannot read checkpoint {self.checkpoint_path} (UnpicklingError); it is "
                                      f"corrupt or not a nasforge checkpoint — delete it and start again") from None
            raise CheckpointError(f"refusing to load {self.checkpoint_path}: it holds Python objects beyond "
                                  f"tensors and plain data, which could run code on loading; nasforge never writes "
                                  f"those — delete the file unless you trust its source") from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
            raise CheckpointError(f"cannot read checkpoint {self.checkpoint_path} ({type(exc).__name__}); it is "
                                  f"corrupt or not a nasforge checkpoint — delete it and start again") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{self.checkpoint_path} is not a nasforge checkpoint")
        if state.get("kind") != self.kind:
            raise CheckpointError(f"{self.checkpoint_path} is a {state.get('kind')} checkpoint, not a {self.kind} "
                                  f"one; resume it with 'nasforge {state.get('kind')}'")
        diff = [k for k in config_diff(state["config"], config) if k not in _RESUME_FREE_KEYS]
        if diff:
            shown = ", ".join(f"{k} (was {_get(state['config'], k)!r}, now {_get(config, k)!r})" for k in diff[:4])
            raise CheckpointError(f"cannot resume: the config differs from the checkpoint's in {shown}; resume with "
                                  f"the original options or start a new run with another --out")
        return state


class FollowerRun:
    """What ranks other than 0 of a torchrun job hold instead of a :class:`RunDir`: the same interface, but
    nothing is written, locked or logged — rank 0 alone owns the folder. Checkpoints are read by rank 0 and
    handed to the others (:func:`nasforge.parallel.distributed.broadcast_object`), so a follower never reads
    the folder either and nodes need no shared disk."""

    def __init__(self, path: str | Path, kind: str, resume: bool = False) -> None:
        self.path = Path(path)
        self.kind = kind
        self.resume = resume
        self.checkpointed = resume

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def log(self, message: str) -> None:
        logging.getLogger("nasforge.follower").debug(message)

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass

    def write_config(self, config: Mapping[str, Any], env: Mapping[str, Any]) -> None:
        pass

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        pass

    def truncate_metrics(self, rows: int) -> None:
        pass

    def write_json(self, name: str, data: Any) -> Path:
        return self.path / name

    def save_checkpoint(self, state: dict[str, Any], config: Mapping[str, Any]) -> None:
        self.checkpointed = True

    def load_checkpoint(self, config: Mapping[str, Any], map_location: str | torch.device = "cpu") -> dict[str, Any]:
        raise CheckpointError("only rank 0 reads the checkpoint; the other ranks receive it from rank 0")


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d


def check_writable(path: Path) -> None:
    """Raise one line if ``path`` (a folder, maybe not yet existing) cannot be created and written.

    Probes the nearest existing ancestor with a temporary folder that is removed at once, so permission,
    read-only file systems, "not a directory" and pseudo file systems are all caught before a run starts.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NasforgeError(f"cannot use {path} as run folder: it is a file, not a directory; choose another --out")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NasforgeError(f"cannot create run folder {path}: {ancestor} is a file, not a directory; choose "
                            f"another --out")
    try:
        probe = tempfile.mkdtemp(dir=ancestor, prefix=".nasforge-probe-")
        os.rmdir(probe)
    except OSError as exc:
        reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device"}.get(
            exc.errno, exc.strerror or type(exc).__name__)
        raise NasforgeError(f"cannot create run folder {path}: {reason} (in {ancestor}); choose another --out"
                            ) from None
    if shutil.disk_usage(ancestor).free < _MIN_FREE_BYTES:
        raise NasforgeError(f"cannot start a run in {path}: no space left on the device (less than "
                            f"{_MIN_FREE_BYTES // 2**20} MiB free in {ancestor}); free some space or choose "
                            f"another --out")


class _RunLock:
    """An exclusive ``flock`` on ``run.lock`` for the life of a run. The file names the holder (PID, host).

    The kernel drops the lock when its process dies, so a lock file left by a dead process is simply taken
    over; a live holder makes the second process stop at once with one line naming it. ``flock`` is reliable on
    local file systems; on network file systems (NFS) it may be advisory or local to one host.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read_holder(fd)
                os.close(fd)
                raise RunLockedError(f"{path.parent} is in use by another nasforge process ({other}); wait for it "
                                     f"to finish or stop it, or choose another --out") from None
            if _same_file(fd, path):  # not unlinked by a holder that finished meanwhile
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def _read_holder(fd: int) -> str:
    try:
        pid, _, host = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
    except OSError:
        return "unknown holder"
    return f"pid {pid} on {host}" if pid else "unknown holder"


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class _QuietFileHandler(logging.FileHandler):
    """``run.log`` is best effort: a failed log write (a full disk) must not print a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass
