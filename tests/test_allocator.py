"""The caching-allocator launcher (nasforge.allocator): choice, errors, and a real re-execution under LD_PRELOAD."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge import allocator
from nasforge.errors import ConfigError
from nasforge.run import environment_info

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator._ACTIVE, allocator.ENV)}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _preloadable() -> str | None:
    """A real shared library every glibc >= 2.34 ships and that is safe to preload: proves the mechanism on
    machines without tcmalloc/jemalloc/mimalloc."""
    for d in allocator._lib_dirs():
        p = d / "libc_malloc_debug.so.0"
        if p.is_file():
            return str(p)
    return None


def _report(env: dict[str, str]) -> dict:
    res = subprocess.run([sys.executable, "-m", "nasforge.allocator"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_system_means_no_allocator_and_bad_choices_say_what_to_do():
    assert allocator.find("system") is None
    with pytest.raises(ConfigError, match="auto, system, tcmalloc, jemalloc, mimalloc"):
        allocator.find("hoard")
    with pytest.raises(ConfigError, match="no such file"):
        allocator.find("/nonexistent/libfast.so")


def test_a_named_allocator_that_is_missing_is_an_error(monkeypatch):
    monkeypatch.setattr(allocator, "_lib_dirs", lambda: [])
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(ConfigError, match="no jemalloc library found"):
        allocator.find("jemalloc")
    assert allocator.find("auto") is None  # auto falls back to the system allocator


def test_the_process_re_executes_under_the_chosen_library():
    lib = _preloadable()
    if lib is None:
        pytest.skip("no libc_malloc_debug.so.0 on this system (glibc < 2.34)")
    info = _report(_clean_env(**{allocator.ENV: lib}))
    assert info["loaded_here"] == str(Path(lib).resolve())
    assert _report(_clean_env(**{allocator.ENV: "system"}))["loaded_here"] is None


def test_auto_uses_an_installed_allocator_where_there_is_one():
    found = allocator.find("auto")
    if found is None:
        pytest.skip("no tcmalloc, jemalloc or mimalloc installed here")
    info = _report(_clean_env())
    assert info["loaded_here"] is not None and found.name in Path(info["loaded_here"]).name


def test_an_allocator_the_user_preloaded_is_left_alone(monkeypatch):
    def no_exec(*args, **kwargs):
        raise AssertionError("must not re-execute")
    monkeypatch.setattr(allocator.os, "execve", no_exec)
    monkeypatch.delenv(allocator._ACTIVE, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/opt/lib/libjemalloc.so.2")
    monkeypatch.setenv(allocator.ENV, "auto")
    allocator.reexec_under_allocator()  # returns: the user's choice stands
    monkeypatch.setenv("LD_PRELOAD", "")
    monkeypatch.setenv(allocator.ENV, "system")
    allocator.reexec_under_allocator()


def test_cli_training_commands_check_the_choice_and_keep_their_command_line(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "nasforge", "train", "--genotype", str(tmp_path / "none.json")],
                         capture_output=True, text=True, env=_clean_env(**{allocator.ENV: "hoard"}), timeout=120)
    assert bad.returncode == 2 and "NASFORGE_ALLOCATOR='hoard' is not known" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run([sys.executable, "-m", "nasforge", "presets"], capture_output=True, text=True,
                        env=_clean_env(**{allocator.ENV: "hoard"}), timeout=120)
    assert ok.returncode == 0  # commands that train nothing never consult the allocator
    lib = _preloadable()
    if lib is not None:  # re-executed with the same arguments: the same one-line error as without
        res = subprocess.run([sys.executable, "-m", "nasforge", "train", "--genotype", str(tmp_path / "none.json")],
                             capture_output=True, text=True, env=_clean_env(**{allocator.ENV: lib}), timeout=120)
        assert res.returncode == 2 and "is not a genotype file" in res.stderr, res.stderr


def test_runs_record_the_allocator():
    assert environment_info("cpu")["allocator"] == (allocator.loaded() or "system")


def test_the_report_command_says_what_is_wrong_in_one_line():
    res = subprocess.run([sys.executable, "-m", "nasforge.allocator"], capture_output=True, text=True,
                         env=_clean_env(**{allocator.ENV: "hoard"}), timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "nasforge: error: NASFORGE_ALLOCATOR='hoard' is not known; use one of auto, system, tcmalloc, jemalloc, "
        "mimalloc or a library's path"]
