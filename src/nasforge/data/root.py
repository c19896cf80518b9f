"""Where datasets live on disk.

One rule for every dataset, so that the CLI, tests and CI agree: an explicit ``data_dir`` wins, then the
``NASFORGE_DATA`` environment variable (what CI and shared machines set), then a per-user cache folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "resolve_data_root"]

DATA_ENV_VAR = "NASFORGE_DATA"


def resolve_data_root(data_dir: str | Path | None = None) -> Path:
    """Return the folder that holds (or will hold) the datasets.

    Nothing is created here: a read-only shared folder must stay usable, and only a download needs to write.

    Args:
        data_dir: an explicit folder (``--data-dir`` / ``data.data_dir``); ``None`` or ``""`` falls through.

    Returns:
        ``data_dir`` if given, else ``$NASFORGE_DATA`` if set and non-empty, else ``~/.cache/nasforge/data``.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "nasforge" / "data"
