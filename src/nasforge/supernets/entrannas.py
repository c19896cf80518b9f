"""EnTranNAS super-networks (METHODS.md §4.2; METHODS-ADDENDUM.md §2, §7): Engine-cells and Transit-cells.

An **Engine-cell** is a differentiable cell: node j = Σ_{i<j} Σ_k w_{i,j}^k · o_i^k(x_i), with w the temperature
softmax p = softmax(α_{i,j}/τ) or, with differentiable sparsification (DST), its thresholded and renormalised
form q̂ (:func:`dst_weights`). Architecture gradients come only from Engine-cells.

A **Transit-cell** computes only the currently derived sub-graph S_j of every node, as the unweighted sum
node j = Σ_{(i,k)∈S_j} o_i^k(x_i), exactly as the final network does; S_j is re-derived from the shared α at every
forward pass and carries no gradient to α. A Transit-cell keeps every op's weights allocated (an op can re-enter
S_j later) but never runs an op outside S_j. Its ops are built as the evaluation network builds them (affine
BNs, pools without BN) since nothing weights them [INFER: the sources say only "as the final network"].

**Feature sharing** (``feature_sharing=True``): inside a cell, op k applied to node i is computed once and feeds
every later node; the op's parameters belong to (source node, op), the mixing weights stay per edge. Off: one op
per (edge, op), DARTS style. Both live in :class:`CellGraph`, which memoises features per *unit* — the source
node with sharing, the edge without — so there is one code path for the two modes and both cell kinds.

Two macro skeletons carry the cells: the DARTS CIFAR search network (:class:`EnTranSuperNet`, α shared per cell
type) and the NAS-Bench-201 skeleton (:class:`NB201EnTranSuperNet`, one α for all cells). Both hold their
architecture in :class:`EnTranArch`: α per cell type, and with DST one β per intermediate node.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..genotypes import CellArch, Edge, Genotype
from ..genotypes.nb201_text import NB201_EDGES, NB201_OPS
from ..models.nb201 import NB201Body
from ..ops import FactorizedReduce, ReLUConvBN, create_op, wants_relu_input
from ..spaces import DartsSpace, NB201Space, reduction_positions
from .arch import ArchParametersMixin
from .fused import fused_source_forward
from .supernet import _foldable, _frozen_bn_stats, _weighted
from .weighting import softmax_weights

__all__ = ["DERIVATIONS", "dst_weights", "thresholds_of", "CellGraph", "Routing", "EnTranArch", "EnTranCell",
           "EnTranSuperNet", "NB201EnTranCell", "NB201EnTranSuperNet", "masks_of_genotype"]

DERIVATIONS = ("rule", "dst")

#: t_j never reaches 1 in floating point (sigmoid(β) rounds to 1.0 in float32 for β > ~17), so the strongest pair
#: of a node, whose max-normalised weight is exactly 1, always survives the threshold.
_T_MAX = 1.0 - 2.0 ** -20


def thresholds_of(beta: torch.Tensor) -> torch.Tensor:
    """t_j = sigmoid(β_j), kept just below 1 (see ``_T_MAX``)."""
    return torch.sigmoid(beta).clamp(max=_T_MAX)


def dst_weights(p: torch.Tensor, node_of: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable sparsification with a learned threshold per node (METHODS.md §4.2, steps 3–4).

    Args:
        p: engine softmax weights ``[edges, ops]`` (0 for ops that do not exist).
        node_of: ``[edges]``, the 0-based intermediate node each edge enters.
        t: ``[nodes]``, the thresholds t_j.

    Returns:
        ``(q̂, q)``: q = ReLU(p / max_{(i,k) into j} p − t_j) over all (edge, op) pairs entering node j, and
        q̂ = q renormalised per edge (edges whose q is all zero stay zero). S_j = {q > 0}.
    """
    node_max = torch.stack([p[node_of == j].max() for j in range(t.shape[0])])
    q = F.relu(p / node_max[node_of].unsqueeze(1) - t[node_of].unsqueeze(1))
    total = q.sum(dim=1, keepdim=True)
    q_hat = torch.where(total > 0, q / total.clamp_min(torch.finfo(q.dtype).tiny), torch.zeros_like(q))
    return q_hat, q


def masks_of_genotype(genotype: Genotype, keys: Sequence[str], edges: Sequence[tuple[int, int]],
                      ops: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per cell key, the bool ``[edges, ops]`` mask of the (edge, op) pairs a genotype computes (`none`: none)."""
    masks = {}
    for key, cell in zip(keys, genotype.cells):
        mask = torch.zeros(len(edges), len(ops), dtype=torch.bool)
        for e in cell.edges:
            if e.op != "none":
                mask[edges.index((e.src, e.dst)), ops.index(e.op)] = True
        masks[key] = mask
    return masks


@dataclass
class Routing:
    """What every cell of one forward pass needs, computed once: the Engine-cells' op weights and the (edge, op)
    pairs they compute, and the derived pairs S the Transit-cells compute (bool masks on the CPU)."""

    weights: dict[str, torch.Tensor]
    engine_active: dict[str, torch.Tensor]
    derived: dict[str, torch.Tensor]
    genotype: Genotype

    def for_cell(self, key: str, engine: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pairs to compute, their weights) for a cell of type ``key``: weighted in Engine-cells, unweighted
        (``None``) in Transit-cells."""
        return (self.engine_active[key], self.weights[key]) if engine else (self.derived[key], None)


class _OpSlot:
    """One op of a unit dressed as a one-op edge of weight 1, so that the fused path computes the unit's ops
    together and hands back each op's feature on its own (the edges then weight and share them)."""

    def __init__(self, op: nn.Module) -> None:
        self.columns, self.ops, self._splits, self.skip_dropout = [0], [op], [_foldable(op)], 0.0


class CellGraph(nn.Module):
    """The searchable DAG of one cell: its op bank and the weighted (Engine) or unweighted (Transit) node sums.

    Args:
        edges: ``(src, dst)`` per edge, grouped by destination in increasing order.
        n_inputs: cell inputs (nodes ``0 .. n_inputs-1``).
        op_names: the candidate ops (columns of the weight matrices); `none` is never built nor computed.
        make_op: ``(op name, source node) -> module`` (the source decides the stride).
        feature_sharing: one op per (source node, op) instead of one per (edge, op).
        stride: how much the cell reduces resolution (for the zero tensor of a node without input).
    """

    def __init__(self, edges: Sequence[tuple[int, int]], n_inputs: int, op_names: Sequence[str],
                 make_op: Callable[[str, int], nn.Module], feature_sharing: bool, stride: int = 1) -> None:
        super().__init__()
        self.edges = tuple(edges)
        self.n_inputs = n_inputs
        self.stride = stride
        self.feature_sharing = feature_sharing
        self.columns = [k for k, name in enumerate(op_names) if name != "none"]
        self._slot = {k: i for i, k in enumerate(self.columns)}
        sources = sorted({src for src, _ in self.edges})
        self.unit_of_edge = [sources.index(src) if feature_sharing else e for e, (src, _) in enumerate(self.edges)]
        unit_sources = sources if feature_sharing else [src for src, _ in self.edges]
        self.ops = nn.ModuleList(nn.ModuleList(make_op(op_names[k], src) for k in self.columns)
                                 for src in unit_sources)
        self.unit_edges = [[e for e, unit in enumerate(self.unit_of_edge) if unit == u] for u in range(len(self.ops))]
        self.unit_source = list(unit_sources)
        self.n_nodes = len({dst for _, dst in self.edges})
        self.checkpoint_units = False
        self.fused = False  # a unit's ops computed together (supernets/fused.py); set by set_fused
        self._op_slots: dict[int, _OpSlot] = {}

    def op_module(self, edge: int, col: int) -> nn.Module:
        """The module that computes op column ``col`` on ``edge`` (shared by the edges of one source)."""
        return self.ops[self.unit_of_edge[edge]][self._slot[col]]

    def used_units(self, active: torch.Tensor) -> set[tuple[int, int]]:
        """The (unit, op slot) pairs a forward pass with ``active`` pairs runs."""
        return {(self.unit_of_edge[e], self._slot[k]) for e, k in active.nonzero().tolist() if k in self._slot}

    def _unit(self, u: int, plan: list[tuple[int, list[int]]], x: torch.Tensor,
              weights: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The contributions of unit ``u`` (a source node, or one edge) to each planned edge: every op the plan
        uses is computed once on ``x`` and added, weighted (Engine) or not (Transit), into each edge it serves."""
        relu = F.relu(x) if any(wants_relu_input(self.ops[u][self._slot[k]]) for _, ks in plan for k in ks) else None
        features: dict[int, torch.Tensor] = {}
        if self.fused:
            used = sorted({k for _, ks in plan for k in ks})
            slots = [self._op_slot(self.ops[u][self._slot[k]]) for k in used]
            ones = torch.ones(len(slots), 1, dtype=x.dtype, device=x.device)
            ys = fused_source_forward(x, lambda: relu, slots, ones, self.training, _weighted)
            features = {k: y for k, y in zip(used, ys) if y is not None}
        out = []
        for e, ks in plan:
            total: torch.Tensor | None = None
            for k in ks:
                if k not in features:
                    op = self.ops[u][self._slot[k]]
                    features[k] = op(relu if wants_relu_input(op) else x)
                y = features[k] if weights is None else weights[e, k] * features[k]
                total = y if total is None else total + y
            out.append(total)
        return tuple(out)

    def _op_slot(self, op: nn.Module) -> "_OpSlot":
        slot = self._op_slots.get(id(op))
        if slot is None or slot.ops[0] is not op:
            slot = self._op_slots[id(op)] = _OpSlot(op)
        return slot

    def forward(self, inputs: list[torch.Tensor], active: torch.Tensor, weights: torch.Tensor | None
                ) -> list[torch.Tensor]:
        """All node states: the inputs, then node j = Σ over active (edge, op) into j of [w ·] op(node i).

        ``active`` is a bool ``[edges, ops]`` mask on the CPU; ``weights`` the Engine-cell weights, ``None`` in
        a Transit-cell (unweighted sum). Nodes are built in order; as soon as node i exists, each unit reading
        it computes its ops once and pushes its contributions into the later nodes. With ``checkpoint_units``
        (training) a unit keeps only its input and its contributions; its op activations are recomputed in
        backward, with BN statistics left alone the second time.
        """
        states = list(inputs)
        pending: list[torch.Tensor | None] = [None] * self.n_nodes
        act = active.tolist()
        recompute = self.checkpoint_units and self.training and torch.is_grad_enabled()
        for node in range(self.n_inputs + self.n_nodes):
            if node >= self.n_inputs:
                value = pending[node - self.n_inputs]
                if value is None:  # every derived op into this node is `none` (NB201): the node is zero
                    ref = states[0] if self.stride == 1 else states[0][:, :, ::self.stride, ::self.stride]
                    value = torch.zeros_like(ref)
                states.append(value)
            for u in (u for u, src in enumerate(self.unit_source) if src == node):
                plan = [(e, [k for k in self.columns if act[e][k]]) for e in self.unit_edges[u]]
                plan = [(e, ks) for e, ks in plan if ks]
                if not plan:
                    continue
                if recompute:
                    run = lambda x, w, u=u, plan=plan: self._unit(u, plan, x, w)  # noqa: E731
                    outs = checkpoint(run, states[node], weights, use_reentrant=False,
                                      context_fn=lambda u=u: (contextlib.nullcontext(), _frozen_bn_stats(self.ops[u])))
                else:
                    outs = self._unit(u, plan, states[node], weights)
                for (e, _), y in zip(plan, outs):
                    j = self.edges[e][1] - self.n_inputs
                    pending[j] = y if pending[j] is None else pending[j] + y
        return states


class EnTranArch(ArchParametersMixin):
    """The architecture of an EnTranNAS supernet and its per-iteration derivation.

    Holds α (``[edges, ops]`` per cell key, 1e-3·N(0,1) as in DARTS) and, with DST, β (``[nodes]`` per key);
    the network subclass supplies ``_rule_genotype(weights)`` (the DARTS rule of its space) and
    ``_genotype_of_masks(masks)``.
    """

    betas: nn.ParameterDict
    edge_list: tuple[tuple[int, int], ...]
    op_list: tuple[str, ...]

    def _init_arch(self, keys: Sequence[str], edges: Sequence[tuple[int, int]], ops: Sequence[str], n_inputs: int,
                   temperature: float, derivation: str, beta_init: float, generator: torch.Generator | None) -> None:
        if derivation not in DERIVATIONS:
            raise ConfigError(f"search.derivation must be one of: {', '.join(DERIVATIONS)}; got {derivation!r}")
        self.edge_list, self.op_list = tuple(edges), tuple(ops)
        self.temperature, self.derivation = temperature, derivation
        self.alphas = nn.ParameterDict({
            k: nn.Parameter(1e-3 * torch.randn(len(edges), len(ops), generator=generator)) for k in keys})
        for k in keys:
            self.register_buffer(f"alive_{k}", torch.ones(len(edges), len(ops), dtype=torch.bool))  # type: ignore[attr-defined]
        self.register_buffer("node_of", torch.tensor([dst - n_inputs for _, dst in edges]))  # type: ignore[attr-defined]
        n_nodes = len({dst for _, dst in edges})
        self.betas = nn.ParameterDict({k: nn.Parameter(torch.full((n_nodes,), float(beta_init))) for k in keys}
                                      if derivation == "dst" else {})

    # -- architecture parameters -----------------------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        """α per cell key, then β per cell key (DST), in a fixed order."""
        return [self.alphas[k] for k in self.alphas.keys()] + [self.betas[k] for k in self.betas.keys()]

    def thresholds(self) -> dict[str, torch.Tensor]:
        """t_j per cell key (empty without DST)."""
        return {k: thresholds_of(b) for k, b in self.betas.items()}

    def softmax_weights(self) -> dict[str, torch.Tensor]:
        """p = softmax(α/τ) per edge, per cell key."""
        return {k: softmax_weights(a / self.temperature, self.alive(k)) for k, a in self.alphas.items()}

    def op_weights(self) -> dict[str, torch.Tensor]:
        """The Engine-cells' op weights: p, or q̂ with DST."""
        p = self.softmax_weights()
        if self.derivation == "rule":
            return p
        t = self.thresholds()
        return {k: dst_weights(p[k], self.node_of, t[k])[0] for k in p}

    def thresholded_mass(self) -> torch.Tensor:
        """The DST sparsity term [INFER, the paper's is unknown]: the mean over nodes (of every cell type) of
        Σ q over the pairs entering the node. Lowering it raises t_j and sharpens α, so fewer pairs survive."""
        p, t = self.softmax_weights(), self.thresholds()
        masses = [torch.zeros_like(t[k]).index_add(0, self.node_of, dst_weights(p[k], self.node_of, t[k])[1].sum(1))
                  for k in t]
        return torch.cat(masses).mean()

    # -- derivation ----------------------------------------------------------------------------------------------
    def routing(self) -> Routing:
        """Engine weights and S for one forward pass, from the current α (and β)."""
        weights = self.op_weights()
        detached = {k: w.detach().cpu() for k, w in weights.items()}
        if self.derivation == "rule":
            genotype = self._rule_genotype(detached)
            derived = masks_of_genotype(genotype, list(self.alphas.keys()), self.edge_list, self.op_list)
            engine = {k: self.alive(k).cpu() for k in self.alphas.keys()}
        else:  # S_j = {(i, k): q > 0}, and q > 0 exactly where q̂ > 0
            derived = {k: w > 0 for k, w in detached.items()}
            genotype = self._genotype_of_masks(derived)
            engine = derived
        return Routing(weights, engine, derived, genotype)

    def genotype(self) -> Genotype:
        """The architecture derived now (what the Transit-cells compute)."""
        with torch.no_grad():
            return self.routing().genotype

    def _rule_genotype(self, weights: dict[str, torch.Tensor]) -> Genotype:
        raise NotImplementedError

    def _genotype_of_masks(self, masks: dict[str, torch.Tensor]) -> Genotype:
        raise NotImplementedError

    def graphs(self) -> list[tuple[str, bool, CellGraph]]:
        """(cell key, is Engine-cell, graph) of every searchable cell, in network order."""
        raise NotImplementedError

    def set_fused(self, on: bool) -> None:
        """Compute the ops of each unit together (one batched pointwise matmul per stage, grouped BNs,
        :mod:`nasforge.supernets.fused`); ops the fused path does not know (affine Transit-cell ops, NB201's
        ReLU-conv-BN) still run one by one. Results equal the plain path's within float tolerance."""
        for _, _, graph in self.graphs():
            graph.fused = on

    def set_checkpoint_units(self, on: bool) -> None:
        """Recompute op activations in backward, keeping per unit (source node or edge) only its input and its
        contributions — DARTS's edge checkpointing; results are unchanged (same RNG replay, BN statistics
        updated once)."""
        for _, _, graph in self.graphs():
            graph.checkpoint_units = on

    def unused_parameter_names(self) -> set[str]:
        """Parameters no op of the current routing uses (Transit-cell ops outside S, DST Engine pairs with q̂ = 0):
        they rightly get no gradient this step."""
        with torch.no_grad():
            routing = self.routing()
        names: set[str] = set()
        graph_names = {id(m): n for n, m in self.named_modules()}  # type: ignore[attr-defined]
        for key, engine, graph in self.graphs():
            used = graph.used_units(routing.for_cell(key, engine)[0])
            prefix = graph_names[id(graph)]
            for u, unit in enumerate(graph.ops):
                for s, op in enumerate(unit):
                    if (u, s) not in used:
                        names |= {f"{prefix}.ops.{u}.{s}.{n}" for n, _ in op.named_parameters()}
        return names


class EnTranCell(nn.Module):
    """A DARTS-space cell of the EnTranNAS supernet, Engine or Transit: preprocessing, the graph, concatenation.

    Engine-cells build search ops (non-affine BNs, pools followed by a BN); Transit-cells evaluation ops.
    """

    def __init__(self, space: DartsSpace, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool, key: str, engine: bool, feature_sharing: bool) -> None:
        super().__init__()
        self.key, self.engine, self.reduction = key, engine, reduction
        affine = not engine
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels, affine=affine) if reduction_prev
                            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=affine))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=affine)
        stride = 2 if reduction else 1

        def make_op(name: str, src: int) -> nn.Module:
            return create_op(name, channels, stride if src < space.n_inputs else 1, affine=affine, search=engine,
                             relu=False)

        self.graph = CellGraph(space.edges, space.n_inputs, space.ops, make_op, feature_sharing, stride)
        self.multiplier = space.nodes

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, routing: Routing) -> torch.Tensor:
        states = self.graph([self.preprocess0(s0), self.preprocess1(s1)], *routing.for_cell(self.key, self.engine))
        return torch.cat(states[self.graph.n_inputs:], dim=1)


class EnTranSuperNet(EnTranArch, nn.Module):
    """The EnTranNAS super-network on the DARTS cell space (METHODS.md §1.3 macro: stem, ``layers`` cells with
    reductions at ⌊L/3⌋ and ⌊2L/3⌋, global pool, linear).

    Args:
        space: the cell space (ops, nodes).
        channels: initial channels C.
        num_classes: classifier outputs.
        layers: number of cells.
        engine_cells: positions of the Engine-cells; every other cell is a Transit-cell.
        in_channels: image channels.
        temperature: τ of the engine softmax.
        derivation: ``rule`` (DARTS top-2) or ``dst`` (learned thresholds, any number of inputs per node).
        feature_sharing: one op per (source node, op) inside each cell.
        beta_init: initial β_j (DST); 0 gives t_j = 0.5.
        generator: draws the initial α.
    """

    def __init__(self, space: DartsSpace, channels: int, num_classes: int, layers: int, engine_cells: Sequence[int],
                 in_channels: int = 3, temperature: float = 1.0, derivation: str = "rule",
                 feature_sharing: bool = True, beta_init: float = 0.0, stem_multiplier: int = 3,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.space, self.layers = space, layers
        reductions = reduction_positions(layers)
        self.cell_keys = ["reduce" if i in reductions else "normal" for i in range(layers)]
        self.engine_cells = tuple(sorted(set(engine_cells)))
        self._init_arch(["normal", "reduce"], space.edges, space.ops, space.n_inputs, temperature, derivation,
                        beta_init, generator)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i, key in enumerate(self.cell_keys):
            reduction = key == "reduce"
            if reduction:
                c_curr *= 2
            cell = EnTranCell(space, c_prev_prev, c_prev, c_curr, reduction, reduction_prev, key,
                              i in self.engine_cells, feature_sharing)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def graphs(self) -> list[tuple[str, bool, CellGraph]]:
        return [(c.key, c.engine, c.graph) for c in self.cells]

    def _rule_genotype(self, weights: dict[str, torch.Tensor]) -> Genotype:
        return self.space.derive(weights, {k: self.alive(k) for k in self.alphas.keys()})

    def _genotype_of_masks(self, masks: dict[str, torch.Tensor]) -> Genotype:
        cells = []
        for key in ("normal", "reduce"):
            edges = [Edge(src, dst, self.space.ops[k]) for e, (src, dst) in enumerate(self.space.edges)
                     for k in masks[key][e].nonzero().flatten().tolist()]
            cells.append(CellArch(tuple(edges), self.space.concat, reduction=key == "reduce",
                                  n_inputs=self.space.n_inputs, name=key))
        return Genotype.from_cells(*cells)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = self.routing()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, routing)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))


class NB201EnTranCell(nn.Module):
    """An NB201 cell of the EnTranNAS supernet: Engine (ops as the NB201 search cells: non-affine BNs, bare pools)
    or Transit (ops as the benchmark network: affine BNs). Output: the last node."""

    def __init__(self, channels: int, engine: bool, feature_sharing: bool) -> None:
        super().__init__()
        self.key, self.engine = "normal", engine

        def make_op(name: str, src: int) -> nn.Module:
            return create_op(name, channels, 1, affine=not engine, search=False, relu=False)

        self.graph = CellGraph(NB201_EDGES, 1, NB201_OPS, make_op, feature_sharing)

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return self.graph([x], *routing.for_cell(self.key, self.engine))[-1]


class NB201EnTranSuperNet(EnTranArch, NB201Body):
    """The EnTranNAS super-network on NAS-Bench-201: the benchmark skeleton (C, N cells per stage, residual
    reductions), one shared ``[6, 5]`` α (key ``normal``), Engine-cells at ``engine_cells`` (positions among
    the 3N cells). Derivation: the strongest op per edge. `none` is not a candidate (METHODS-ADDENDUM E14): a
    derived cell whose output node is fed only by `none` would cut every Transit-cell after it, and the
    Engine-cells before it, off the loss."""

    def __init__(self, num_classes: int, channels: int, cells_per_stage: int, engine_cells: Sequence[int],
                 in_channels: int = 3, temperature: float = 1.0, feature_sharing: bool = True,
                 generator: torch.Generator | None = None) -> None:
        engines = tuple(sorted(set(engine_cells)))
        positions = iter(range(3 * cells_per_stage))
        super().__init__(lambda c: NB201EnTranCell(c, next(positions) in engines, feature_sharing),
                         num_classes, channels, cells_per_stage, in_channels)
        self.engine_cells = engines
        self.space = NB201Space()
        self._init_arch(["normal"], NB201_EDGES, NB201_OPS, 1, temperature, "rule", 0.0, generator)
        self.alive("normal")[:, NB201_OPS.index("none")] = False  # never a candidate (see the class docstring)

    def graphs(self) -> list[tuple[str, bool, CellGraph]]:
        return [(c.key, c.engine, c.graph) for c in self.cells if isinstance(c, NB201EnTranCell)]

    def _rule_genotype(self, weights: dict[str, torch.Tensor]) -> Genotype:
        return self.space.derive(weights)

    def _genotype_of_masks(self, masks: dict[str, torch.Tensor]) -> Genotype:
        raise NotImplementedError("NB201 cells have one op per edge; DST derivation needs the DARTS space")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x, self.routing())  # type: ignore[arg-type]
