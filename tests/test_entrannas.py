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
SMALL_CELL = ["search.nodes=2", "search.ops=[max_pool_3x3,skip_connect,sep_conv_3x3]"]  # dense DST cells draw fast


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


# -- options -----------------------------------------------------------------------------------------------------

def _ctx() -> SearchContext:
    return SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=1, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("fields, needle", [
    ({"layers": 8, "engine_cells": [0, 8]}, "search.engine_cells=[0, 8]: position 8 is outside the network"),
    ({"layers": 8, "engine_cells": [0, -1]}, "search.engine_cells item -1 is out of range: must be >= 0"),
    ({"temperature": 0.0}, "search.temperature=0.0 is out of range: must be > 0"),
    ({"temperature": -1.0}, "search.temperature=-1.0 is out of range: must be > 0"),
    ({"layers": 8, "engine_cells": [0, 1]}, "no Engine-cell is a reduction cell"),
    ({"layers": 8, "engine_cells": [2]}, "no Engine-cell is a normal cell"),
    ({"engine_cells": []}, "search.engine_cells=[] is empty"),
    ({"space": "nb201", "layers": 2, "engine_cells": [6]}, "positions must be in 0..5"),
    ({"space": "nb201", "derivation": "dst"}, "search.derivation='dst' needs space='darts'"),
    ({"space": "nb201", "ops": list(DARTS_OPS)}, "search.ops: 'none' cannot be an NB201 candidate"),
    ({"derivation": "dst", "ops": list(DARTS_OPS)}, "search.ops: 'none' cannot be a candidate"),
    ({"dst_sparsity": 0.1}, "search.dst_sparsity=0.1 acts only with derivation='dst'"),
    ({"derivation": "topk"}, "search.derivation='topk' is out of range: must be one of: rule, dst"),
    ({"weighting": "sigmoid"}, "search.weighting='sigmoid' is out of range"),
])
def test_bad_options_are_refused_in_one_line(fields, needle):
    with pytest.raises(ConfigError) as exc:
        EnTranNas(from_dict(EnTranNasConfig, fields, "search."), _ctx())
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "nasforge", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.parametrize("override, needle", [
    ("search.engine_cells=[0,2,9]", "search.engine_cells=[0, 2, 9]: position 9 is outside the network; positions "
                                    "must be in 0..7 (8 cells)"),
    ("search.temperature=0", "search.temperature=0.0 is out of range: must be > 0"),
])
def test_cli_refuses_bad_options_in_one_line_before_writing(tmp_path, override, needle):
    res = _cli("search", "--method", "entrannas", "--preset", "paper", "--dataset", "digits", "--set", override,
               "--out", str(tmp_path / "run"))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasforge: error: ") and needle in lines[0], res.stderr
    assert not (tmp_path / "run").exists()


def test_defaults_are_the_first_normal_and_first_reduction_cell():
    assert EnTranNasConfig().engine_positions() == (0, 2)
    assert from_dict(EnTranNasConfig, {"layers": 20}).engine_positions() == (0, 6)
    assert from_dict(EnTranNasConfig, {"space": "nb201"}).engine_positions() == (0,)
    assert "none" not in EnTranNasConfig().ops  # METHODS-ADDENDUM E14


def test_dst_sparsity_term_pushes_thresholds_up():
    cfg = from_dict(EnTranNasConfig, {"layers": 3, "channels": 4, "derivation": "dst", "dst_sparsity": 1.0})
    s = EnTranNas(cfg, _ctx())
    mass = s.net.thresholded_mass()
    d_beta = torch.autograd.grad(mass, list(s.net.betas.values()))
    assert all((g < 0).all() for g in d_beta)  # raising t_j lowers the surviving mass
    batch = (_x(8), torch.arange(8))
    base = EnTranNas(from_dict(EnTranNasConfig, {"layers": 3, "channels": 4, "derivation": "dst"}), _ctx())
    base.net.load_state_dict(s.net.state_dict())
    s.net.eval(), base.net.eval()
    with torch.no_grad():
        assert float(s.arch_loss(batch)) == pytest.approx(float(base.arch_loss(batch)) + float(mass), rel=1e-5)


# -- runs --------------------------------------------------------------------------------------------------------

def test_resume_mid_search_is_bit_exact(tmp_path, interrupt_after):
    kw = dict(dataset="digits", preset="tiny-dst", overrides=FAST + SMALL_CELL, progress=False)
    ref = nasforge.search("entrannas", out=tmp_path / "ref", **kw)
    interrupt_after("save_checkpoint", 2)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("entrannas", out=tmp_path / "r", **kw)
    interrupt_after.restore()
    resumed = nasforge.search("entrannas", out=tmp_path / "r", resume=True, **kw)
    assert resumed.genotype == ref.genotype
    drop = {"epoch_s", "wall_s", "events", "peak_mem_mib"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in ref.history]
    report = (tmp_path / "r" / "report.md").read_text()
    assert report.count("\n| 3 | normal:") == 1  # the resumed run's report still has every epoch once
    ref_result = json.loads((tmp_path / "ref" / "result.json").read_text())
    res_result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert [r["thresholds"] for r in res_result["epochs"]] == [r["thresholds"] for r in ref_result["epochs"]]


def test_cli_tiny_dst_search_then_train_and_show(tmp_path):
    run = tmp_path / "s"
    res = _cli("search", "--method", "entrannas", "--preset", "tiny-dst", "--out", str(run), "--no-progress",
               "--set", "search.epochs=2", "--set", "data.n_train=200", *[a for o in SMALL_CELL for a in ("--set", o)])
    assert res.returncode == 0, res.stderr
    g = nasforge.load_genotype(run / "genotype.json")
    FreeTopologySpace(ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3"), nodes=2).validate(g)
    result = json.loads((run / "result.json").read_text())
    assert result["derivation"] == "dst" and result["engine_cells"] == [0, 1] and len(result["epochs"]) == 2
    assert result["inputs_per_node"]["normal"] == [len(g.normal.inputs_of(n)) for n in g.normal.nodes]
    assert all(0 < t < 1 for ts in result["thresholds"].values() for t in ts)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["genotype_hash"] for m in metrics] == [e["genotype_hash"] for e in result["epochs"]]
    assert all("inputs_per_node" in m and "thresholds" in m and m["peak_mem_mib"] > 0 for m in metrics)
    report = (run / "report.md").read_text()
    for needle in ("## EnTranNAS", "Engine-cells at positions [0, 1]", "thresholds t_j", "entrannas/epoch001.png", "entrannas/epoch002.json",
                   "entrannas/thresholds.png", "arch_weights.png"):
        assert needle in report, needle
    assert (run / "entrannas" / "epoch001.png").is_file()
    train = _cli("train", "--genotype", str(run / "genotype.json"), "--preset", "tiny", "--out", str(tmp_path / "t"),
                 "--no-progress", "--set", "train.epochs=1", "--set", "train.layers=3", "--set", "train.channels=4",
                 "--set", "data.n_train=128", "--set", "data.n_test=128")
    assert train.returncode == 0, train.stderr
    trained = json.loads((tmp_path / "t" / "result.json").read_text())
    show = _cli("show", str(run / "genotype.json"), "--cells", "3", "--channels", "4", "--json",
                "--png", str(tmp_path / "cells.png"))
    assert show.returncode == 0, show.stderr
    assert (tmp_path / "cells.png").is_file()
    assert json.loads(show.stdout)["params"] > 0 and trained["params"] > 0


def test_rule_search_exports_what_the_transit_cells_computed(tmp_path):
    res = nasforge.search("entrannas", dataset="digits", preset="tiny", out=tmp_path / "s",
                          overrides=FAST + ["search.feature_sharing=false"], progress=False)
    DartsSpace(ops=OPS7).validate(res.genotype)
    assert all(r["inputs_per_node"] == {"normal": [2] * 4, "reduce": [2] * 4} for r in res.history)
    trained = nasforge.train(res.genotype, dataset="digits", preset="tiny", out=tmp_path / "t", progress=False,
                             overrides=["train.epochs=1", "data.n_train=128", "data.n_test=128"])
    assert trained["params"] > 0


def test_nb201_tiny_search_is_judged_by_the_table(tmp_path, data_root):
    res = nasforge.search("entrannas", dataset="digits", preset="nb201-tiny", out=tmp_path / "s",
                          overrides=["data.n_train=300"], progress=False)
    ops = nb201_ops_of(res.genotype)
    assert len(ops) == 6
    result = json.loads((res.run_dir / "result.json").read_text())
    assert result["space"] == "nb201" and result["engine_cells"] == [0] and result["cells"] == 3
    bench = _cli("bench", "--space", "nb201", "--arch", str(res.run_dir / "genotype.json"), "--json",
                 "--data-dir", str(data_root))
    assert bench.returncode == 0, bench.stderr
    assert 0 < json.loads(bench.stdout)["c10_oritest_200"] <= 100
    trained = nasforge.train(res.genotype, dataset="digits", preset="nb201-tiny", out=tmp_path / "t",
                             progress=False, overrides=["train.epochs=1", "data.n_train=128", "data.n_test=128"])
    assert trained["params"] > 0


def test_nb201_transit_cells_compute_only_the_chosen_op_and_never_none():
    """`none` is no candidate: even where its α is the largest, the edge takes its strongest real op, so a Transit
    cell can never cut the network (which would leave the Engine-cells, and α, without a gradient)."""
    net = NB201EnTranSuperNet(10, 4, 1, [0], in_channels=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # edge 0->1: none strongest, then skip; the rest conv 3x3
        net.alphas["normal"].zero_()
        net.alphas["normal"][:, 3] = 5.0
        net.alphas["normal"][:, 0] = 10.0
        net.alphas["normal"][0, 1] = 6.0
    calls: Counter = Counter()
    graphs = [g for _, _, g in net.graphs()]
    for gi, graph in enumerate(graphs):
        for u, unit in enumerate(graph.ops):
            for s, op in enumerate(unit):
                op.register_forward_hook(lambda m, i, o, key=(gi, u, s): calls.update([key]))
    loss = net(_x()).sum()
    assert nb201_ops_of(net.genotype()) == ("skip_connect",) + ("nor_conv_3x3",) * 5
    assert float(net.op_weights()["normal"][:, 0].detach().abs().sum()) == 0.0
    transit = {(u, s) for (gi, u, s) in calls if gi > 0}
    # shared features: conv 3x3 once per source node (0, 1, 2), skip from node 0 once; each run exactly once
    assert transit == {(0, 0), (0, 2), (1, 2), (2, 2)} and all(calls[k] == 1 for k in calls)
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(loss, net.arch_parameters()))
