"""``report.md`` for search and training runs: the result in words, tables and figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._io import atomic_write_text
from . import viz
from .config import RunConfig
from .genotypes import Genotype

__all__ = ["write_search_report", "write_train_report"]

_log = logging.getLogger(__name__)


def _table(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    keys = [k for k in keys if any(k in r for r in rows)]
    if not keys:
        return ""
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _figures(run_dir: Path, genotype: Genotype, history: Sequence[dict[str, Any]], curves: Sequence[str],
             weights: dict[str, np.ndarray] | None = None, op_names: Sequence[str] = ()) -> list[str]:
    """Draw the cells, the learning curves and the final architecture weights; return markdown lines."""
    lines = []
    viz.draw_genotype(genotype, run_dir / "cells.png", title=f"genotype {genotype.hash()[:8]}")
    lines.append("![cells](cells.png)\n")
    if history:
        viz.plot_curves(history, "epoch", curves, run_dir / "curves.png", title="per-epoch metrics")
        lines.append("![curves](curves.png)\n")
    if weights:
        viz.draw_weights_heatmap(weights, op_names, run_dir / "arch_weights.png", title="final op weights")
        lines.append("![architecture weights](arch_weights.png)\n")
    return lines


def write_search_report(run_dir: Path, cfg: RunConfig, outcome: Any, op_names: Sequence[str],
                        extra_sections: Sequence[str] = ()) -> Path:
    """Summary, derived cells drawn, curves, final weights heat map and the per-epoch table."""
    g: Genotype = outcome.genotype
    last = outcome.history[-1] if outcome.history else {}
    weights = {k: np.asarray(v) for k, v in outcome.arch_history[-1].items()} if outcome.arch_history else None
    parts = [
        f"# Search report: {cfg.method} on {cfg.data.dataset}\n",
        f"- epochs: {len(outcome.history)}, wall time: {outcome.wall_s:.1f} s, seed: {cfg.seed}, device: {cfg.device}",
        *([f"- final supernet accuracy on the architecture split: {_fmt(last['valid_acc'])} %"]
          if "valid_acc" in last else []),
        f"- genotype hash: `{g.hash()}` (saved as `genotype.json`; retrain it with "
        f"`nasforge train --genotype {run_dir / 'genotype.json'} --preset "
        f"{ {'nb201': 'nb201', 'nao': 'paper-nao'}.get(g.space, 'paper')}`)\n",
        "## Derived architecture\n", f"```\n{g}\n```\n",
    ]
    if outcome.extra:
        parts.append("Other exported architectures: " + ", ".join(
            f"[`{n}`](genotypes/{n}.json)" for n in outcome.extra) + "\n")
    parts += _figures(run_dir, g, outcome.history, ["train_acc", "valid_acc"], weights, op_names)
    parts += list(extra_sections)
    parts += ["## Per epoch\n", _table(outcome.history, ["epoch", "train_loss", "train_acc", "valid_loss",
                                                         "valid_acc", "lr", "epoch_s", "genotype_hash"])]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def write_train_report(run_dir: Path, cfg: RunConfig, genotype: Genotype, result: dict[str, Any],
                       history: Sequence[dict[str, Any]]) -> Path:
    tc = cfg.train
    parts = [
        f"# Training report: {genotype.hash()[:8]} on {cfg.data.dataset}\n",
        f"- test accuracy: **{result['test_acc']:.2f} %** (test loss {result['test_loss']:.4f})",
        f"- network: {tc.network}, {tc.layers} cells, C={tc.channels}: {result['params']:,} parameters without the "
        f"auxiliary head, {result['macs']:,} multiply-adds",
        f"- recipe: {tc.epochs} epochs, batch {cfg.data.batch_size}, lr {tc.lr} ({tc.lr_schedule}), cutout "
        f"{cfg.data.cutout}, drop-path {tc.drop_path}, auxiliary weight {tc.aux_weight if tc.auxiliary else 0}",
        f"- wall time: {result['wall_s']:.1f} s, seed {cfg.seed}, device {cfg.device}\n",
        "## Architecture\n", f"```\n{genotype}\n```\n",
    ]
    parts += _figures(run_dir, genotype, history, ["train_acc", "test_acc"])
    parts += ["## Per epoch\n", _table(history, ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                                                 "epoch_s"])]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
