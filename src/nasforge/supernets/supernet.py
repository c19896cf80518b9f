"""The weight-sharing network of a DARTS-style cell space (METHODS.md §1.2–1.4).

Architecture parameters are registered ``nn.Parameter``s, one ``[edges, ops]`` matrix per cell key ("normal"
and "reduce" when cells are shared by type, "cell0", "cell1", ... when every cell has its own), created in a
fixed order so that checkpoints and optimizers see them deterministically. A boolean ``alive`` buffer of the
same shape says which ops exist: removed ops are never instantiated (P-DARTS stages) or are deleted for good
(GOLD-NAS pruning), and get weight exactly 0.

Speed habits (DESIGN.md): `none` is never computed (its output is zero; it still takes part in the softmax
normaliser through its alpha); the ReLU that starts every conv op is computed once per source node and
shared by all its outgoing edges; op weights are computed once per forward, not once per edge.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from ..ops import FactorizedReduce, Identity, ReLUConvBN, create_op, wants_relu_input
from ..ops.norm import batch_norm
from ..ops.primitives import split_final_bn
from ..spaces import DartsSpace, reduction_positions
from ..models.heads import AuxiliaryHeadCIFAR
from .arch import ArchParametersMixin
from .fused import fused_source_forward
from .weighting import WEIGHTINGS

__all__ = ["MixedEdge", "SearchCell", "SuperNet", "reduction_positions", "RECOMPUTE_MODES"]

#: How a search cell trades compute for memory in training: "edges" keeps only each edge's (plain path) or each
#: source node's (fused path) inputs and outputs and recomputes the rest in backward; "none" keeps everything.
RECOMPUTE_MODES = ("edges", "none")


def _weighted(op: nn.Module, split: tuple | None, x: torch.Tensor, w: torch.Tensor, skip_dropout: float,
              training: bool) -> torch.Tensor:
    """``w · op(x)``. Ops that end in a non-affine BN get ``w`` as that BN's scale instead of a separate
    multiply: the same value, but the op output is not kept alive for the multiply's backward (a fifth less
    activation memory in a DARTS supernet) and one elementwise pass is saved."""
    if split is not None and w.dim() == 0:
        steps, bn = split
        h = x
        for f in steps:
            h = f(h)
        return batch_norm(bn, h, w.expand(h.shape[1]), None)  # synchronised over ranks when converted
    y = op(x)
    if isinstance(op, Identity) and skip_dropout > 0 and training:
        y = F.dropout(y, skip_dropout)
    return w * y


def _foldable(op: nn.Module) -> tuple | None:
    split = split_final_bn(op)
    return split if split is not None and not split[1].affine else None


class MixedEdge(nn.Module):
    """The ops of one edge; output = Σ_k w_k · op_k(x) over the instantiated (alive, non-`none`) ops."""

    def __init__(self, op_names: Sequence[str], alive: Sequence[bool], channels: int, stride: int) -> None:
        super().__init__()
        self.columns: list[int] = []  # column of each instantiated op in the edge's weight row
        ops = []
        for col, (name, on) in enumerate(zip(op_names, alive)):
            if on and name != "none":
                ops.append(create_op(name, channels, stride, affine=False, search=True, relu=False))
                self.columns.append(col)
        self.ops = nn.ModuleList(ops)
        self._splits = [_foldable(op) for op in ops]
        self.skip_dropout = 0.0  # P-DARTS: element-wise dropout after identity skip-connects

    def forward(self, x: torch.Tensor, x_relu: Callable[[], torch.Tensor], w: torch.Tensor) -> torch.Tensor | None:
        out: torch.Tensor | None = None
        for col, op, split in zip(self.columns, self.ops, self._splits):
            y = _weighted(op, split, x_relu() if wants_relu_input(op) else x, w[col], self.skip_dropout,
                          self.training)
            out = y if out is None else out + y
        return out

    def remove(self, col: int) -> None:
        """Delete the op of column ``col`` for good (its parameters disappear from the module)."""
        if col not in self.columns:
            return
        i = self.columns.index(col)
        del self.columns[i]
        del self.ops[i]
        del self._splits[i]


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module | Sequence[nn.Module]) -> Iterator[None]:
    """While an edge is recomputed for backward, its BNs must not update their running statistics again."""
    modules = [module] if isinstance(module, nn.Module) else list(module)
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    counts = [None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone() for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield
    finally:
        for bn, m, n in zip(bns, momenta, counts):
            bn.momentum = m
            if n is not None:  # the recomputation counted the batch a second time
                bn.num_batches_tracked.copy_(n)


class SearchCell(nn.Module):
    """A search cell: preprocess both inputs, then every node sums its mixed edges."""

    def __init__(self, space: DartsSpace, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool, alive: torch.Tensor) -> None:
        super().__init__()
        self.space = space
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels, affine=False) if reduction_prev
                            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedEdge(space.ops, alive[i].tolist(), channels, 2 if reduction and src < space.n_inputs else 1)
            for i, (src, _) in enumerate(space.edges))
        self.multiplier = space.nodes
        self.recompute = "none"  # see RECOMPUTE_MODES
        self.fused = False  # compute all edges leaving a node together (supernets/fused.py)
        self.recompute_chunk = 4  # fused + recompute: edges checkpointed together (see _source_block)
        n_in = space.n_inputs
        self._out_edges: list[list[int]] = [[] for _ in range(n_in + space.nodes)]
        for e, (src, _) in enumerate(space.edges):
            self._out_edges[src].append(e)
        self._edge_node = [dst - n_in for _, dst in space.edges]

    @property
    def checkpoint_edges(self) -> bool:
        return self.recompute != "none"

    @checkpoint_edges.setter
    def checkpoint_edges(self, on: bool) -> None:
        self.recompute = "edges" if on else "none"

    @staticmethod
    def _checkpointed(edge: "MixedEdge", x: torch.Tensor, x_relu: torch.Tensor, w: torch.Tensor
                      ) -> torch.Tensor | None:
        """Run ``edge`` keeping only its inputs and output; its inner activations are recomputed in backward."""
        if not edge.columns:
            return None
        return checkpoint(lambda a, b, c: edge(a, lambda: b, c), x, x_relu, w, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(edge)))

    def _zero_node(self, states: list[torch.Tensor]) -> torch.Tensor:
        ref = states[-1] if not self.reduction else states[0][:, :, ::2, ::2]
        return torch.zeros_like(ref)

    def _source_block(self, src: int, x: torch.Tensor, x_relu: Callable[[], torch.Tensor], weights: torch.Tensor
                      ) -> list[torch.Tensor | None]:
        out = self._out_edges[src]
        edges = [self.edges[e] for e in out]
        rows = weights[out[0]:out[-1] + 1] if out == list(range(out[0], out[-1] + 1)) else weights[out]
        if self.recompute == "edges" and self.training and torch.is_grad_enabled():
            # checkpointed in chunks of at most `recompute_chunk` edges: what backward recomputes at once (the
            # transient peak) stays near the plain path's one edge, the kernels stay batched over the chunk
            ys: list[torch.Tensor | None] = []
            size = max(1, self.recompute_chunk)
            for i in range(0, len(edges), size):
                chunk = edges[i:i + size]
                if not any(edge.columns for edge in chunk):
                    ys += [None] * len(chunk)
                    continue

                def block(a: torch.Tensor, w: torch.Tensor, chunk=chunk) -> list[torch.Tensor | None]:
                    cache: list[torch.Tensor] = []

                    def relu() -> torch.Tensor:
                        if not cache:
                            cache.append(F.relu(a))
                        return cache[0]
                    return fused_source_forward(a, relu, chunk, w, self.training, _weighted)
                ys += checkpoint(block, x, rows[i:i + size], use_reentrant=False,
                                 context_fn=lambda chunk=chunk: (contextlib.nullcontext(), _frozen_bn_stats(chunk)))
            return ys
        return fused_source_forward(x, x_relu, edges, rows, self.training, _weighted)

    def _forward_fused(self, states: list[torch.Tensor], relu_of: Callable[[int], Callable[[], torch.Tensor]],
                       weights: torch.Tensor) -> torch.Tensor:
        """Push order: once a node is complete, all its outgoing edges are computed together and added into
        their target nodes (same sums, same order of terms per node as the pull order)."""
        n_in = self.space.n_inputs
        acc: list[torch.Tensor | None] = [None] * self.space.nodes
        for src in range(n_in + self.space.nodes):
            if src >= n_in:
                node = acc[src - n_in]
                states.append(node if node is not None else self._zero_node(states))
            if not self._out_edges[src]:
                continue
            ys = self._source_block(src, states[src], relu_of(src), weights)
            for e, y in zip(self._out_edges[src], ys):
                if y is not None:
                    j = self._edge_node[e]
                    acc[j] = y if acc[j] is None else acc[j] + y
        return torch.cat(states[n_in:], dim=1)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        relu_cache: dict[int, torch.Tensor] = {}

        def relu_of(i: int) -> Callable[[], torch.Tensor]:
            def get() -> torch.Tensor:
                if i not in relu_cache:
                    relu_cache[i] = F.relu(states[i])
                return relu_cache[i]
            return get

        if self.fused:
            return self._forward_fused(states, relu_of, weights)
        e = 0
        for j in range(self.space.nodes):
            node: torch.Tensor | None = None
            for src in range(self.space.n_inputs + j):
                if self.checkpoint_edges and self.training and torch.is_grad_enabled():
                    y = self._checkpointed(self.edges[e], states[src], relu_of(src)(), weights[e])
                else:
                    y = self.edges[e](states[src], relu_of(src), weights[e])
                e += 1
                if y is not None:
                    node = y if node is None else node + y
            if node is None:  # every op into this node was `none` or removed: the node is zero
                node = self._zero_node(states)
            states.append(node)
        return torch.cat(states[self.space.n_inputs:], dim=1)


class SuperNet(ArchParametersMixin, nn.Module):
    """DARTS search network: stem, ``layers`` search cells (reductions at ⌊L/3⌋, ⌊2L/3⌋), pool, classifier.

    Args:
        space: the cell space (ops, nodes).
        channels: initial channels C (16 in the DARTS search).
        num_classes: classifier outputs.
        layers: number of cells (8 in the DARTS search).
        in_channels: image channels (3 for CIFAR, 1 for digits/MNIST).
        weighting: name in ``WEIGHTINGS`` (softmax for DARTS, sigmoid for GOLD-NAS).
        alive: per cell key, a bool ``[edges, ops]`` mask of the ops to instantiate (default: all).
        share_cells: True = one architecture per cell type (DARTS); False = one per cell (GOLD-NAS).
        generator: draws the initial alphas, 1e-3·N(0, 1) as in DARTS.
    """

    def __init__(self, space: DartsSpace, channels: int, num_classes: int, layers: int, in_channels: int = 3,
                 stem_multiplier: int = 3, weighting: str = "softmax",
                 alive: dict[str, torch.Tensor] | None = None, share_cells: bool = True,
                 generator: torch.Generator | None = None, auxiliary: bool = False) -> None:
        super().__init__()
        self.space = space
        self.layers = layers
        self.weighting_name = weighting
        self._weighting = WEIGHTINGS.get(weighting)
        self.share_cells = share_cells
        reductions = reduction_positions(layers)
        self.cell_keys = [("reduce" if i in reductions else "normal") if share_cells else f"cell{i}"
                          for i in range(layers)]
        keys = list(dict.fromkeys(["normal", "reduce"] if share_cells else self.cell_keys))
        n_edges, n_ops = len(space.edges), len(space.ops)
        self.alphas = nn.ParameterDict({
            k: nn.Parameter(1e-3 * torch.randn(n_edges, n_ops, generator=generator)) for k in keys})
        for k in keys:
            mask = torch.ones(n_edges, n_ops, dtype=torch.bool) if alive is None else alive[k].clone().bool()
            self.register_buffer(f"alive_{k}", mask)

        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = SearchCell(space, c_prev_prev, c_prev, c_curr, reduction, reduction_prev,
                              self.alive(self.cell_keys[i]))
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if auxiliary and i == 2 * layers // 3:
                c_aux = c_prev
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        # GOLD-NAS regularises its one-level search with the evaluation network's auxiliary head
        self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes) if auxiliary else None
        self.amp = False  # bf16 autocast (set_amp)
        self.channels_last = False  # NHWC activations and weights (set_channels_last)

    # -- architecture ------------------------------------------------------------------------------------
    def remove_op(self, key: str, edge: int, col: int) -> None:
        """Remove op ``col`` of ``edge`` from every cell using ``key``, for good."""
        self.alive(key)[edge, col] = False
        for cell, k in zip(self.cells, self.cell_keys):
            if k == key:
                cell.edges[edge].remove(col)

    def set_checkpoint_edges(self, on: bool) -> None:
        """Trade compute for memory: recompute each edge's activations in the backward pass (about 4x less
        activation memory for about a third more time). Results are unchanged: the recomputation replays the
        same RNG state and leaves BN running statistics alone."""
        for cell in self.cells:
            cell.checkpoint_edges = on

    def set_recompute(self, mode: str) -> None:
        """``"edges"``: recompute inside each edge (plain path) or each source node's block (fused path) in
        backward; ``"none"``: keep every activation (fastest, most memory)."""
        if mode not in RECOMPUTE_MODES:
            raise ValueError(f"recompute mode must be one of {RECOMPUTE_MODES}, got {mode!r}")
        for cell in self.cells:
            cell.recompute = mode

    def set_fused(self, on: bool) -> None:
        """Compute all edges leaving a node together (``supernets/fused.py``): same results within float
        tolerance, far fewer kernel calls."""
        for cell in self.cells:
            cell.fused = on

    def set_channels_last(self, on: bool) -> None:
        """Keep weights and activations in channels-last (NHWC) memory order: on this CPU batch norm and max
        pooling run ~4x faster in it (docs/performance.md); on a GPU it suits tensor cores. Same results."""
        self.channels_last = on
        self.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    def set_amp(self, on: bool) -> None:
        """Run the forward under bf16 autocast (a GPU option; logits come back as float32)."""
        self.amp = on

    def set_compile(self, on: bool) -> None:
        """``torch.compile`` each search cell (compiled on first use; recompiles only when shapes change)."""
        for cell in self.cells:
            if on and not getattr(cell, "_compiled_call_impl", None):
                cell.compile(dynamic=False)
            elif not on and getattr(cell, "_compiled_call_impl", None):
                cell._compiled_call_impl = None

    def configure(self, *, fused: bool = False, checkpoint_edges: bool = False, amp: bool = False,
                  channels_last: bool = False, compile: bool = False, recompute_chunk: int = 4) -> "SuperNet":
        """Apply a strategy config's speed and memory options (``search.fused`` and friends)."""
        if channels_last and not fused:
            # measured: the plain path's alpha gradients in channels-last differ from NCHW by up to ~1e-2 in a
            # 3-cell supernet while each cell alone agrees (cause not found); the fused path agrees (tested)
            raise ConfigError("search.channels_last needs search.fused=true (docs/performance.md)")
        self.set_fused(fused)
        self.set_checkpoint_edges(checkpoint_edges)
        for cell in self.cells:
            cell.recompute_chunk = recompute_chunk
        self.set_amp(amp)
        if channels_last or getattr(self, "channels_last", False):
            self.set_channels_last(channels_last)
        self.set_compile(compile)
        return self

    def set_skip_dropout(self, p: float) -> None:
        for cell in self.cells:
            for edge in cell.edges:
                edge.skip_dropout = p

    # -- forward -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits, and the auxiliary head's logits in training mode when the supernet has one."""
        weights = self.op_weights()
        aux = None
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            s0 = s1 = self.stem(x)
            for i, (cell, key) in enumerate(zip(self.cells, self.cell_keys)):
                s0, s1 = s1, cell(s0, s1, weights[key])
                if self.auxiliary_head is not None and self.training and i == 2 * self.layers // 3:
                    aux = self.auxiliary_head(s1)
            logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if self.amp:
            logits, aux = logits.float(), None if aux is None else aux.float()
        return logits, aux
