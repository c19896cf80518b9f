"""P-DARTS: Progressive Differentiable Architecture Search (Chen, Xie, Wu, Tian, ICCV 2019;
``chenxin061/pdarts`` b880e87). METHODS.md §2.

The search runs in stages of growing depth (5 → 11 → 17 cells) on a shrinking op set (8 → 5 → 3 ops per
edge, then 1 at derivation). Every stage is a fresh supernet — new weights, new alphas, new optimizers and a
cosine schedule restarted within the stage — that instantiates only the ops surviving on each edge, so
dropped ops cost neither time nor memory; only the surviving-op masks carry over. Each stage begins with
weight-only warm-up epochs, then alternates first-order architecture steps (Adam, gradient clipped to 5) and
weight steps. Element-wise dropout after the identity skip-connects regularises the search, with a per-stage
initial rate that decays within the stage. The final normal cell keeps at most ``skip_cap`` skip-connects;
the genotype for every cap from 8 down to 0 is exported too (``genotypes/skip_cap_<M>.json``).

Code vs paper, both offered (``dropout_schedule``):
  * ``paper``: the rate "gradually decays" through the stage — we decay it linearly,
    p = r·(E − e − 1)/E at stage epoch e of E [INFER: the paper gives no formula; this is the official
    code's warm-up formula applied to the whole stage].
  * ``code``: the official code's schedule — linear as above during warm-up, then back to r and decaying
    exponentially, p = r·exp(−0.2·(e − warm-up)).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import viz
from ..config import option
from ..errors import ConfigError
from ..genotypes import Genotype
from ..memory import peak_memory_mib, peak_rss_mib, reset_peak_memory
from ..spaces import CELL_TYPES, DartsSpace
from .base import STRATEGIES, SearchContext
from .darts import BilevelConfig, Darts

__all__ = ["PDarts", "PDartsConfig", "skip_dropout_rate", "ops_to_drop", "cap_skip_connects"]


@dataclass
class PDartsConfig(BilevelConfig):
    """P-DARTS hyper-parameters; defaults are the paper's CIFAR-10 search (METHODS.md §2.3)."""

    stage_layers: list[int] = option(factory=lambda: [5, 11, 17], ge=1)  # cells per stage
    stage_ops: list[int] = option(factory=lambda: [8, 5, 3], ge=1)  # ops kept per edge in each stage
    stage_add_width: list[int] = option(factory=lambda: [0, 0, 0], ge=0)  # extra initial channels per stage
    epochs_per_stage: int = option(25, ge=1, hint="25")
    warmup_epochs: int = option(10, ge=0)  # weight-only epochs at the start of every stage
    dropout_rates: list[float] = option(factory=lambda: [0.0, 0.4, 0.7], ge=0, lt=1)  # initial skip dropout per stage
    # "paper" (linear decay through the stage) or "code" (official code)
    dropout_schedule: str = option("paper", choices=("paper", "code"))
    skip_cap: int = option(2, ge=0, le=8)  # at most this many skip-connects in the final normal cell
    w_lr_min: float = option(0.0, ge=0)  # cosine to 0 within each stage
    arch_lr: float = option(6e-4, gt=0)
    arch_grad_clip: float = option(5.0, ge=0)


def skip_dropout_rate(initial: float, stage_epoch: int, epochs: int, warmup: int, schedule: str) -> float:
    """The skip-connect dropout rate at ``stage_epoch`` (0-based) of a stage of ``epochs`` epochs."""
    linear = initial * (epochs - stage_epoch - 1) / epochs
    if schedule == "paper" or stage_epoch < warmup:
        if schedule not in ("paper", "code"):
            raise ConfigError(f"search.dropout_schedule must be 'paper' or 'code', got {schedule!r}")
        return linear
    if schedule == "code":
        return initial * math.exp(-0.2 * (stage_epoch - warmup))
    raise ConfigError(f"search.dropout_schedule must be 'paper' or 'code', got {schedule!r}")


def ops_to_drop(weights: torch.Tensor, alive: torch.Tensor, keep: int) -> torch.Tensor:
    """A mask ``[edges, ops]`` of the alive ops to remove so that ``keep`` remain on every edge: the ones
    with the lowest weight (`none` included, as in the official code). Ties remove the later op."""
    drop = torch.zeros_like(alive, dtype=torch.bool)
    for e in range(alive.shape[0]):
        cols = alive[e].nonzero().flatten().tolist()
        order = sorted(cols, key=lambda c: (float(weights[e, c]), -c))  # weakest first
        for c in order[: max(0, len(cols) - keep)]:
            drop[e, c] = True
    return drop


def cap_skip_connects(space: DartsSpace, weights: dict[str, torch.Tensor], alive: dict[str, torch.Tensor],
                      cap: int) -> Genotype:
    """Derive with at most ``cap`` skip-connects in the normal cell: while there are more, forbid the skip
    with the lowest weight among those in the genotype and derive again (METHODS.md §2.2; the author notes it
    amounts to keeping the ``cap`` strongest skips)."""
    alive = {k: v.clone() for k, v in alive.items()}
    skip_col = space.ops.index("skip_connect")
    while True:
        g = space.derive(weights, alive)
        skips = [e for e in g.normal.edges if e.op == "skip_connect"]
        if len(skips) <= cap:
            return g
        rows = [space.edges.index((e.src, e.dst)) for e in skips]
        weakest = min(rows, key=lambda r: float(weights["normal"][r, skip_col]))
        alive["normal"][weakest, skip_col] = False


class PDarts(Darts):
    """Progressive DARTS: DARTS's steps, a staged schedule, op pruning between stages and a skip cap."""

    name = "pdarts"
    Config = PDartsConfig
    supports_nb201 = False  # its op pruning and skip cap are defined on the DARTS cell

    def __init__(self, config: PDartsConfig, context: SearchContext) -> None:
        n = len(config.stage_layers)
        for key in ("stage_ops", "stage_add_width", "dropout_rates"):
            if len(getattr(config, key)) != n:
                raise ConfigError(f"search.{key} needs one value per stage ({n}, as in search.stage_layers), got "
                                  f"{getattr(config, key)}")
        if any(b > a for a, b in zip(config.stage_ops, config.stage_ops[1:])) or config.stage_ops[0] > len(config.ops):
            raise ConfigError(f"search.stage_ops must not grow and starts at most at the {len(config.ops)} ops, got "
                              f"{config.stage_ops}")
        if min(config.stage_ops) < 2:
            raise ConfigError("search.stage_ops: keep at least 2 ops per edge in every stage (1 is the final cell)")
        if not 0 <= config.skip_cap <= 8:
            raise ConfigError(f"search.skip_cap must be between 0 and 8, got {config.skip_cap}")
        skip_dropout_rate(0.0, 0, 1, 0, config.dropout_schedule)  # validates the schedule name
        self.stage = 0
        self._next_alive: dict[str, torch.Tensor] | None = None
        self.stage_history: list[dict[str, Any]] = []
        self._stage_t0 = time.perf_counter()
        super().__init__(config, context)

    # -- stages --------------------------------------------------------------------------------------------
    def initial_layers(self) -> int:
        return self.config.stage_layers[0]

    def enter_stage(self, stage: int, alive: dict[str, torch.Tensor] | None) -> None:
        """Start ``stage`` on a fresh supernet holding only the ``alive`` ops (all ops if None)."""
        c = self.config
        self.stage = stage
        net = self.build_supernet(c.stage_layers[stage], c.channels + c.stage_add_width[stage], alive)
        self.use_supernet(net)
        self._stage_t0 = time.perf_counter()
        reset_peak_memory(self.context.device)

    @property
    def epochs(self) -> int:
        return len(self.config.stage_layers) * self.config.epochs_per_stage

    def config_warnings(self) -> list[str]:
        c = self.config
        if c.epochs_per_stage <= c.warmup_epochs:
            return [f"search.epochs_per_stage={c.epochs_per_stage} is not more than search.warmup_epochs="
                    f"{c.warmup_epochs}: no stage ever updates the architecture, so every stage prunes by untrained "
                    f"alphas (the paper: 25 epochs, 10 of them warm-up)"]
        return []

    def schedule_position(self) -> tuple[int, int]:
        return self.epoch % self.config.epochs_per_stage, self.config.epochs_per_stage

    def begin_epoch(self, epoch: int) -> None:
        stage = epoch // self.config.epochs_per_stage
        if stage != self.stage:
            self.enter_stage(stage, self._next_alive)
        super().begin_epoch(epoch)
        e, n = self.schedule_position()
        self.skip_dropout = skip_dropout_rate(self.config.dropout_rates[stage], e, n, self.config.warmup_epochs,
                                              self.config.dropout_schedule)
        self.net.set_skip_dropout(self.skip_dropout)

    def end_epoch(self, epoch: int) -> list[str]:
        e, n = self.schedule_position()
        if e != n - 1:
            return []
        # last epoch of a stage: record it, and choose the ops the next stage keeps
        weights = self.arch_weights()
        alive = {k: self.net.alive(k).detach().cpu().clone() for k in self.net.arch_keys()}
        record: dict[str, Any] = {
            "stage": self.stage + 1, "layers": self.net.layers, "ops_per_edge": int(alive["normal"][0].sum()),
            "wall_s": time.perf_counter() - self._stage_t0, "peak_rss_mib": peak_rss_mib(),
            "weights": {k: w.tolist() for k, w in weights.items()},
            "alive": {k: a.tolist() for k, a in alive.items()},
        }
        if self.context.device.type == "cuda":
            record["peak_cuda_mib"] = peak_memory_mib(self.context.device)
        self.stage_history.append(record)
        events = [f"stage {self.stage + 1} done: {record['layers']} cells, {record['ops_per_edge']} ops per edge, "
                  f"{record['wall_s']:.1f} s"]
        if self.stage + 1 < len(self.config.stage_layers):
            keep = self.config.stage_ops[self.stage + 1]
            self._next_alive = {k: alive[k] & ~ops_to_drop(weights[k], alive[k], keep) for k in alive}
            events.append(f"keeping the {keep} strongest ops on every edge for stage {self.stage + 2}")
        return events

    # -- derivation ----------------------------------------------------------------------------------------
    def genotype_with_cap(self, cap: int) -> Genotype:
        weights = {k: w.detach().cpu() for k, w in self.net.op_weights().items()}
        alive = {k: self.net.alive(k).detach().cpu() for k in self.net.arch_keys()}
        return cap_skip_connects(self.space, weights, alive, cap)

    def export(self) -> Genotype:
        if "skip_connect" not in self.space.ops:
            return super().export()
        return self.genotype_with_cap(self.config.skip_cap)

    def extra_exports(self) -> dict[str, Genotype]:
        if "skip_connect" not in self.space.ops:
            return {}
        return {f"skip_cap_{m}": self.genotype_with_cap(m) for m in range(8, -1, -1)}

    def results(self) -> dict[str, Any]:
        return {"skip_cap": self.config.skip_cap, "genotype": str(self.export()),
                "stages": [{k: v for k, v in r.items() if k not in ("weights", "alive")} for r in self.stage_history]}

    def report_sections(self, run_dir: Any) -> list[str]:
        out = ["## Stages\n", "| stage | cells | ops per edge | wall time (s) | peak memory (MiB) |",
               "|---|---|---|---|---|"]
        for r in self.stage_history:
            mem = r.get("peak_cuda_mib", r["peak_rss_mib"])
            out.append(f"| {r['stage']} | {r['layers']} | {r['ops_per_edge']} | {r['wall_s']:.1f} | {mem:.0f} |")
        out.append("\nPeak memory is the CUDA peak of the stage on a GPU, else the process's peak RSS so far.\n")
        for r in self.stage_history:
            weights = {}
            for k in CELL_TYPES:
                w = np.asarray(r["weights"][k], dtype=float)
                w[~np.asarray(r["alive"][k], dtype=bool)] = np.nan  # removed ops: drawn hatched
                weights[k] = w
            name = f"stage{r['stage']}_weights.png"
            viz.draw_weights_heatmap(weights, self.op_names(), run_dir / name,
                                     title=f"stage {r['stage']}: op weights ({r['layers']} cells)")
            out.append(f"### Stage {r['stage']}\n\n![stage {r['stage']} weights]({name})\n")
            for k in CELL_TYPES:
                alive = np.asarray(r["alive"][k], dtype=bool)
                rows = [f"{s}→{d}: " + ", ".join(op for op, on in zip(self.op_names(), alive[i]) if on)
                        for i, (s, d) in enumerate(self.space.edges)]
                out.append(f"Surviving ops, {k} cell: " + "; ".join(rows) + "\n")
        caps = ", ".join(f"[{m}](genotypes/skip_cap_{m}.json)" for m in range(8, -1, -1))
        out.append(f"## Skip-connect cap\n\n`genotype.json` is the cell with at most **{self.config.skip_cap}** "
                   f"skip-connects in the normal cell (`search.skip_cap`, the paper's M). The cells for every cap "
                   f"from 8 to 0 are saved too: {caps}.\n")
        return out

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(stage=self.stage, alive={k: self.net.alive(k).cpu() for k in self.net.arch_keys()},
                     next_alive=self._next_alive, stage_history=self.stage_history,
                     skip_dropout=getattr(self, "skip_dropout", 0.0))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.enter_stage(state["stage"], state["alive"])  # rebuild the stage's supernet, then load into it
        self._next_alive = state["next_alive"]
        self.stage_history = state["stage_history"]
        super().load_state_dict(state)
        self.skip_dropout = state["skip_dropout"]
        self.net.set_skip_dropout(self.skip_dropout)


STRATEGIES.add("pdarts", PDarts)
