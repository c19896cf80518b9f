"""The fused forward of one source node of a DARTS-style search cell (issue 13).

A search cell's cost is thousands of tiny convolutions, most of them on the same input: every edge leaving a
node applies the same kinds of op to the same tensor. Here the cell is run source node by source node ("push"
order): once a node's state is complete, the contributions of *all* its outgoing edges are computed together
and handed back, one per edge, for the caller to add into the target nodes.

For one source with E outgoing edges:

* ReLU once (as the plain path does).
* The first depthwise stage of each conv kind (sep/dil, each kernel and dilation) for all edges through one
  ``ops.depthwise.depthwise_conv2d`` call on the shared input (one conv per slot, a backward that takes the fast
  CPU kernel per gradient); the second stage of the sep convs as one grouped depthwise conv per kernel size.
* Every pointwise 1×1 of the group (sep stage 1 and 2, dil) as one batched matmul (``einsum``) instead of one
  convolution per op: at DARTS widths the pointwise convs are per-call-overhead bound.
* The intermediate non-affine BNs of all sep convs as one ``F.batch_norm`` over the concatenated channels (a
  non-affine BN is per channel, so this is exact); the final BNs of every conv op and FactorizedReduce as one
  more, with the op weights folded in as the per-channel scale (as ``_weighted`` does). Running statistics are
  gathered from each op's own BN buffers and scattered back, so each op's BN sees exactly its own update.
* Pools once per source (each kind; average pools as ``ops.depthwise.avg_pool2d``): in training mode every
  edge's pool BN normalises the same pooled tensor with the same batch statistics, so its output is computed
  once and weighted per edge; each edge's BN running statistics are still updated as its own BN would.
* FactorizedReduce (the stride-2 skip): the E edges' ``conv_1``s are one conv, their ``conv_2``s another.
* Identity: ``w_e · x`` (P-DARTS skip dropout applied per edge, after identity).
* Any other op (``conv_7x1_1x7``, NB201 convs, affine BNs, ...) runs through the plain per-op path.
* In a data-parallel run whose BNs were converted to synchronise (``ops.norm.sync_batch_norms``), the grouped
  BNs take their batch statistics over all ranks too (``ops.norm.functional_batch_norm``).

The per-op ``nn.Module`` parameters stay the source of truth: grouped weights are built by ``torch.cat`` /
``torch.stack`` of the existing parameters in every forward, so optimizers, ``remove_op``, alive masks and
checkpoints are unchanged. The floating-point order differs from the plain path (sums over ops, BN reductions
over more channels), so results agree within float tolerance, not bit for bit (``tests/test_fastpath.py``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..ops import FactorizedReduce, Identity
from ..ops.depthwise import avg_pool2d, depthwise_conv2d
from ..ops.norm import functional_batch_norm, synchronised
from ..ops.primitives import DilConv, Pool, SepConv

__all__ = ["fused_source_forward", "op_kind"]

_UNSET = object()


def _plain_bn(bn: nn.Module) -> bool:
    return isinstance(bn, nn.BatchNorm2d) and not bn.affine and bn.momentum is not None


def _dw(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels == conv.out_channels
            and conv.bias is None and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def _pw(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.groups == 1 and conv.bias is None and conv.padding == (0, 0)
            and conv.in_channels == conv.out_channels)


def _dil_stage(block: nn.Module, with_relu: bool) -> tuple | None:
    """(dw, pw, bn) of a ``DilConv`` built without (stage 1) or with (sep stage 2) its leading ReLU."""
    if not isinstance(block, DilConv):
        return None
    mods = list(block)
    if with_relu:
        if len(mods) != 4 or not isinstance(mods[0], nn.ReLU):
            return None
        mods = mods[1:]
    elif len(mods) != 3:
        return None
    dw, pw, bn = mods
    if not (_dw(dw) and _pw(pw) and _plain_bn(bn)):
        return None
    return dw, pw, bn


def _geometry(dw: nn.Conv2d) -> tuple:
    return (dw.kernel_size, dw.stride, dw.padding, dw.dilation)


def _classify(op: nn.Module) -> tuple | None:
    if isinstance(op, Identity):
        return ("skip",)
    if isinstance(op, SepConv) and getattr(op, "wants_relu_input", False) and len(op) == 2:
        s1, s2 = _dil_stage(op[0], False), _dil_stage(op[1], True)
        if s1 is None or s2 is None or s2[0].stride != (1, 1):
            return None
        return ("conv", _geometry(s1[0]), _geometry(s2[0]))
    if isinstance(op, DilConv) and getattr(op, "wants_relu_input", False):
        s1 = _dil_stage(op, False)
        return None if s1 is None else ("conv", _geometry(s1[0]), None)
    if isinstance(op, Pool) and op.bn is not None and _plain_bn(op.bn):
        p = op.pool
        if isinstance(p, nn.MaxPool2d) and not p.ceil_mode and p.dilation == 1 and not p.return_indices:
            return ("pool", "max", p.kernel_size, p.stride, p.padding)
        if isinstance(p, nn.AvgPool2d) and not p.ceil_mode and p.divisor_override is None:
            return ("pool", "avg", p.kernel_size, p.stride, p.padding, p.count_include_pad)
        return None
    if (isinstance(op, FactorizedReduce) and isinstance(op.relu, nn.Identity) and _plain_bn(op.bn)
            and op.conv_1.bias is None and op.conv_2.bias is None):
        return ("fr",)
    return None


def op_kind(op: nn.Module) -> tuple | None:
    """How the fused path computes ``op`` (None: through the plain per-op path). Cached on the op."""
    kind = op.__dict__.get("_fused_kind", _UNSET)
    if kind is _UNSET:
        kind = _classify(op)
        op.__dict__["_fused_kind"] = kind
    return kind


def _stages(op: nn.Module) -> list[tuple]:
    if isinstance(op, SepConv):
        return [_dil_stage(op[0], False), _dil_stage(op[1], True)]
    return [_dil_stage(op, False)]


def _batch_norm(h: torch.Tensor, bns: Sequence[nn.BatchNorm2d], weight: torch.Tensor | None) -> torch.Tensor:
    """One batch norm over channels concatenated from ``bns`` (non-affine, so exact per channel); each
    BN's running statistics are gathered, updated as that BN would, and written back."""
    bn0 = bns[0]
    momentum, eps, training, track = bn0.momentum, bn0.eps, bn0.training, bn0.track_running_stats
    for bn in bns:
        if (bn.momentum, bn.eps, bn.training, bn.track_running_stats) != (momentum, eps, training, track):
            raise RuntimeError("fused BN group mixes momentum/eps/mode; use the plain path (search.fused=false)")
    if track:
        rm = torch.cat([bn.running_mean for bn in bns])
        rv = torch.cat([bn.running_var for bn in bns])
    else:
        rm = rv = None
    out = functional_batch_norm(h, rm, rv, weight, None, training or not track, momentum, eps, synchronised(bn0))
    if training and track:
        with torch.no_grad():
            if momentum != 0:
                sizes = [bn.num_features for bn in bns]
                torch._foreach_copy_([bn.running_mean for bn in bns], list(rm.split(sizes)))
                torch._foreach_copy_([bn.running_var for bn in bns], list(rv.split(sizes)))
            torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
    return out


def _pool_bn(p: torch.Tensor, bns: Sequence[nn.BatchNorm2d], w: torch.Tensor) -> torch.Tensor:
    """``[N, S, C, H, W]``: slot s = w[s] · bns[s](p), with each BN's running stats updated as its own."""
    bn0 = bns[0]
    if not (bn0.training or not bn0.track_running_stats):  # eval: per-edge running statistics
        out = [F.batch_norm(p, bn.running_mean, bn.running_var, weight=w[s].expand(p.shape[1]), training=False,
                            eps=bn.eps) for s, bn in enumerate(bns)]
        return torch.stack(out, 1)
    for bn in bns:
        if (bn.momentum, bn.eps, bn.training, bn.track_running_stats) != (
                bn0.momentum, bn0.eps, bn0.training, bn0.track_running_stats):
            raise RuntimeError("fused pool BNs mix momentum/eps/mode; use the plain path (search.fused=false)")
    track, momentum = bn0.track_running_stats, bn0.momentum
    if track:  # the same calls when recomputed for backward (momentum 0), so checkpointing sees the same graph
        mean = torch.zeros(p.shape[1], dtype=bn0.running_mean.dtype, device=p.device)
        var = torch.ones(p.shape[1], dtype=bn0.running_var.dtype, device=p.device)
        n = functional_batch_norm(p, mean, var, None, None, True, 1.0, bn0.eps,  # mean/var := batch stats
                                  synchronised(bn0))
        if momentum != 0:
            with torch.no_grad():
                torch._foreach_lerp_([bn.running_mean for bn in bns], [mean] * len(bns), momentum)
                torch._foreach_lerp_([bn.running_var for bn in bns], [var] * len(bns), momentum)
    else:
        n = functional_batch_norm(p, None, None, None, None, True, 0.1, bn0.eps, synchronised(bn0))
    if track:
        with torch.no_grad():
            torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
    return n.unsqueeze(1) * w.view(1, -1, 1, 1, 1).to(n.dtype)


def _pool(x: torch.Tensor, kind: tuple) -> torch.Tensor:
    if kind[1] == "max":
        _, _, k, s, pad = kind
        if x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous():
            # the CPU max-pool kernel is 3-5x faster (forward and backward) on channels-last input than on NCHW at
            # DARTS sizes (docs/performance.md); the result is the same tensor (a max is exact), returned as NCHW
            cl = x.contiguous(memory_format=torch.channels_last)
            return F.max_pool2d(cl, k, s, pad).contiguous()
        return F.max_pool2d(x, k, s, pad)
    _, _, k, s, pad, include = kind
    return avg_pool2d(x, k, s, pad, include)


def _pointwise(weights: Sequence[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """``h``: ``[N, G, C, P]``; slot g through its own C×C 1×1 conv, as one batched matmul."""
    w = torch.stack([v.reshape(v.shape[0], v.shape[1]) for v in weights])  # [G, C_out, C_in]
    return torch.matmul(w.to(h.dtype), h)


def _slot_weights(rows: torch.Tensor, slots: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The op weights ``rows[edge, column]`` of ``slots``, one per slot, as one differentiable gather."""
    e_idx = torch.tensor([e for e, _ in slots], device=rows.device)
    c_idx = torch.tensor([col for _, col in slots], device=rows.device)
    return rows[e_idx, c_idx]


def _stack_slots(slots: Sequence[torch.Tensor], p: int) -> torch.Tensor:
    """``[N, S, C, P]`` contiguous from S tensors ``[N, C, H, W]`` of any layout: one copy, where stacking per
    kind and then concatenating the kinds would copy every slot twice."""
    out = torch.stack(list(slots), 1)
    return out.reshape(out.shape[0], out.shape[1], out.shape[2], p)


def fused_source_forward(x: torch.Tensor, x_relu: Callable[[], torch.Tensor], edges: Sequence[nn.Module],
                         rows: torch.Tensor, training: bool,
                         fallback: Callable[..., torch.Tensor]) -> list[torch.Tensor | None]:
    """Contributions ``Σ_k w_k · op_k(x)`` of every edge in ``edges`` (all leaving the same source ``x``, with
    the same stride); ``rows[i]`` is edge i's op-weight row. None for an edge without ops. ``fallback(op,
    split, input, w, skip_dropout, training)`` computes an op the fused path does not know."""
    n_edges = len(edges)
    convs: dict[tuple, list] = {}  # stage-1 geometry -> [(slot edge, col, op, stage-2 geometry)]
    pools: dict[tuple, list] = {}
    skips: list[tuple[int, int]] = []
    frs: list[tuple[int, int, nn.Module]] = []
    extra: list[torch.Tensor | None] = [None] * n_edges
    has_any = [False] * n_edges
    for e, edge in enumerate(edges):
        for col, op, split in zip(edge.columns, edge.ops, edge._splits):
            has_any[e] = True
            kind = op_kind(op)
            if kind is None:
                y = fallback(op, split, x_relu() if getattr(op, "wants_relu_input", False) else x, rows[e, col],
                             edge.skip_dropout, training)
                extra[e] = y if extra[e] is None else extra[e] + y
            elif kind[0] == "conv":
                convs.setdefault(kind[1], []).append((e, col, op, kind[2]))
            elif kind[0] == "pool":
                pools.setdefault(kind, []).append((e, col, op))
            elif kind[0] == "skip":
                skips.append((e, col))
            else:
                frs.append((e, col, op))
    if not any(has_any):
        return [None] * n_edges

    parts: list[torch.Tensor] = []  # [N, S_i, C, H', W'] slot tensors, already weighted
    slot_edges: list[int] = []
    # (pre-final-BN tensor [N, S_i, C, H', W'], its slots' final BNs, their (edge, column)) of the sep convs, the
    # dil convs and the FactorizedReduces: normalised group by group, since concatenating them for one BN call
    # would copy every slot once more
    finals: list[tuple[torch.Tensor, list[nn.BatchNorm2d], list[tuple[int, int]]]] = []

    if convs:
        r = x_relu()
        n, c = r.shape[:2]
        # stage 1: the first depthwise conv of every slot, on the shared input, one call per geometry
        sep_slots: list[tuple] = []  # (edge, col, op, geometry2) in stage-1 output order: seps first, then dils
        dil_slots: list[tuple] = []
        outs_sep: list[torch.Tensor] = []  # per slot [N, C, H', W']
        outs_dil: list[torch.Tensor] = []
        for geometry, slots in convs.items():
            d = depthwise_conv2d(r, [_stages(op)[0][0].weight for _, _, op, _ in slots], *geometry[1:])
            h, wd = d[0].shape[-2:]
            for slot, out in zip(slots, d):
                (sep_slots if slot[3] is not None else dil_slots).append(slot)
                (outs_sep if slot[3] is not None else outs_dil).append(out)
        # intermediates are dropped as soon as they are consumed: under recomputation nothing is saved, and the
        # block's transient memory is then what bounds the peak
        del d
        n_sep, g = len(sep_slots), len(sep_slots) + len(dil_slots)
        # sep and dil pointwise apart: a BN saving a slice of a shared output would keep all of it alive
        d_sep = _stack_slots(outs_sep, h * wd) if outs_sep else None
        d_dil = _stack_slots(outs_dil, h * wd) if outs_dil else None
        outs_sep.clear()
        outs_dil.clear()
        p1_dil = _pointwise([_stages(op)[0][1].weight for _, _, op, _ in dil_slots], d_dil) if dil_slots else None
        del d_dil
        if n_sep:
            p1 = _pointwise([_stages(op)[0][1].weight for _, _, op, _ in sep_slots], d_sep)
            del d_sep
            mid = F.relu(_batch_norm(p1.reshape(n, n_sep * c, h, wd),
                                     [_stages(op)[0][2] for _, _, op, _ in sep_slots], None))
            del p1
            # stage 2: one depthwise call per stage-2 geometry (grouped over the slots' channels)
            by_geo: dict[tuple, list[int]] = {}
            for i, sl in enumerate(sep_slots):
                by_geo.setdefault(sl[3], []).append(i)
            order: list[int] = []
            outs2 = []
            runs = list(by_geo.values())
            if [i for idx in runs for i in idx] == list(range(n_sep)):  # each geometry a run of slots: split
                srcs = list(mid.split([len(idx) * c for idx in runs], 1))
            else:
                srcs = [mid.reshape(n, n_sep, c, h, wd)[:, idx].reshape(n, len(idx) * c, h, wd) for idx in runs]
            for (geometry, idx), src in zip(by_geo.items(), srcs):
                dws = [_stages(sep_slots[i][2])[1][0] for i in idx]
                outs2.extend(depthwise_conv2d(src, [torch.cat([dw.weight for dw in dws])], *geometry[1:]))
                order.extend(idx)
            del mid, srcs, src
            d2 = torch.cat(outs2, 1) if len(outs2) > 1 else outs2[0]
            del outs2
            sep_slots = [sep_slots[i] for i in order]
            p2 = _pointwise([_stages(op)[1][1].weight for _, _, op, _ in sep_slots], d2.reshape(n, n_sep, c, h * wd))
            del d2
            finals.append((p2.view(n, n_sep, c, h, wd), [_stages(op)[1][2] for _, _, op, _ in sep_slots],
                           [(e, col) for e, col, _, _ in sep_slots]))
            del p2
        if dil_slots:
            finals.append((p1_dil.view(n, g - n_sep, c, h, wd), [_stages(op)[0][2] for _, _, op, _ in dil_slots],
                           [(e, col) for e, col, _, _ in dil_slots]))
            del p1_dil
    if frs:
        r = x_relu()
        shifted = r[:, :, 1:, 1:]
        if r.shape[-1] % 2:
            shifted = F.pad(shifted, (0, 1, 0, 1))
        ops = [op for _, _, op in frs]
        a = F.conv2d(r, torch.cat([op.conv_1.weight for op in ops]).to(r.dtype), stride=2)
        b = F.conv2d(shifted, torch.cat([op.conv_2.weight for op in ops]).to(r.dtype), stride=2)
        n, half, h2, w2 = a.shape[0], ops[0].conv_1.out_channels, a.shape[-2], a.shape[-1]
        s = len(ops)
        pre = torch.stack([a.reshape(n, s, half, h2, w2), b.reshape(n, s, half, h2, w2)], 2)  # [N, S, 2, C/2, H, W]
        finals.append((pre.view(n, s, 2 * half, h2, w2), [op.bn for op in ops], [(e, col) for e, col, _ in frs]))
        del a, b, shifted, pre
    while finals:
        pre, bns, slot_cols = finals.pop(0)
        n, s, c, h, wd = pre.shape
        out = _batch_norm(pre.reshape(n, s * c, h, wd), bns, _slot_weights(rows, slot_cols).repeat_interleave(c))
        del pre
        parts.append(out.reshape(n, s, c, h, wd))
        slot_edges += [e for e, _ in slot_cols]
    for kind, slots in pools.items():
        p = _pool(x, kind)
        parts.append(_pool_bn(p, [op.bn for _, _, op in slots], _slot_weights(rows, [(e, col) for e, col, _ in slots])))
        slot_edges += [e for e, _, _ in slots]
    if skips:
        term = x.unsqueeze(1) * _slot_weights(rows, skips).view(1, -1, 1, 1, 1).to(x.dtype)
        rates = [edges[e].skip_dropout for e, _ in skips]
        if training and any(rate > 0 for rate in rates):
            if len(set(rates)) == 1:
                term = F.dropout(term, rates[0])
            else:
                term = torch.stack([F.dropout(term[:, i], rate) if rate > 0 else term[:, i]
                                    for i, rate in enumerate(rates)], 1)
        parts.append(term)
        slot_edges += [e for e, _ in skips]

    # per edge, the sum over its slots; unbind (whose backward is one stack) rather than slicing, whose backward
    # would zero-fill a full-size gradient per slice
    results: list[torch.Tensor | None] = [None] * n_edges
    i = 0
    for part in parts:
        for y in part.unbind(1):
            e = slot_edges[i]
            results[e] = y if results[e] is None else results[e] + y
            i += 1
    for e in range(n_edges):
        if extra[e] is not None:
            results[e] = extra[e] if results[e] is None else results[e] + extra[e]
    return results
