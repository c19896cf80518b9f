"""GOLD-NAS: Gradual, One-Level, Differentiable NAS (Bi, Xie, Chen, Wei, Tian, arXiv 2007.03331). METHODS.md §3
and METHODS-ADDENDUM.md §1. There is no official code; where the paper's details are unknown we follow the
unofficial implementation ``sunsmarterjie/GOLD_NAS`` and offer the alternatives as options.

The space drops DARTS's hand-made rules: every op on every edge is on or off independently (no `none`, no one
op per edge), a node keeps any number of inputs (at least one), and every cell has its own architecture. The
supernet has the evaluation network's depth and width, so the derived network *is* the pruned supernet.
Weights and architecture parameters are updated together from one training batch and one backward pass
(one-level), ops weighted by a sigmoid (they do not compete), regularised by cutout and the auxiliary head.
The loss adds λ·c(α), an expected resource cost; after every epoch weak ops are pruned for good (removed from
the network, so the search gets faster) and λ adapts: relaxed (÷c0) after an epoch that pruned enough, raised
with a growing increment after one that did not. Every epoch's architecture is recorded with its exact
multiply-adds, parameters and held-out accuracy; the non-dominated ones form the Pareto front of the search.

Options where the sources disagree or are silent:
  * ``cost_form``: ``paper`` c(α) = Σ σ(α_o)·cost_o [RECALL] or ``unofficial``
    c(α) = Σ log(1 + n·w̄_o)·(r + μ·cost_o) with w̄ the node-normalised weight and n the node's alive ops.
  * ``prune_weight``: ``node`` (σ normalised over the ops entering the same node, as the unofficial code) or
    ``raw`` σ(α).
  * ``resource``: ``macs`` or ``params``; costs are exact analytic per-op counts at the op's real resolution
    and width (``nasforge.costs.op_cost``), in millions.
  * A pruning step that would leave a node without input is skipped [INFER; the unofficial code does not
    guard against it]. AutoAugment is not implemented (cutout and the auxiliary head are).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .._io import atomic_write_text
from .. import viz
from ..costs import count_macs, count_params, op_cost
from ..config import option
from ..parallel.distributed import average_param_grads
from ..errors import ConfigError
from ..genotypes import CellArch, Edge, Genotype, save_genotype
from ..models import build_network
from ..pareto import pareto_front
from ..spaces import RelaxedSpace
from ..supernets import SuperNet, reduction_positions
from .base import STRATEGIES, Batch, SearchContext, Strategy

__all__ = ["GoldNas", "GoldNasConfig", "update_lambda"]


@dataclass
class GoldNasConfig:
    """GOLD-NAS hyper-parameters; defaults follow the unofficial CIFAR code (METHODS.md §3.3)."""

    epochs: int = option(200, ge=1, hint="200")  # at most; the search also ends when ``target`` is reached
    layers: int = option(14, ge=1)  # cells (the conference version; 20 for the arXiv version)
    channels: int = option(36, ge=1)
    nodes: int = option(4, ge=1)
    ops: list[str] = field(default_factory=lambda: ["skip_connect", "sep_conv_3x3"])
    aux_weight: float = option(0.4, ge=0)  # auxiliary head loss weight (0 = no head)
    w_lr: float = option(0.01, gt=0)  # constant: the number of epochs is open-ended
    w_momentum: float = option(0.9, ge=0, lt=1)
    w_weight_decay: float = option(3e-4, ge=0)
    w_grad_clip: float = option(5.0, ge=0)
    arch_lr: float = option(1.0, gt=0)
    arch_momentum: float = option(0.9, ge=0, lt=1)
    arch_weight_decay: float = option(0.0, ge=0)
    resource: str = option("macs", choices=("macs", "params"))  # "macs" or "params" (in millions)
    cost_form: str = option("paper", choices=("paper", "unofficial"))  # "paper" or "unofficial"
    cost_r: float = option(1.0, ge=0)  # unofficial form: constant charge per op
    cost_mu: float = option(0.0, ge=0)  # unofficial form: weight of the op's resource cost
    # "node" (normalised over the node's alive ops) or "raw"
    prune_weight: str = option("node", choices=("node", "raw"))
    xi_min: float = option(0.01, ge=0, lt=1)  # prune every op at or below this weight
    xi_max: float = option(0.05, ge=0, lt=1)  # then prune up to n0 of the weakest ops at or below this weight
    n0: int = option(4, ge=0)
    lambda0: float = option(1e-5, gt=0)
    c0: float = option(2.0, gt=1)
    # stop when the derived network's resource (millions) is at or below this (0 = off)
    target: float = option(0.0, ge=0)
    checkpoint_edges: bool = True
    # speed (docs/performance.md), as in DARTS's config
    fused: bool = option(True)
    channels_last: bool = option(False)
    amp: bool = option(False)
    compile: bool = option(False)


def update_lambda(lam: float, dlam: float, pruned: int, n0: int, lambda0: float, c0: float) -> tuple[float, float]:
    """The adaptive constraint weight: after an epoch that pruned at least ``n0`` ops relax it (λ ÷ c0, the
    increment back to λ0); otherwise raise it by a growing increment (Δλ × c0, λ + Δλ)."""
    if pruned >= n0:
        return lam / c0, lambda0
    dlam = dlam * c0
    return lam + dlam, dlam


class GoldNas(Strategy):
    """One-level search with sigmoid weights, a resource constraint and gradual pruning."""

    name = "gold-nas"
    Config = GoldNasConfig
    needs_val_batch = False

    def __init__(self, config: GoldNasConfig, context: SearchContext) -> None:
        super().__init__(config, context)
        for key, allowed in (("resource", ("macs", "params")), ("cost_form", ("paper", "unofficial")),
                             ("prune_weight", ("node", "raw"))):
            if getattr(config, key) not in allowed:
                raise ConfigError(f"search.{key} must be one of {allowed}, got {getattr(config, key)!r}")
        if "none" in config.ops:
            raise ConfigError("search.ops: GOLD-NAS has no 'none' op (removing an op is pruning)")
        self.space = RelaxedSpace(ops=tuple(config.ops), nodes=config.nodes, layers=config.layers)
        self.net = SuperNet(self.space, config.channels, context.num_classes, config.layers,
                            in_channels=context.in_channels, weighting="sigmoid", share_cells=False,
                            generator=context.generator, auxiliary=config.aux_weight > 0).to(context.device)
        self.net.configure(fused=config.fused, checkpoint_edges=config.checkpoint_edges, amp=config.amp,
                           channels_last=config.channels_last, compile=config.compile)
        with torch.no_grad():
            for a in self.net.arch_parameters():
                a.zero_()  # sigma = 0.5 for every op
        self.cost_table = self._cost_table()
        self.a_optimizer = torch.optim.SGD(self.net.arch_parameters(), lr=config.arch_lr,
                                           momentum=config.arch_momentum, weight_decay=config.arch_weight_decay)
        self.w_optimizer = self._weight_optimizer(None)
        self.lam, self.dlam = 0.0, config.lambda0
        self.epoch = 0
        self.records: list[dict[str, Any]] = []
        self.last_pruned = 0
        self._measured: dict[str, tuple[int, int]] = {}

    # -- costs -------------------------------------------------------------------------------------------------
    def _cost_table(self) -> dict[str, torch.Tensor]:
        """Per cell key, ``[edges, ops]`` cost of every op in millions, at its real input size and width."""
        c, ctx = self.config, self.context
        reductions = reduction_positions(c.layers)
        size, width, tables = ctx.image_size, c.channels, {}
        for i, key in enumerate(self.net.cell_keys):
            reduction = i in reductions
            if reduction:
                width *= 2
            table = torch.zeros(len(self.space.edges), len(self.space.ops))
            for e, (src, _) in enumerate(self.space.edges):
                stride = 2 if reduction and src < self.space.n_inputs else 1
                h = size if stride == 2 or not reduction else math.ceil(size / 2)
                for o, op in enumerate(self.space.ops):
                    params, macs = op_cost(op, width, h, h, stride)
                    table[e, o] = (macs if c.resource == "macs" else params) / 1e6
            tables[key] = table.to(ctx.device)
            if reduction:
                size = math.ceil(size / 2)
        return tables

    def expected_cost(self) -> torch.Tensor:
        """c(α), differentiable in the architecture parameters."""
        c = self.config
        total = torch.zeros((), device=self.context.device)
        for key, w in self.net.op_weights().items():
            table = self.cost_table[key]
            if c.cost_form == "paper":
                total = total + (w * table).sum()
            else:
                norm, count = self._per_node(w, self.net.alive(key))
                total = total + (torch.log1p(count * norm) * (c.cost_r + c.cost_mu * table) *
                                 self.net.alive(key)).sum()
        return total

    def _per_node(self, w: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node-normalised weights w̄ and the number of alive ops entering each op's node, shaped like ``w``."""
        node_of = torch.tensor([dst for _, dst in self.space.edges], device=w.device)
        nodes = node_of.max().item() + 1
        sums = torch.zeros(nodes, device=w.device, dtype=w.dtype).index_add(0, node_of, w.sum(1))
        counts = torch.zeros(nodes, device=w.device, dtype=w.dtype).index_add(0, node_of, alive.to(w.dtype).sum(1))
        return w / sums[node_of].clamp_min(1e-12).unsqueeze(1), counts[node_of].unsqueeze(1).expand_as(w)

    def measure(self, genotype: Genotype) -> tuple[int, int]:
        """(params without auxiliary head, multiply-adds) of the evaluation network of ``genotype``, exactly as
        ``nasforge train`` reports them."""
        key = genotype.hash()
        if key not in self._measured:
            c, ctx = self.config, self.context
            net = build_network(genotype, dataset_kind="cifar", num_classes=ctx.num_classes, layers=c.layers,
                                channels=c.channels, auxiliary=True, in_channels=ctx.in_channels)
            self._measured[key] = (count_params(net), count_macs(net, (ctx.in_channels, ctx.image_size,
                                                                       ctx.image_size)))
        return self._measured[key]

    # -- contract --------------------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def model(self) -> nn.Module:
        return self.net

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def step(self, train_batch: Batch, val_batch: Batch | None) -> dict[str, float]:
        """One-level: weights and architecture from the same batch and one backward pass."""
        x, y = train_batch
        logits, aux = self.net.forward_with_aux(x)
        ce = F.cross_entropy(logits, y)
        loss = ce + (self.config.aux_weight * F.cross_entropy(aux, y) if aux is not None else 0.0)
        cost = self.expected_cost()
        loss = loss + self.lam * cost
        self.w_optimizer.zero_grad(set_to_none=True)
        self.a_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_param_grads(self.net.parameters(), len(y))  # data-parallel: the global batch's gradient
        if self.config.w_grad_clip > 0:  # the weights only, as in the unofficial code
            nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.config.w_grad_clip)
        self.w_optimizer.step()
        self.a_optimizer.step()
        with torch.no_grad():
            acc = 100.0 * (logits.argmax(1) == y).float().mean()
        return {"loss": float(loss.detach()), "ce": float(ce.detach()), "acc": float(acc),
                "expected_cost": float(cost.detach())}

    def end_epoch(self, epoch: int) -> list[str]:
        self.last_pruned = self.prune()
        self.lam, self.dlam = update_lambda(self.lam, self.dlam, self.last_pruned, self.config.n0,
                                            self.config.lambda0, self.config.c0)
        return [f"pruned {self.last_pruned} ops ({self.ops_alive()} left); lambda = {self.lam:.3g}"]

    def epoch_metrics(self) -> dict[str, Any]:
        params, macs = self.measure(self.export())
        return {"ops_alive": self.ops_alive(), "pruned": self.last_pruned, "lambda": self.lam, "params": params,
                "macs": macs}

    def on_epoch_row(self, row: dict[str, Any]) -> None:
        g = self.export()
        self.records.append({"id": f"e{row['epoch']:03d}", "epoch": row["epoch"], "macs": row["macs"],
                             "params": row["params"], "accuracy": row.get("valid_acc"),
                             "ops_alive": row["ops_alive"], "genotype": g.to_dict()})

    def config_warnings(self) -> list[str]:
        if self.config.epochs < 3:
            return [f"search.epochs={self.config.epochs} leaves GOLD-NAS {self.config.epochs} pruning round(s): the "
                    f"Pareto front holds at most that many architectures (the paper runs until its target, up to "
                    f"200 epochs)"]
        return []

    def should_stop(self) -> bool:
        if self.config.target <= 0 or not self.records:
            return False
        last = self.records[-1]
        return (last["macs"] if self.config.resource == "macs" else last["params"]) / 1e6 <= self.config.target

    # -- pruning ---------------------------------------------------------------------------------------------
    def ops_alive(self) -> int:
        return int(sum(int(self.net.alive(k).sum()) for k in self.net.arch_keys()))

    def prune(self) -> int:
        """Remove weak ops for good: all at or below ``xi_min``, then up to ``n0`` of the weakest at or below
        ``xi_max``; never the last op entering a node. Returns how many were removed."""
        c = self.config
        with torch.no_grad():
            scores = []
            for key, w in self.net.op_weights().items():
                alive = self.net.alive(key)
                s = self._per_node(w, alive)[0] if c.prune_weight == "node" else w
                for e, o in alive.nonzero().tolist():
                    scores.append((float(s[e, o]), key, e, o))
        scores.sort()
        pruned = 0
        for score, key, e, o in scores:  # (a) the hard floor
            if score > c.xi_min:
                break
            pruned += self._try_remove(key, e, o)
        extra = 0
        for score, key, e, o in scores:  # (b) up to n0 of the weakest remaining
            if extra >= c.n0 or score > c.xi_max:
                break
            if bool(self.net.alive(key)[e, o]):
                removed = self._try_remove(key, e, o)
                extra += removed
        pruned += extra
        if pruned:
            self.w_optimizer = self._weight_optimizer(self.w_optimizer)
        return pruned

    def _try_remove(self, key: str, edge: int, col: int) -> int:
        dst = self.space.edges[edge][1]
        rows = [i for i, (_, d) in enumerate(self.space.edges) if d == dst]
        if int(self.net.alive(key)[rows].sum()) <= 1:
            return 0  # the node's last input stays
        self.net.remove_op(key, edge, col)
        with torch.no_grad():
            self.net.alphas[key][edge, col] = -1e4  # as the unofficial code; its sigmoid is 0 anyway
        return 1

    def _weight_optimizer(self, old: torch.optim.Optimizer | None) -> torch.optim.Optimizer:
        """SGD over the weights still in the network, keeping the momentum of those that stay."""
        c = self.config
        opt = torch.optim.SGD(self.net.weight_parameters(), lr=c.w_lr, momentum=c.w_momentum,
                              weight_decay=c.w_weight_decay)
        if old is not None:
            for p in self.net.weight_parameters():
                if p in old.state:
                    opt.state[p] = old.state[p]
        return opt

    # -- results ---------------------------------------------------------------------------------------------
    def export(self) -> Genotype:
        """The pruned supernet as an unshared genotype: every alive op on every edge, all nodes concatenated."""
        cells = []
        for i, (key, cell) in enumerate(zip(self.net.cell_keys, self.net.cells)):
            alive = self.net.alive(key)
            edges = [Edge(src, dst, self.space.ops[o]) for e, (src, dst) in enumerate(self.space.edges)
                     for o in range(len(self.space.ops)) if bool(alive[e, o])]
            cells.append(CellArch(tuple(edges), self.space.concat, reduction=cell.reduction, name=f"cell {i}"))
        return Genotype(cells=tuple(cells), sharing="none", space="gold-nas")

    def front(self) -> list[dict[str, Any]]:
        return [self.records[i] for i in pareto_front(self.records, "macs", "accuracy")]

    def results(self) -> dict[str, Any]:
        strip = lambda r: {k: v for k, v in r.items() if k != "genotype"}  # noqa: E731
        return {"pareto": [strip(r) for r in self.front()], "records": [strip(r) for r in self.records],
                "final": strip(self.records[-1]) if self.records else None}

    def report_sections(self, run_dir: Any) -> list[str]:
        front = self.front()
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["id", "epoch", "macs", "params", "accuracy", "path"])
        for r in front:
            path = f"pareto/{r['id']}.json"
            save_genotype(Genotype.from_dict(r["genotype"]), run_dir / path)
            writer.writerow([r["id"], r["epoch"], r["macs"], r["params"], r["accuracy"], path])
        atomic_write_text(run_dir / "pareto.csv", buf.getvalue())
        out = ["## Pareto front\n",
               f"{len(front)} non-dominated architectures out of {len(self.records)} recorded (one per epoch): "
               f"[`pareto.csv`](pareto.csv), genotypes in `pareto/`. Accuracy is the supernet's on the held-out "
               f"split at that epoch; retrain a point with `nasforge train --genotype {run_dir}/pareto/<id>.json "
               f"--set train.channels={self.config.channels}`.\n"]
        if any(r.get("accuracy") is not None for r in self.records):
            viz.plot_pareto(self.records, "macs", "accuracy", [r["id"] for r in front], run_dir / "pareto.png",
                            title="accuracy vs multiply-adds, one point per epoch")
            out.append("![Pareto front](pareto.png)\n")
        out.append("| id | epoch | MACs | params | accuracy (%) | ops |\n|---|---|---|---|---|---|")
        out += [f"| [{r['id']}](pareto/{r['id']}.json) | {r['epoch']} | {r['macs']:,} | {r['params']:,} | "
                f"{r['accuracy'] if r['accuracy'] is None else round(r['accuracy'], 2)} | {r['ops_alive']} |"
                for r in front]
        return out + [""]

    # -- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "w_optimizer": self.w_optimizer.state_dict(),
                "a_optimizer": self.a_optimizer.state_dict(), "lam": self.lam, "dlam": self.dlam,
                "epoch": self.epoch, "records": self.records, "last_pruned": self.last_pruned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.net.arch_keys():  # remove the pruned ops first so the module layout matches
            dead = (~state["model"][f"alive_{key}"].bool()).nonzero().tolist()
            for e, o in dead:
                if bool(self.net.alive(key)[e, o]):
                    self.net.remove_op(key, e, o)
        self.net.load_state_dict(state["model"])
        self.w_optimizer = self._weight_optimizer(None)
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.a_optimizer.load_state_dict(state["a_optimizer"])
        self.lam, self.dlam, self.epoch = state["lam"], state["dlam"], state["epoch"]
        self.records, self.last_pruned = state["records"], state["last_pruned"]


STRATEGIES.add("gold-nas", GoldNas)
