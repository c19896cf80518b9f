"""The DARTS supernet and cell space: skipped `none`, alive masks, arch/weight parameter split, remove_op, the
shared-ReLU + folded-BN forward against a naive Σ_k w_k·op_k(x) reference, edge checkpointing, the DARTS
derivation rule, sampling and the reduction layout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasforge.errors import GenotypeError
from nasforge.genotypes import PUBLISHED, CellArch, Edge, Genotype, to_darts_text
from nasforge.ops import DARTS_OPS, FactorizedReduce, Identity, ReLUConvBN, Zero, wants_relu_input
from nasforge.spaces import DartsSpace, derive_cell
from nasforge.supernets import MixedEdge, SearchCell, SuperNet, reduction_positions

SPACE = DartsSpace()
NONE, MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = range(8)  # DARTS_OPS columns


def _net(layers: int = 3, channels: int = 4, seed: int = 0, **kw) -> SuperNet:
    torch.manual_seed(seed)
    return SuperNet(SPACE, channels, 10, layers, in_channels=1, generator=torch.Generator().manual_seed(seed), **kw)


def _x(n: int = 4, seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _random_alive(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    alive = {k: torch.rand(len(SPACE.edges), len(SPACE.ops), generator=g) > 0.5 for k in ("normal", "reduce")}
    for mask in alive.values():
        mask[:, SEP3] = True  # every edge keeps at least one real op
    return alive


# -- structure ---------------------------------------------------------------------------------------------------

def test_none_is_never_instantiated():
    net = _net()
    assert not [m for m in net.modules() if isinstance(m, Zero)]
    for cell in net.cells:
        assert len(cell.edges) == 14
        for edge in cell.edges:
            assert edge.columns == list(range(1, 8))
            assert len(edge.ops) == 7


def test_edge_with_only_none_alive_gives_zeros():
    edge = MixedEdge(DARTS_OPS, [True] + [False] * 7, 4, 1)
    assert len(edge.ops) == 0 and not list(edge.parameters())
    x = torch.randn(2, 4, 8, 8)
    assert edge(x, lambda: torch.relu(x), torch.full((8,), 0.125)) is None

    for reduction in (False, True):
        alive = torch.ones(14, 8, dtype=torch.bool)
        alive[[0, 1], 1:] = False  # node 2's two edges keep only `none`
        cell = SearchCell(SPACE, 6, 6, 4, reduction, False, alive)
        s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
        out = cell(s0, s1, torch.softmax(torch.randn(14, 8), -1))
        size = 4 if reduction else 8
        assert out.shape == (2, 16, size, size)
        assert torch.equal(out[:, :4], torch.zeros(2, 4, size, size))  # node 2
        assert out[:, 4:].abs().sum() > 0


def test_alive_masks():
    alive = _random_alive(0)
    net = _net(alive=alive)
    weights = net.op_weights()
    for cell, key in zip(net.cells, net.cell_keys):
        for e, edge in enumerate(cell.edges):
            expected = [c for c in range(8) if alive[key][e, c] and DARTS_OPS[c] != "none"]
            assert edge.columns == expected and len(edge.ops) == len(expected)
    for key in ("normal", "reduce"):
        assert torch.equal(net.alive(key), alive[key])
        assert torch.equal(weights[key][~alive[key]], torch.zeros(int((~alive[key]).sum())))
        assert (weights[key][alive[key]] > 0).all()
        torch.testing.assert_close(weights[key].sum(1), torch.ones(14))
    full = _net()
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())
    out = net(_x())
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert "alive_normal" in net.state_dict() and "alive_reduce" in net.state_dict()


def test_arch_and_weight_parameters_partition_the_model():
    net = _net()
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert arch == [net.alphas["normal"], net.alphas["reduce"]]
    assert [tuple(a.shape) for a in arch] == [(14, 8), (14, 8)]
    assert not {id(p) for p in arch} & {id(p) for p in weights}
    assert {id(p) for p in arch} | {id(p) for p in weights} == {id(p) for p in net.parameters()}
    assert len(arch) + len(weights) == len(list(net.parameters()))
    assert [n for n, _ in net.named_parameters()][:2] == ["alphas.normal", "alphas.reduce"]
    # the same construction gives the same order (a checkpoint's optimizer state maps back onto it)
    again = _net()
    assert [p.shape for p in again.weight_parameters()] == [p.shape for p in weights]
    assert all(torch.equal(a, b) for a, b in zip(again.arch_parameters(), arch))
    # DARTS initialisation: 1e-3 * N(0, 1) drawn from the generator
    expected = 1e-3 * torch.randn(14, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(arch[0].detach(), expected)


def test_unshared_cells_get_one_alpha_matrix_each():
    net = _net(layers=4, share_cells=False)
    assert net.arch_keys() == ["cell0", "cell1", "cell2", "cell3"]
    assert net.cell_keys == ["cell0", "cell1", "cell2", "cell3"]
    assert [c.reduction for c in net.cells] == [False, True, True, False]
    assert net.arch_parameters() == [net.alphas[k] for k in net.arch_keys()]
    assert net(_x()).shape == (4, 10)


def test_remove_op_for_good():
    net = _net()
    n_params = sum(p.numel() for p in net.parameters())
    normal_cells = [c for c, k in zip(net.cells, net.cell_keys) if k == "normal"]
    removed = sum(p.numel() for c in normal_cells for p in c.edges[0].ops[SEP3 - 1].parameters())
    names_before = set(net.state_dict())
    net.remove_op("normal", 0, SEP3)
    assert sum(p.numel() for p in net.parameters()) == n_params - removed
    assert not net.alive("normal")[0, SEP3] and net.alive("reduce")[0, SEP3]
    assert all(SEP3 not in c.edges[0].columns and len(c.edges[0].ops) == 6 for c in normal_cells)
    gone = names_before - set(net.state_dict())
    assert gone and all(".edges.0.ops." in n for n in gone)
    net.remove_op("normal", 0, SEP3)  # removing again changes nothing
    assert sum(p.numel() for p in net.parameters()) == n_params - removed

    # however strongly the optimiser pushes its alpha, the op stays at weight 0 and is never derived
    with torch.no_grad():
        net.alphas["normal"][0] = -5.0
        net.alphas["normal"][0, SEP3] = 50.0
        net.alphas["normal"][0, SKIP] = 1.0
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(net(_x()), torch.arange(4)).backward()
        opt.step()
    assert net.op_weights()["normal"][0, SEP3] == 0
    g = SPACE.derive(net.op_weights())
    assert all(e.op != "sep_conv_3x3" for e in g.normal.edges if e.src == 0 and e.dst == 2)
    # a network rebuilt from the alive masks has the same modules, so the checkpoint loads strictly
    rebuilt = _net(alive={k: net.alive(k) for k in net.arch_keys()})
    rebuilt.load_state_dict(net.state_dict())
    assert set(rebuilt.state_dict()) == set(net.state_dict())


# -- the forward against a naive reference ---------------------------------------------------------------------

def _reference_forward(net: SuperNet, x: torch.Tensor, weighting: str) -> torch.Tensor:
    """DARTS's formula written out: node_j = Σ_i Σ_k w_ik · op_k(x_i), with each op called as a module on its own
    (ReLU(x) for ops built without their leading ReLU), `none` contributing zero but taking part in the softmax."""
    s0 = s1 = net.stem(x)
    for cell, key in zip(net.cells, net.cell_keys):
        alpha, alive = net.alphas[key], net.alive(key)
        if weighting == "softmax":
            w = torch.exp(alpha) * alive / (torch.exp(alpha) * alive).sum(1, keepdim=True)
        else:
            w = torch.sigmoid(alpha) * alive
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        e = 0
        for j in range(SPACE.nodes):
            node = torch.zeros((), dtype=x.dtype)
            for src in range(2 + j):
                edge = cell.edges[e]
                for col, op in zip(edge.columns, edge.ops):
                    inp = torch.relu(states[src]) if wants_relu_input(op) else states[src]
                    node = node + w[e, col] * op(inp)
                e += 1
            states.append(node)
        s0, s1 = s1, torch.cat(states[2:], dim=1)
    return net.classifier(torch.flatten(net.global_pooling(s1), 1))


def _grads(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def _buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in net.named_buffers()}


@pytest.mark.parametrize("weighting", ["softmax", "sigmoid"])
@pytest.mark.parametrize("masked", [False, True], ids=["all_alive", "masked"])
def test_forward_matches_naive_reference(weighting, masked):
    net = _net(weighting=weighting, alive=_random_alive(3) if masked else None).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 1, generator=torch.Generator().manual_seed(5))  # far from uniform
    ref = copy.deepcopy(net)
    x, y = _x(dtype=torch.float64), torch.arange(4)
    out, out_ref = net(x), _reference_forward(ref, x, weighting)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    F.cross_entropy(out, y).backward()
    F.cross_entropy(out_ref, y).backward()
    grads, grads_ref = _grads(net), _grads(ref)
    assert grads.keys() == grads_ref.keys()
    for n in grads:
        torch.testing.assert_close(grads[n], grads_ref[n], rtol=1e-9, atol=1e-12, msg=n)
    assert net.alphas["normal"].grad.abs().sum() > 0
    buffers, buffers_ref = _buffers(net), _buffers(ref)
    for n in buffers:  # the folded BN updates running statistics exactly as the op's own BN does
        torch.testing.assert_close(buffers[n], buffers_ref[n], rtol=1e-12, atol=1e-14, msg=n)
    net.eval()
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), _reference_forward(ref, x, weighting), rtol=1e-10, atol=1e-12)


def test_mixed_edge_is_the_weighted_sum_of_its_ops():
    for stride in (1, 2):
        edge = MixedEdge(DARTS_OPS, [True] * 8, 4, stride).double()
        x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
        w = torch.softmax(torch.randn(8, dtype=torch.float64), 0)
        ref = copy.deepcopy(edge)
        expected = sum(w[c] * op(torch.relu(x) if wants_relu_input(op) else x) for c, op in zip(ref.columns, ref.ops))
        torch.testing.assert_close(edge(x, lambda x=x: torch.relu(x), w), expected, rtol=1e-10, atol=1e-12)


def test_skip_dropout_only_hits_identity_skips_in_training():
    edge = MixedEdge(DARTS_OPS, [op == "skip_connect" for op in DARTS_OPS], 4, 1)
    assert isinstance(edge.ops[0], Identity)
    x, w = torch.randn(2, 4, 8, 8), torch.full((8,), 0.5)
    edge.skip_dropout = 1.0
    assert torch.equal(edge(x, lambda: torch.relu(x), w), torch.zeros_like(x))
    edge.eval()
    assert torch.equal(edge(x, lambda: torch.relu(x), w), 0.5 * x)
    reduce_edge = MixedEdge(DARTS_OPS, [op == "skip_connect" for op in DARTS_OPS], 4, 2)  # FactorizedReduce
    reduce_edge.skip_dropout = 1.0
    assert reduce_edge(x, lambda: torch.relu(x), w).abs().sum() > 0
    net = _net()
    net.set_skip_dropout(0.3)
    assert {e.skip_dropout for c in net.cells for e in c.edges} == {0.3}


# -- edge checkpointing ------------------------------------------------------------------------------------------

def test_checkpointed_edges_change_nothing():
    net = _net().double()
    net.set_skip_dropout(0.2)  # the recomputation must replay the same dropout masks
    ckpt = copy.deepcopy(net)
    ckpt.set_checkpoint_edges(True)
    assert all(c.checkpoint_edges for c in ckpt.cells) and not any(c.checkpoint_edges for c in net.cells)
    for step in range(2):  # two batches: running statistics evolve twice (no weight update: the gradients
        x, y = _x(seed=10 + step, dtype=torch.float64), torch.arange(4)  # agree only up to rounding)
        outs = []
        for model in (net, ckpt):
            torch.manual_seed(step)
            model.zero_grad(set_to_none=True)
            out = model(x)
            F.cross_entropy(out, y).backward()
            outs.append(out)
        assert torch.equal(outs[0], outs[1])
        grads, grads_ckpt = _grads(net), _grads(ckpt)
        for n in grads:  # the same sums, accumulated in another order
            torch.testing.assert_close(grads_ckpt[n], grads[n], rtol=1e-12, atol=1e-15, msg=n)
        buffers, buffers_ckpt = _buffers(net), _buffers(ckpt)
        for n in buffers:  # running statistics and batch counts updated once, not again in the recomputation
            assert torch.equal(buffers_ckpt[n], buffers[n]), n
    assert int(net.cells[0].edges[0].ops[SEP3 - 1][0][-1].num_batches_tracked) == 2
    net.eval()
    ckpt.eval()
    with torch.no_grad():
        x = _x(seed=99, dtype=torch.float64)
        assert torch.equal(ckpt(x), net(x))  # evaluation never checkpoints


# -- derivation (METHODS.md §1.4) -------------------------------------------------------------------------------

def _darts_parse(weights: torch.Tensor) -> list[tuple[str, int]]:
    """The derivation as the DARTS code states it: per node, sort the incoming edges by their strongest
    non-`none` weight (stable, descending), keep two, and on each the first strictly strongest non-`none` op."""
    gene, start = [], 0
    for i in range(4):
        rows = weights[start:start + i + 2].tolist()
        strength = [max(w for k, w in enumerate(r) if k != NONE) for r in rows]
        for src in sorted(range(i + 2), key=lambda s: -strength[s])[:2]:
            best = None
            for k, w in enumerate(rows[src]):
                if k != NONE and (best is None or w > rows[src][best]):
                    best = k
            gene.append((DARTS_OPS[best], src))
        start += i + 2
    return gene


def _pairs(cell: CellArch) -> list[tuple[str, int]]:
    return [(e.op, e.src) for e in cell.edges]


def test_derive_cell_on_a_hand_made_matrix():
    w = torch.zeros(14, 8)
    # node 2 (rows 0, 1): `none` dominates row 0 but is ignored; row 1 is weaker than row 0's best real op
    w[0, NONE], w[0, SEP5] = 0.9, 0.08
    w[1, MAX] = 0.05
    # node 3 (rows 2-4: from 0, 1, 2): a tie between rows 3 and 4 for the second place keeps row 3 (earlier)
    w[2, DIL3] = 0.6
    w[3, SKIP] = w[4, AVG] = 0.4
    # node 4 (rows 5-8: from 0, 1, 2, 3): the strongest is row 8, listed first; a tie between two ops of row 5
    # keeps the earlier op (skip_connect before sep_conv_3x3)
    w[5, SKIP] = w[5, SEP3] = 0.5
    w[8, DIL5] = 0.7
    w[6, NONE] = w[7, NONE] = 0.99
    # node 5 (rows 9-13): all equal: the first two edges, each with its first op
    w[9:14, 1:] = 0.1
    cell = derive_cell(w, SPACE, reduction=False, name="normal")
    assert _pairs(cell) == [
        ("sep_conv_5x5", 0), ("max_pool_3x3", 1),
        ("dil_conv_3x3", 0), ("skip_connect", 1),
        ("dil_conv_5x5", 3), ("skip_connect", 0),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
    ]
    assert _pairs(cell) == _darts_parse(w)
    assert cell.concat == (2, 3, 4, 5) and not cell.reduction and cell.name == "normal"


@pytest.mark.parametrize("seed", range(5))
def test_derive_matches_the_darts_rule_on_random_weights(seed):
    g = torch.Generator().manual_seed(seed)
    weights = {k: torch.softmax(torch.randn(14, 8, generator=g), -1) for k in ("normal", "reduce")}
    genotype = SPACE.derive(weights)
    assert _pairs(genotype.normal) == _darts_parse(weights["normal"])
    assert _pairs(genotype.reduce) == _darts_parse(weights["reduce"])
    assert genotype.reduce.reduction and not genotype.normal.reduction
    SPACE.validate(genotype)
    printed = to_darts_text(genotype)  # DARTS prints the kept edges strongest first, node by node
    assert printed.startswith(f"Genotype(normal={_darts_parse(weights['normal'])!r}")


def test_derive_from_a_supernet_and_with_no_usable_op():
    net = _net()
    g = SPACE.derive({k: w.detach() for k, w in net.op_weights().items()})
    SPACE.validate(g)
    small = DartsSpace(ops=("none", "skip_connect"), nodes=2)
    with pytest.raises(GenotypeError, match=r"normal cell: edge \(0, 2\) has no usable op left to derive"):
        derive_cell(torch.ones(5, 2), small, reduction=False, name="normal", exclude=("none", "skip_connect"))


# -- the space: sampling, validation, layout -----------------------------------------------------------------------

def test_space_layout():
    assert SPACE.edges[:5] == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3)) and len(SPACE.edges) == 14
    assert SPACE.concat == (2, 3, 4, 5)
    assert len(DartsSpace(nodes=5).edges) == 20
    with pytest.raises(GenotypeError, match=r"lists an op twice"):
        DartsSpace(ops=("skip_connect", "skip_connect"))
    with pytest.raises(GenotypeError, match=r"at least one intermediate node"):
        DartsSpace(nodes=0)
    with pytest.raises(Exception, match=r"unknown op 'conv_9x9'; choose one of"):
        DartsSpace(ops=("none", "conv_9x9"))


def test_sample_is_valid_and_deterministic_per_seed():
    state = torch.get_rng_state()
    samples = [SPACE.sample(torch.Generator().manual_seed(s)) for s in range(30)]
    assert torch.equal(torch.get_rng_state(), state)  # only the given generator is used
    for s, g in enumerate(samples):
        SPACE.validate(g)
        assert g == SPACE.sample(torch.Generator().manual_seed(s))
        assert all(e.op != "none" for c in g.cells for e in c.edges)
    assert len({g.hash() for g in samples}) == 30
    assert {e.op for g in samples for c in g.cells for e in c.edges} == set(DARTS_OPS) - {"none"}
    assert {e.src for g in samples for e in g.normal.inputs_of(5)} == {0, 1, 2, 3, 4}
    small = DartsSpace(ops=("none", "skip_connect", "max_pool_3x3"), nodes=2)
    small.validate(small.sample(torch.Generator().manual_seed(0)))


def test_validate_rejects_genotypes_outside_the_space():
    SPACE.validate(PUBLISHED["DARTS_V2"])
    SPACE.validate(PUBLISHED["PDARTS"])
    g = PUBLISHED["DARTS_V2"]

    def with_normal(edges, concat=(2, 3, 4, 5), **kw):
        return Genotype.from_cells(CellArch(tuple(edges), concat, name="normal", **kw), g.reduce)

    edges = list(g.normal.edges)
    cases = [
        (PUBLISHED["NASNet"], r"normal cell: has 2 inputs, 5 intermediate nodes"),
        (with_normal(edges[:6], concat=(2, 3, 4)), r"normal cell: has 2 inputs, 3 intermediate nodes and concat "
                                                   r"\[2, 3, 4\]; this space has 2 inputs, 4 nodes"),
        (with_normal(edges, concat=(2, 3, 4)), r"concat \[2, 3, 4\]; this space has .* concat \[2, 3, 4, 5\]"),
        (with_normal(edges[:7] + [Edge(2, 5, "sep_conv_7x7")]), r"normal cell, edge 2->5: op 'sep_conv_7x7' is not "
                                                                r"in this space's ops"),
        (with_normal(edges[:7] + [Edge(2, 5, "none")]), r"op 'none' is not in this space's ops"),
        (with_normal(edges[:7] + [Edge(0, 5, "sep_conv_3x3")]), r"normal cell, node 5: needs 2 inputs from distinct "
                                                                r"nodes, has \[0, 0\]"),
        (with_normal(edges + [Edge(1, 5, "sep_conv_3x3")]), r"node 5: needs 2 inputs from distinct nodes, has "
                                                            r"\[0, 2, 1\]"),
        (Genotype(cells=g.cells, sharing="none"), r"the DARTS space shares one normal and one reduction cell"),
    ]
    for genotype, match in cases:
        with pytest.raises(GenotypeError, match=match):
            SPACE.validate(genotype)


@pytest.mark.parametrize("layers, expected", [(1, ()), (2, (1,)), (3, (1, 2)), (5, (1, 3)), (8, (2, 5)),
                                              (14, (4, 9)), (20, (6, 13))])
def test_reduction_positions(layers, expected):
    assert reduction_positions(layers) == expected


def test_supernet_follows_the_reduction_layout():
    net = _net(layers=5, channels=4)
    assert net.cell_keys == ["normal", "reduce", "normal", "reduce", "normal"]
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert isinstance(net.cells[1].preprocess0, ReLUConvBN)
    assert isinstance(net.cells[2].preprocess0, FactorizedReduce)  # the cell after a reduction halves s0
    shapes = []
    s0 = s1 = net.stem(_x())
    weights = net.op_weights()
    for cell, key in zip(net.cells, net.cell_keys):
        s0, s1 = s1, cell(s0, s1, weights[key])
        shapes.append(tuple(s1.shape[1:]))
    assert shapes == [(16, 8, 8), (32, 4, 4), (32, 4, 4), (64, 2, 2), (64, 2, 2)]
    assert net.classifier.in_features == 64
