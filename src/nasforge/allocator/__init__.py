"""Run nasforge's own processes under a caching memory allocator (issue 13).

Why: a search step allocates and frees several GB of tensors of a few hundred sizes. glibc's ``malloc`` serves
them from heaps it cannot return or reuse well (fragmentation), so at width 8 / 5 cells / batch 32 the steps add
~620 MiB of resident memory where the live tensors need under 300 MiB; telling glibc to return freed blocks at
once halves that but costs 2.5x the time in page faults (docs/performance.md). A size-class allocator
(tcmalloc, jemalloc, mimalloc) keeps freed blocks for reuse without fragmenting: measured side by side on the
same machine it lowered the peak of that step from ~940 to ~670 MiB (tcmalloc) and, at the paper's 16/8/64, from
3.1 GiB to 1.6 GiB and the time from 18.4 to 13.4 s per iteration. Numbers do not change; only where memory
comes from.

An allocator has to be in place before the interpreter starts, so the ``nasforge`` command (and the benchmark
scripts) re-execute themselves once with ``LD_PRELOAD`` naming the library, the way ``torch.backends.xeon.run_cpu``
does. ``import nasforge`` never does this: a library must not change its host process's allocator (Python API
users set ``LD_PRELOAD`` themselves; ``python -m nasforge.allocator`` prints the line to use).

``NASFORGE_ALLOCATOR`` chooses: ``auto`` (default: the first found of tcmalloc, jemalloc, mimalloc, else the
system's), ``system`` (never re-execute), one of those names (an error if it is not installed), or a path to a
shared library. Linux only; elsewhere ``auto`` keeps the system allocator.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

__all__ = ["Allocator", "ENV", "find", "loaded", "reexec_under_allocator"]

ENV = "NASFORGE_ALLOCATOR"
_ACTIVE = "_NASFORGE_ALLOCATOR_ACTIVE"  # set for the re-executed process: it never re-executes again


@dataclass(frozen=True)
class Allocator:
    name: str
    path: str
    #: settings the allocator reads from the environment; applied only where the user has not set them
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` plus what a process needs to start under this allocator: the library first in
        ``LD_PRELOAD``, its settings where ``base`` has none, and the marker that stops a second re-execution."""
        env = dict(base)
        env["LD_PRELOAD"] = " ".join(p for p in (self.path, env.get("LD_PRELOAD", "")) if p)
        env[_ACTIVE] = self.path
        for key, value in self.env.items():
            env.setdefault(key, value)
        return env


# In order of preference, as measured (docs/performance.md, 8/5/32, alternating): tcmalloc fastest at ~670 MiB,
# jemalloc (without its decay purging, which page-faults like glibc's trimming: 3.2 s against 2.0 s) ~720 MiB,
# mimalloc ~700 MiB but no faster than glibc.
_KNOWN: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "tcmalloc": (("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so"), {}),
    "jemalloc": (("libjemalloc.so.2", "libjemalloc.so"), {"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}),
    "mimalloc": (("libmimalloc.so.3", "libmimalloc.so.2", "libmimalloc.so"), {}),
}
CHOICES = ("auto", "system", *_KNOWN)


def _lib_dirs() -> list[Path]:
    """Where shared libraries live: this environment's prefix (conda), pip wheels that ship one (the
    ``cmeel-mimalloc`` wheel's ``cmeel.prefix/lib``), then the system's directories."""
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [Path(sys.prefix) / "lib"]
    dirs += [Path(p) / "cmeel.prefix" / "lib" for p in sys.path if p]
    for root in ("/usr/local/lib", "/usr/lib", "/lib"):
        if arch:
            dirs.append(Path(root) / arch)
        dirs.append(Path(root))
    dirs.append(Path("/usr/lib64"))
    return dirs


def _locate(name: str) -> Allocator | None:
    files, env = _KNOWN[name]
    for d in _lib_dirs():
        for f in files:
            if (d / f).is_file():
                return Allocator(name, str(d / f), dict(env))
    found = ctypes.util.find_library(name)  # ldconfig's cache: a soname the dynamic loader resolves itself
    return Allocator(name, found, dict(env)) if found else None


def find(choice: str | None = None) -> Allocator | None:
    """The allocator ``choice`` (default: ``$NASFORGE_ALLOCATOR``, else ``auto``) names; None for the system's."""
    choice = (choice if choice is not None else os.environ.get(ENV, "auto")).strip() or "auto"
    if choice == "system" or (choice == "auto" and not sys.platform.startswith("linux")):
        return None
    if choice == "auto":
        for name in _KNOWN:
            found = _locate(name)
            if found is not None:
                return found
        return None
    if choice in _KNOWN:
        found = _locate(choice)
        if found is None:
            raise ConfigError(f"{ENV}={choice}: no {choice} library found; install it (Debian: "
                              f"libtcmalloc-minimal4 or libjemalloc2; pip: cmeel-mimalloc) or set {ENV}=auto")
        return found
    if "/" in choice or choice.endswith(".so") or ".so." in choice:
        if not Path(choice).is_file():
            raise ConfigError(f"{ENV}={choice}: no such file; give a shared library's path or one of "
                              f"{', '.join(CHOICES)}")
        return Allocator(Path(choice).name, str(Path(choice).resolve()))
    raise ConfigError(f"{ENV}={choice!r} is not known; use one of {', '.join(CHOICES)} or a library's path")


def loaded() -> str | None:
    """The allocator library this process runs under: the one nasforge preloaded, or a known allocator the
    user preloaded; None for the system's (or where ``/proc/self/maps`` cannot be read)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    active = os.environ.get(_ACTIVE)
    if active and Path(active).name in maps:
        return active
    for line in maps.splitlines():
        path = line.rsplit(None, 1)[-1] if line.strip() else ""
        if _preloads_an_allocator(Path(path).name):
            return path
    return None


def _preloads_an_allocator(names: str) -> bool:
    return any(f"lib{n}" in names for n in _KNOWN)


def reexec_under_allocator() -> None:
    """Re-execute this process (same interpreter, same command line, ``sys.orig_argv``) with the chosen
    allocator preloaded, once; return without doing anything when there is nothing to change (``system``, none
    found, already running under it, ``LD_PRELOAD`` already naming an allocator). Call it first thing in a
    program's entry point, never from library code. Raises :class:`ConfigError` for a bad ``$NASFORGE_ALLOCATOR``."""
    if os.environ.get(_ACTIVE) is not None or _preloads_an_allocator(os.environ.get("LD_PRELOAD", "")):
        return
    chosen = find()
    if chosen is None:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], chosen.environment(os.environ))
    except OSError:  # cannot re-execute (odd launcher): run on with the system allocator
        return


def _main() -> int:
    """``python -m nasforge.allocator``: which allocator the ``nasforge`` command runs under (this module
    re-executes itself the same way) and the line for your own scripts."""
    try:
        reexec_under_allocator()
        chosen = find()
    except ConfigError as exc:
        print(f"nasforge: error: {exc}", file=sys.stderr)
        return 2
    info = {"choice": os.environ.get(ENV) or "auto", "would_use": chosen.path if chosen else None,
            "loaded_here": loaded(),
            "ld_preload_line": (f"LD_PRELOAD={chosen.path} " + " ".join(f"{k}={v}" for k, v in chosen.env.items())
                                ).strip() if chosen else None}
    print(json.dumps(info))
    return 0
