"""EnTranNAS: the DST formula, Engine/Transit cells, feature sharing, gradients, options, resume, end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch

import nasforge
from nasforge.config import from_dict
from nasforge.errors import ConfigError
from nasforge.genotypes.nb201_text import nb201_ops_of
from nasforge.ops import DARTS_OPS
from nasforge.spaces import DartsSpace, FreeTopologySpace
from nasforge.strategies import EnTranNas, EnTranNasConfig, SearchContext
from nasforge.supernets.entrannas import (EnTranSuperNet, NB201EnTranSuperNet, dst_weights, masks_of_genotype,
                                          thresholds_of)

OPS7 = tuple(o for o in DARTS_OPS if o != "none")
FAST = ["search.epochs=3", "data.n_train=200"]


def _net(derivation: str = "rule", layers: int = 3, engines=(0, 1), sharing: bool = True, seed: int = 0,
         space: DartsSpace | None = None, temperature: float = 1.0) -> EnTranSuperNet:
    return EnTranSuperNet(space or DartsSpace(ops=OPS7), 4, 10, layers, engines, in_channels=1,
                          temperature=temperature, derivation=derivation, feature_sharing=sharing,
                          generator=torch.Generator().manual_seed(seed))


def _x(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _randomise(net, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.arch_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


# -- the DST formula -------------------------------------------------------------------------------------------

def test_dst_formula_on_hand_computed_values():
    """One node with two edges of three ops: max p = 0.6, t = 0.45 (= 9/20).
    r = p / 0.6: edge 0 = [5/6, 1/2, 1/3], edge 1 = [1, 5/12, 1/4];
    q = ReLU(r - 9/20): edge 0 = [23/60, 3/60, 0], edge 1 = [33/60, 0, 0];
    q̂ per edge: edge 0 = [23/26, 3/26, 0], edge 1 = [1, 0, 0]."""
    p = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.25, 0.15]], dtype=torch.float64)
    q_hat, q = dst_weights(p, torch.tensor([0, 0]), torch.tensor([0.45], dtype=torch.float64))
    torch.testing.assert_close(q, torch.tensor([[23 / 60, 3 / 60, 0], [33 / 60, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(q_hat, torch.tensor([[23 / 26, 3 / 26, 0], [1, 0, 0]], dtype=torch.float64))


def test_dst_max_and_threshold_are_per_node_and_an_empty_edge_stays_zero():
    """Two nodes: node 0 (edges 0, 1) and node 1 (edges 2, 3, 4), each with its own max and threshold.
    Node 1, t = 0.5, max 0.8: r(edge 2) = [1/8, 1/4] -> all cut; r(edge 3) = [1/2, 1/2] -> 0 (not > 0);
    r(edge 4) = [1, 1/8] -> q = [1/2, 0] -> q̂ = [1, 0]."""
    p = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.1, 0.2], [0.4, 0.4], [0.8, 0.1]], dtype=torch.float64)
    t = torch.tensor([0.5, 0.5], dtype=torch.float64)
    q_hat, q = dst_weights(p, torch.tensor([0, 0, 1, 1, 1]), t)
    # node 0, max 0.7: r = [1, 3/7], [4/7, 6/7] -> q = [1/2, 0], [1/14, 5/14] -> q̂ = [1, 0], [1/6, 5/6]
    torch.testing.assert_close(q_hat[:2], torch.tensor([[1, 0], [1 / 6, 5 / 6]], dtype=torch.float64))
    torch.testing.assert_close(q_hat[2:], torch.tensor([[0, 0], [0, 0], [1, 0]], dtype=torch.float64))
    assert torch.isfinite(q_hat).all()


def test_engine_weights_from_alpha_beta_and_temperature():
    """The supernet's Engine weights are q̂ of softmax(α/τ) with t = sigmoid(β): α = τ·log p gives p back."""
    space = DartsSpace(ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3"), nodes=1)  # node 2 <- edges 0, 1
    net = _net("dst", space=space, temperature=0.5)
    p = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.25, 0.15]])
    with torch.no_grad():
        net.alphas["normal"].copy_(0.5 * p.log())
        net.betas["normal"].fill_(math.log(0.45 / 0.55))
    torch.testing.assert_close(net.thresholds()["normal"], torch.tensor([0.45]))
    torch.testing.assert_close(net.op_weights()["normal"], torch.tensor([[23 / 26, 3 / 26, 0], [1, 0, 0]]))
    g = net.genotype()
    assert sorted((e.src, e.op) for e in g.normal.edges) == [(0, "max_pool_3x3"), (0, "skip_connect"),
                                                             (1, "max_pool_3x3")]


def test_every_node_keeps_at_least_one_input():
    """Whatever α and β (even a threshold that rounds to 1 in float32), the strongest pair of every node survives."""
    net = _net("dst")
    for seed in range(40):
        _randomise(net, scale=[0.1, 3.0, 30.0][seed % 3], seed=seed)
        with torch.no_grad():
            for b in net.betas.values():
                b.add_(torch.tensor([0.0, 20.0, 50.0, -50.0]))  # t ~ 1 (sigmoid(50) == 1.0 in float32), t ~ 0
        g = net.genotype()  # a CellArch with an empty node would raise
        for key, cell in zip(("normal", "reduce"), g.cells):
            p = net.softmax_weights()[key].detach()
            for n in cell.nodes:
                rows = [i for i, (_, d) in enumerate(net.space.edges) if d == n]
                e, k = divmod(int(p[rows].argmax()), p.shape[1])
                assert (net.space.edges[rows[e]][0], n, net.space.ops[k]) in {(x.src, x.dst, x.op)
                                                                             for x in cell.edges}
        FreeTopologySpace(ops=OPS7).validate(g)
    assert float(thresholds_of(torch.tensor(50.0))) < 1.0


# -- Engine-cells, Transit-cells, feature sharing ---------------------------------------------------------------

def _count_calls(net):
    calls: Counter = Counter()
    hooks = []
    for ci, cell in enumerate(net.cells):
        for u, unit in enumerate(cell.graph.ops):
            for s, op in enumerate(unit):
                hooks.append(op.register_forward_hook(lambda m, i, o, key=(ci, u, s): calls.update([key])))
    return calls, hooks


@pytest.mark.parametrize("derivation", ["rule", "dst"])
@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "per_edge"])
def test_transit_cells_compute_only_the_derived_ops(derivation, sharing):
    net = _net(derivation, layers=5, engines=(0, 1), sharing=sharing)  # cells 2, 3 (reduce), 4: Transit
    _randomise(net, scale=2.0, seed=1)
    net.train()
    for step in range(3):
        calls, hooks = _count_calls(net)
        net(_x(seed=step))
        for h in hooks:
            h.remove()
        g = net.genotype()
        masks = masks_of_genotype(g, ["normal", "reduce"], net.space.edges, net.space.ops)
        for ci, cell in enumerate(net.cells):
            called = {(u, s) for (c, u, s) in calls if c == ci}
            if cell.engine and derivation == "rule":
                assert len(called) == sum(len(unit) for unit in cell.graph.ops)  # every op of an Engine-cell
                continue
            expected = cell.graph.used_units(masks[cell.key])
            assert called == expected, f"cell {ci} ran ops outside the derived cell"
            assert all(calls[(ci, u, s)] == 1 for u, s in called)
            if not cell.engine:
                assert len(called) < sum(len(unit) for unit in cell.graph.ops)
        assert {id(m) for m in net.modules()} >= {id(op) for c in net.cells for u in c.graph.ops for op in u}
        with torch.no_grad():  # a different architecture for the next step: ops re-enter and leave S_j
            for p in net.arch_parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(10 + step)))


def test_transit_cell_is_the_unweighted_sum_of_the_derived_ops():
    net = _net("rule", layers=3, engines=(0, 1))
    _randomise(net, scale=1.0, seed=3)
    net.eval()
    cell = net.cells[2]  # Transit reduction cell
    routing = net.routing()
    s0, s1 = torch.randn(2, 4 * 4, 4, 4), torch.randn(2, 4 * 8, 2, 2)
    with torch.no_grad():
        out = cell(s0, s1, routing)
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        for node in net.space.concat:
            total = 0
            for e in net.genotype().reduce.inputs_of(node):
                row = net.space.edges.index((e.src, e.dst))
                op = cell.graph.op_module(row, net.space.ops.index(e.op))
                x = states[e.src]
                total = total + op(torch.relu(x) if getattr(op, "wants_relu_input", False) else x)
            states.append(total)
    torch.testing.assert_close(out, torch.cat(states[2:], 1))


def test_feature_sharing_computes_each_source_op_once_per_cell():
    shared, per_edge = _net("rule", sharing=True), _net("rule", sharing=False)
    n_sources, n_edges = 5, 14
    assert [len(shared.cells[0].graph.ops), len(per_edge.cells[0].graph.ops)] == [n_sources, n_edges]
    n_params = lambda net: sum(p.numel() for p in net.weight_parameters())  # noqa: E731
    assert n_params(shared) < n_params(per_edge)
    calls, hooks = _count_calls(shared)
    shared(_x())
    engine = [k for k in calls if k[0] == 0]
    assert len(engine) == n_sources * len(OPS7) and set(calls[k] for k in engine) == {1}
    # the op on node i is one module for every edge leaving i; the mixing weights stay per edge
    graph = shared.cells[0].graph
    rows_from_0 = [i for i, (s, _) in enumerate(shared.space.edges) if s == 0]
    assert len({id(graph.op_module(r, 4)) for r in rows_from_0}) == 1
    assert len({id(per_edge.cells[0].graph.op_module(r, 4)) for r in rows_from_0}) == len(rows_from_0)


def test_engine_cell_is_the_weighted_sum_over_shared_features():
    net = _net("dst", layers=3, engines=(0, 1))
    _randomise(net, scale=1.5, seed=4)
    net.eval()
    cell, routing = net.cells[0], net.routing()
    w = routing.weights["normal"].detach()
    s = torch.randn(2, 12, 8, 8)
    with torch.no_grad():
        out = cell(s, s, routing)
        states = [cell.preprocess0(s), cell.preprocess1(s)]
        for node in net.space.concat:
            total = 0
            for row, (src, dst) in enumerate(net.space.edges):
                if dst != node:
                    continue
                for k in range(len(OPS7)):
                    if w[row, k] > 0:
                        op = cell.graph.op_module(row, k)
                        x = states[src]
                        total = total + w[row, k] * op(torch.relu(x) if getattr(op, "wants_relu_input", False) else x)
            states.append(total)
    torch.testing.assert_close(out, torch.cat(states[2:], 1))


@pytest.mark.parametrize("derivation", ["rule", "dst"])
def test_arch_gradients_come_only_from_engine_cells(derivation):
    """Each cell run on detached inputs: an Engine-cell's output depends on its type's α (and β), a Transit-cell's
    on no architecture parameter at all (S_j is derived without a graph)."""
    net = _net(derivation, layers=5, engines=(0, 1))  # Engine: 0 (normal), 1 (reduce); Transit: 2, 3 (reduce), 4
    _randomise(net, scale=0.5, seed=5)
    inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for ci, cell in enumerate(net.cells):
        cell.register_forward_pre_hook(lambda m, args, ci=ci: inputs.__setitem__(ci, (args[0], args[1])))
    with torch.no_grad():
        net(_x())
    routing = net.routing()
    arch = dict(zip(["alpha_normal", "alpha_reduce", "beta_normal", "beta_reduce"], net.arch_parameters()))
    for ci, cell in enumerate(net.cells):
        out = cell(*inputs[ci], routing)
        grads = dict(zip(arch, torch.autograd.grad(out.square().sum(), list(arch.values()), allow_unused=True,
                                                   retain_graph=True)))
        if cell.engine:
            own = [n for n in grads if n.endswith(cell.key)]
            assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in own), ci
        else:
            assert all(g is None for g in grads.values()), f"Transit-cell {ci} reaches the architecture"
    loss = net(_x()).logsumexp(1).mean()
    assert all(g is not None and torch.isfinite(g).all() for g in torch.autograd.grad(loss, net.arch_parameters()))
