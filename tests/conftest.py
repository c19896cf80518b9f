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
