"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-data folder ($NASFORGE_DATA, else ../shared/data next to the repo); skips without CIFAR-10."""
    root = Path(os.environ.get("NASFORGE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    if not (root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real data not available: no cifar-10-batches-py in {root} (set NASFORGE_DATA to the shared "
                    f"data folder)")
    return root


@pytest.fixture(autouse=True, scope="session")
def _private_score_cache(tmp_path_factory: pytest.TempPathFactory):
    """Proxy scores are cached on disk ($NASFORGE_CACHE, else ~/.cache/nasforge/scores): keep the tests' scores
    out of the user's cache (child processes of CLI tests inherit the variable)."""
    old = os.environ.get("NASFORGE_CACHE")
    os.environ["NASFORGE_CACHE"] = str(tmp_path_factory.mktemp("score-cache"))
    yield
    if old is None:
        os.environ.pop("NASFORGE_CACHE", None)
    else:
        os.environ["NASFORGE_CACHE"] = old



@pytest.fixture
def interrupt_after(monkeypatch):
    """``interrupt_after("save_checkpoint", n)``: the n-th call of that ``RunDir`` method does its work, then
    raises KeyboardInterrupt, as a kill right after it would. ``interrupt_after.restore()`` undoes it."""
    from nasforge.run import RunDir

    def arm(name: str, n: int) -> None:
        original = getattr(RunDir, name)
        calls = {"n": 0}

        def wrapped(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return out

        monkeypatch.setattr(RunDir, name, wrapped)

    arm.restore = monkeypatch.undo
    return arm
