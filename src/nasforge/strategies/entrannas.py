"""EnTranNAS (Yang, You, Li, Wang, Qian, Lin, CVPR 2021, arXiv 2101.11342). METHODS.md §4, METHODS-ADDENDUM.md
§2 and §7. No code was released; this is a reference implementation from the paper's equations as restated by a
survey, with every unknown exposed as an option (docs/entrannas.md lists the decisions).

What differs from DARTS: the super-network is mostly the target network. A few **Engine-cells** (``engine_cells``)
are DARTS cells weighted by a temperature softmax of α (``temperature``); they alone give α its gradient. Every
other cell is a **Transit-cell** computing only the architecture derived from α *now* — re-derived at every
forward pass — as an unweighted sum, like the final network, so the search is cheaper and the searched and
evaluated architectures agree. Inside a cell, op k on node i is computed once and feeds every later node
(``feature_sharing``). The derivation is the DARTS rule (``derivation=rule``: top-2 inputs, best non-`none` op)
or differentiable sparsification (``derivation=dst``): per node a learned threshold t_j = sigmoid(β_j) cuts the
max-normalised weights, q = ReLU(p / max p − t_j), renormalised per edge; the Engine-cell uses q̂, S_j = {q > 0},
so a node keeps any number (≥ 1) of inputs. β trains with α. The bilevel optimisation is DARTS's (first order by
default, second order through :mod:`.hypergrad`).

Supernets: :mod:`nasforge.supernets.entrannas`. Spaces: ``darts`` (the DARTS cell; ``none`` is not a candidate
by default, METHODS-ADDENDUM E14; DST genotypes live in :class:`~nasforge.spaces.FreeTopologySpace`) and
``nb201`` (one shared cell, the strongest op per edge; `none` is never derived there either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import viz
from ..config import check_ranges, option
from ..errors import ConfigError
from ..genotypes import Genotype, save_genotype
from ..memory import peak_memory_mib, reset_peak_memory
from ..ops import DARTS_OPS
from ..spaces import FreeTopologySpace, NB201Space, reduction_positions
from ..supernets.entrannas import DERIVATIONS, EnTranSuperNet, NB201EnTranSuperNet
from .base import STRATEGIES, Batch, SearchContext
from .darts import Darts, DartsConfig

__all__ = ["EnTranNas", "EnTranNasConfig"]

_MAX_DRAWN = 6  # derived cells drawn in the report (a dense DST cell takes seconds to lay out)


@dataclass
class EnTranNasConfig(DartsConfig):
    """EnTranNAS search hyper-parameters. Where METHODS.md gives nothing, DARTS's CIFAR-10 search settings
    (§1.5); τ, the Engine-cell positions, β's initial value and the sparsity weight are our choices (§4.3)."""

    epochs: int = option(50, ge=1)
    layers: int = option(8, ge=1)  # cells (nb201: cells per stage, N)
    ops: list[str] = field(default_factory=lambda: [o for o in DARTS_OPS if o != "none"])  # E14: no `none`
    weighting: str = option("softmax", choices=("softmax",))  # the temperature softmax (and DST on top)
    #: Engine-cell positions (0-based). None: the first normal and the first reduction cell (DARTS space), the
    #: first cell (NB201).
    engine_cells: list[int] | None = option(None, ge=0, hint="[0, 2] for 8 cells")
    temperature: float = option(1.0, gt=0, hint="1.0, the plain DARTS softmax")  # τ in softmax(α/τ)
    feature_sharing: bool = True
    derivation: str = option("rule", choices=DERIVATIONS)
    dst_sparsity: float = option(0.0, ge=0)  # weight of the mean thresholded mass Σq per node (DST; 0 = off)
    beta_init: float = option(0.0)  # initial β_j (DST): t_j = sigmoid(0) = 0.5

    def total_cells(self) -> int:
        return self.layers if self.space == "darts" else 3 * self.layers

    def engine_positions(self) -> tuple[int, ...]:
        """The Engine-cell positions, the default resolved."""
        if self.engine_cells is not None:
            return tuple(sorted(self.engine_cells))
        if self.space == "darts":
            return tuple(sorted({0, *reduction_positions(self.layers)[:1]}))
        return (0,)

    def validate(self) -> None:
        """Cross-field rules; each message names the field, its value and what is valid."""
        total = self.total_cells()
        where = f"{self.layers} cells" if self.space == "darts" else f"3 stages x {self.layers} cells"
        if self.engine_cells is not None:
            if not self.engine_cells:
                raise ConfigError(f"engine_cells=[] is empty: give at least one position in 0..{total - 1}")
            outside = [i for i in self.engine_cells if i >= total]
            if outside:
                raise ConfigError(f"engine_cells={self.engine_cells}: position {outside[0]} is outside the network; "
                                  f"positions must be in 0..{total - 1} ({where})")
            if len(set(self.engine_cells)) != len(self.engine_cells):
                raise ConfigError(f"engine_cells={self.engine_cells} lists a position twice")
        if self.space == "darts":
            reductions = reduction_positions(self.layers)
            engines = self.engine_positions()
            for kind, present, has in (("normal", len(reductions) < total, any(i not in reductions for i in engines)),
                                       ("reduction", bool(reductions), any(i in reductions for i in engines))):
                if present and not has:
                    raise ConfigError(f"engine_cells={list(engines)}: no Engine-cell is a {kind} cell (reductions at "
                                      f"{list(reductions)} of {total} cells), so that cell's alpha would never "
                                      f"learn; add one {kind} position")
        if self.space == "nb201" and "none" in self.ops:
            raise ConfigError("ops: 'none' cannot be an NB201 candidate for EnTranNAS (a cell derived with only "
                              "`none` into its output cuts the Transit-cells off); remove it")
        if self.derivation == "dst":
            if self.space != "darts":
                raise ConfigError(f"derivation='dst' needs space='darts', got space={self.space!r}: NB201 cells "
                                  f"have exactly one op per edge")
            if "none" in self.ops:
                raise ConfigError("ops: 'none' cannot be a candidate with derivation='dst' (a surviving `none` pair "
                                  "would be an empty input); remove it or use derivation='rule'")
        elif self.dst_sparsity > 0:
            raise ConfigError(f"dst_sparsity={self.dst_sparsity} acts only with derivation='dst' (got "
                              f"{self.derivation!r}); set it to 0 or use derivation='dst'")


class EnTranNas(Darts):
    """EnTranNAS: DARTS's bilevel steps on a super-network of Engine- and Transit-cells."""

    name = "entrannas"
    Config = EnTranNasConfig
    supports_nb201 = True

    def __init__(self, config: EnTranNasConfig, context: SearchContext) -> None:
        check_ranges(config, "search.")  # also when built without a preset (API, tests)
        self.records: list[dict[str, Any]] = []
        super().__init__(config, context)
        if config.space == "darts" and config.derivation == "dst":
            self.space = FreeTopologySpace(ops=tuple(config.ops), nodes=config.nodes)  # same cell, free topology

    def build_supernet(self, layers: int, channels: int | None = None,
                       alive: dict[str, torch.Tensor] | None = None) -> nn.Module:
        c, ctx = self.config, self.context
        if isinstance(self.space, NB201Space):
            net: Any = NB201EnTranSuperNet(ctx.num_classes, channels or c.channels, layers, c.engine_positions(),
                                           in_channels=ctx.in_channels, temperature=c.temperature,
                                           feature_sharing=c.feature_sharing, generator=ctx.generator)
        else:
            net = EnTranSuperNet(self.space, channels or c.channels, ctx.num_classes, layers, c.engine_positions(),
                                 in_channels=ctx.in_channels, temperature=c.temperature, derivation=c.derivation,
                                 feature_sharing=c.feature_sharing, beta_init=c.beta_init, generator=ctx.generator)
        net.set_checkpoint_units(c.checkpoint_edges)
        net.set_fused(c.fused)
        return net

    # -- steps -----------------------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        reset_peak_memory(self.context.device)

    def arch_loss(self, batch: Batch) -> torch.Tensor:
        loss = super().arch_loss(batch)
        if self.config.dst_sparsity > 0:
            loss = loss + self.config.dst_sparsity * self.net.thresholded_mass()
        return loss

    def inactive_parameters(self) -> set[str]:
        return self.net.unused_parameter_names()

    # -- what the search found -----------------------------------------------------------------------------
    def export(self) -> Genotype:
        """S_j of every node now: exactly what the Transit-cells compute."""
        return self.net.genotype()

    def derived_summary(self) -> dict[str, Any]:
        """Per cell type, the (input, op) pairs of every node and, with DST, the thresholds t_j."""
        g = self.export()
        keys = list(self.net.alphas.keys())
        out: dict[str, Any] = {"inputs_per_node": {
            k: [sum(1 for e in cell.inputs_of(n) if e.op != "none") for n in cell.nodes]
            for k, cell in zip(keys, g.cells)}}
        if self.config.derivation == "dst":
            out["thresholds"] = {k: [round(float(t), 6) for t in v.detach().cpu()]
                                 for k, v in self.net.thresholds().items()}
        return out

    def epoch_metrics(self) -> dict[str, Any]:
        return {**self.derived_summary(), "peak_mem_mib": round(peak_memory_mib(self.context.device), 1)}

    def on_epoch_row(self, row: dict[str, Any]) -> None:
        self.records.append({"epoch": row["epoch"], "epoch_s": row["epoch_s"], "peak_mem_mib": row["peak_mem_mib"],
                             "inputs_per_node": row["inputs_per_node"], "thresholds": row.get("thresholds"),
                             "genotype_hash": row["genotype_hash"], "genotype": self.export().to_dict(),
                             "valid_acc": row.get("valid_acc")})

    def results(self) -> dict[str, Any]:
        c = self.config
        return {"space": c.space, "derivation": c.derivation, "engine_cells": list(c.engine_positions()),
                "cells": c.total_cells(), "temperature": c.temperature, "feature_sharing": c.feature_sharing,
                "genotype": str(self.export()), **self.derived_summary(),
                "epochs": [{k: v for k, v in r.items() if k != "genotype"} for r in self.records]}

    def report_sections(self, run_dir: Any) -> list[str]:
        """The super-network in words, a per-epoch table (derived cells, inputs per node, thresholds, time,
        memory), every epoch's cells saved and up to six of the changes drawn and, with DST, t_j over epochs."""
        c, keys = self.config, list(self.net.alphas.keys())
        engines = c.engine_positions()
        kinds = [("reduce" if i in reduction_positions(c.layers) else "normal") if c.space == "darts" else "normal"
                 for i in engines]
        out = ["## EnTranNAS\n",
               f"Engine-cells at positions {list(engines)} ({', '.join(kinds)}) of {c.total_cells()} cells; the "
               f"other {c.total_cells() - len(engines)} are Transit-cells that compute only the cell derived at "
               f"that iteration. Derivation `{c.derivation}`, temperature {c.temperature:g}, feature sharing "
               f"{'on' if c.feature_sharing else 'off'}. Inputs per node count the (input node, op) pairs of the "
               f"derived cell; peak memory is the CUDA peak of the epoch on a GPU, else the process's peak RSS so "
               f"far.\n",
               "| epoch | inputs per node | thresholds t_j | epoch time (s) | peak memory (MiB) | valid acc | "
               "genotype |", "|---|---|---|---|---|---|---|"]
        for r in self.records:
            inputs = " / ".join(f"{k}: {r['inputs_per_node'][k]}" for k in keys)
            ts = " / ".join(f"{k}: {[round(t, 3) for t in r['thresholds'][k]]}" for k in keys) \
                if r.get("thresholds") else "-"
            acc = "-" if r.get("valid_acc") is None else f"{r['valid_acc']:.2f}"
            out.append(f"| {r['epoch']} | {inputs} | {ts} | {r['epoch_s']:.1f} | {r['peak_mem_mib']:.0f} | {acc} | "
                       f"[`{r['genotype_hash'][:8]}`](entrannas/epoch{r['epoch']:03d}.json) |")
        changes = [r for i, r in enumerate(self.records)
                   if i == 0 or r["genotype_hash"] != self.records[i - 1]["genotype_hash"]]
        drawn = [changes[round(i * (len(changes) - 1) / max(_MAX_DRAWN - 1, 1))]
                 for i in range(min(len(changes), _MAX_DRAWN))]
        out.append(f"\n### Derived cells\n\nEvery epoch's cells are in `entrannas/epochNNN.json`; they changed in "
                   f"{len(changes)} of {len(self.records)} epochs. Drawn: {len(drawn)} of those epochs, evenly "
                   f"spaced, first and last included.\n")
        for r in self.records:
            save_genotype(Genotype.from_dict(r["genotype"]), run_dir / f"entrannas/epoch{r['epoch']:03d}.json")
        for r in drawn:
            name = f"entrannas/epoch{r['epoch']:03d}.png"
            viz.draw_genotype(Genotype.from_dict(r["genotype"]), run_dir / name,
                              title=f"epoch {r['epoch']}: derived cells")
            out.append(f"Epoch {r['epoch']}:\n\n![epoch {r['epoch']}]({name})\n")
        if c.derivation == "dst" and self.records:
            rows = [{"epoch": r["epoch"], **{f"t_{k}_node{n + 2}": t for k in keys
                                             for n, t in enumerate(r["thresholds"][k])}} for r in self.records]
            viz.plot_curves(rows, "epoch", [k for k in rows[0] if k != "epoch"], run_dir / "entrannas/thresholds.png",
                            title="DST thresholds t_j")
            out.append("### Thresholds\n\n![thresholds](entrannas/thresholds.png)\n")
        return out

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "records": self.records}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.records = state["records"]


STRATEGIES.add("entrannas", EnTranNas)
