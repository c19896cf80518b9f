"""A run directory: resolved config, metrics, log, checkpoints, exported genotypes, report.

Layout::

    config.yaml        the resolved config, with seed, nasforge version, git commit and device
    metrics.jsonl      one JSON object per epoch
    run.log            what happened, in words
    genotype.json      the result (search runs); genotypes/<name>.json for other exports
    checkpoints/last.pt  written atomically every epoch; --resume continues from it
    report.md          a readable summary with figures
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from ._version import __version__
from ._io import atomic_save, atomic_write_text
from .config import config_diff
from .errors import CheckpointError, NasforgeError

__all__ = ["RunDir", "environment_info"]

CHECKPOINT_FORMAT = "nasforge.checkpoint/1"
# keys that may change between a run and its resume without changing its result
_RESUME_FREE_KEYS = {"device", "data.data_dir", "data.download", "loop.progress"}


def environment_info(device: str) -> dict[str, Any]:
    return {"nasforge_version": __version__, "git_commit": _git_commit(), "torch": str(torch.__version__),
            "python": platform.python_version(), "device": device, "host": platform.node()}


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
        self.path.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"nasforge.run.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        handler = logging.FileHandler(self.path / "run.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(handler)

    @staticmethod
    def check(path: Path, resume: bool) -> None:
        """Refuse, before any work, to resume without a checkpoint or to overwrite another run."""
        ckpt = Path(path) / "checkpoints" / "last.pt"
        if resume and not ckpt.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {ckpt}; start the run without --resume, or point "
                                  f"--out at the folder of the run to continue")
        if not resume and (ckpt.is_file() or (Path(path) / "config.yaml").is_file()):
            raise NasforgeError(f"{path} already holds a run; pass --resume to continue it, or choose another --out")

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def log(self, message: str) -> None:
        self.logger.info(message)
        logging.getLogger("nasforge").info(message)

    def close(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)

    # -- config and metrics ------------------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any], env: Mapping[str, Any]) -> None:
        doc = dict(config)
        doc["environment"] = dict(env)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(doc, sort_keys=False))

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

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

    def load_checkpoint(self, config: Mapping[str, Any], map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load the last checkpoint, refusing one written by another kind of run or another config."""
        try:
            state = torch.load(self.checkpoint_path, map_location=map_location, weights_only=False)
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


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d
