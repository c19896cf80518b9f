"""Evaluation networks: published parameter counts, shapes, gradients, drop-path, unshared cells, small inputs."""

from __future__ import annotations

import pytest
import torch

from nasforge.costs import count_params
from nasforge.errors import ConfigError, GenotypeError
from nasforge.genotypes import PUBLISHED, CellArch, Edge, Genotype, from_darts_text
from nasforge.models import EvalCell, NetworkCIFAR, NetworkImageNet, build_network, drop_path, reduction_indices
from nasforge.ops import Identity

# The P-DARTS release (chenxin061/pdarts genotypes.py). Its last reduce edge is dil_conv_5x5 from node 3; the
# published numbers below (3,433,798 / 10.52M / 4,944,352) are those of this genotype.
PDARTS_RELEASE = from_darts_text(
    "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), "
    "reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), "
    "('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))")

PUBLISHED_NAMES = ["DARTS_V1", "DARTS_V2", "PDARTS", "NASNet", "AmoebaNet"]


def unshared_genotype() -> Genotype:
    """5 unshared cells (reductions at 1 and 3) with 1- and 3-input nodes, repeated (src, dst) pairs, a
    1-input cell and different concat widths."""
    e = Edge
    cells = (
        CellArch((e(0, 2, "sep_conv_3x3"), e(1, 2, "skip_connect"), e(1, 2, "dil_conv_3x3"), e(2, 3, "sep_conv_5x5"),
                  e(0, 4, "avg_pool_3x3"), e(2, 4, "max_pool_3x3"), e(3, 4, "conv_3x3")), concat=(3, 4)),
        CellArch((e(0, 2, "max_pool_3x3"), e(1, 2, "sep_conv_3x3"), e(1, 3, "skip_connect"), e(1, 3, "none"),
                  e(2, 3, "conv_1x1")), concat=(2, 3), reduction=True),
        CellArch((e(0, 1, "conv_7x1_1x7"), e(0, 2, "skip_connect"), e(1, 2, "sep_conv_7x7")), concat=(1, 2),
                 n_inputs=1),
        CellArch((e(0, 2, "skip_connect"), e(1, 2, "avg_pool_5x5"), e(0, 3, "dil_conv_5x5"), e(2, 3, "max_pool_5x5"),
                  e(1, 3, "max_pool_7x7")), concat=(2, 3), reduction=True),
        CellArch((e(0, 2, "conv_1x1"), e(1, 3, "sep_conv_3x3"), e(2, 3, "skip_connect"), e(0, 3, "skip_connect")),
                 concat=(2, 3, 1)),
    )
    return Genotype(cells=cells, sharing="none")


def _grads_complete(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]


# -- published numbers (DARTS convention: aux head built but excluded) ---------------------------------------------

@pytest.mark.parametrize("genotype, channels, expected", [
    (PUBLISHED["DARTS_V2"], 36, 3_349_342),
    (PUBLISHED["DARTS_V1"], 36, 3_169_414),
    (PDARTS_RELEASE, 36, 3_433_798),
    (PDARTS_RELEASE, 64, 10_521_802),  # P-DARTS "large" (Table 1: 10.5M)
], ids=["DARTS_V2", "DARTS_V1", "PDARTS", "PDARTS-C64"])
def test_published_cifar_param_counts(genotype: Genotype, channels: int, expected: int) -> None:
    net = NetworkCIFAR(genotype, num_classes=10, layers=20, channels=channels, auxiliary=True)
    assert count_params(net) == expected
    assert count_params(net, exclude_prefixes=()) > expected  # the head exists, it is only left out


def test_pdarts_large_rounds_to_published() -> None:
    net = NetworkCIFAR(PDARTS_RELEASE, layers=20, channels=64, auxiliary=True)
    assert round(count_params(net) / 1e4) == 1052


def test_published_pdarts_is_the_release() -> None:
    assert PUBLISHED["PDARTS"] == PDARTS_RELEASE


def test_published_imagenet_param_count() -> None:
    net = NetworkImageNet(PUBLISHED["DARTS_V2"], num_classes=1000, layers=14, channels=48, auxiliary=True)
    assert count_params(net) == 4_718_752
    assert count_params(NetworkImageNet(PDARTS_RELEASE, auxiliary=True)) == 4_944_352  # P-DARTS: 4.9M


@pytest.mark.parametrize("name, expected", [("NASNet", 3_830_950), ("AmoebaNet", 3_145_078)])
def test_nasnet_amoebanet_build_at_20_36(name: str, expected: int) -> None:
    """5-node cells with partial concat; the counts pin our macro-structure (not the original papers')."""
    net = NetworkCIFAR(PUBLISHED[name], layers=20, channels=36, auxiliary=True)
    assert count_params(net) == expected
    net.eval()
    with torch.no_grad():
        logits, aux = net(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10) and aux is None


# -- structure ----------------------------------------------------------------------------------------------------

def test_reduction_indices_follow_darts() -> None:
    assert reduction_indices(20) == (6, 13)
    assert reduction_indices(14) == (4, 9)
    assert reduction_indices(5) == (1, 3)
    net = NetworkCIFAR(PUBLISHED["DARTS_V2"], layers=8, channels=4)
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]


def test_channel_bookkeeping_matches_darts() -> None:
    net = NetworkCIFAR(PUBLISHED["NASNet"], layers=6, channels=4)  # normal concat 5, reduce concat 3
    # C_curr: 4, 4, 8 (reduce), 8, 16 (reduce), 16; multipliers 5, 5, 3, 5, 3, 5
    assert [c.preprocess1[1].in_channels for c in net.cells] == [12, 20, 20, 24, 40, 48]
    assert net.classifier.in_features == 5 * 16
    first_after_reduce = net.cells[3].preprocess0
    assert type(first_after_reduce).__name__ == "FactorizedReduce"


def test_stride_two_only_on_input_edges_of_reduction_cells() -> None:
    cell = EvalCell(PUBLISHED["DARTS_V2"].reduce, 8, 8, 4, reduction=True, reduction_prev=False)
    s = torch.randn(2, 8, 8, 8)
    assert cell(s, s).shape == (2, 16, 4, 4)
    skips = [op for op, e in zip(cell.ops, PUBLISHED["DARTS_V2"].reduce.edges) if e.op == "skip_connect"]
    assert all(isinstance(op, Identity) for op in skips)  # all DARTS_V2 reduce skips start at node 2


# -- forward / backward on every published genotype -----------------------------------------------------------------

@pytest.mark.parametrize("name", PUBLISHED_NAMES)
@pytest.mark.parametrize("auxiliary", [True, False])
def test_forward_backward_published(name: str, auxiliary: bool) -> None:
    torch.manual_seed(0)
    net = NetworkCIFAR(PUBLISHED[name], num_classes=7, layers=5, channels=8, auxiliary=auxiliary)
    net.drop_path_prob = 0.2
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net(x)
    assert logits.shape == (2, 7)
    assert (aux is not None) == auxiliary
    loss = logits.logsumexp(1).sum() + (0.4 * aux.logsumexp(1).sum() if aux is not None else 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert _grads_complete(net) == []
    net.eval()
    with torch.no_grad():
        logits_eval, aux_eval = net(x)
    assert aux_eval is None and torch.isfinite(logits_eval).all()


def test_imagenet_network_small_input_with_aux() -> None:
    net = NetworkImageNet(PUBLISHED["DARTS_V2"], num_classes=5, layers=5, channels=8, auxiliary=True)
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 5)
    (logits.sum() + aux.sum()).backward()
    assert _grads_complete(net) == []


def test_digits_sized_grayscale_input() -> None:
    """8×8 one-channel images: the aux map is 2×2, so the aux head pools adaptively."""
    net = NetworkCIFAR(PUBLISHED["DARTS_V2"], num_classes=10, layers=5, channels=8, auxiliary=True, in_channels=1)
    logits, aux = net(torch.randn(2, 1, 8, 8))
    assert logits.shape == aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
    assert _grads_complete(net) == []


def test_build_network_dispatch() -> None:
    g = PUBLISHED["DARTS_V2"]
    assert isinstance(build_network(g, layers=5, channels=8), NetworkCIFAR)
    net = build_network(g, dataset_kind="imagenet", num_classes=3, layers=5, channels=8, auxiliary=True)
    assert isinstance(net, NetworkImageNet) and net.classifier.out_features == 3
    assert build_network(g).classifier.out_features == 10 and len(build_network(g).cells) == 20
    with pytest.raises(ConfigError, match="dataset kind"):
        build_network(g, dataset_kind="mnist")


# -- drop-path ---------------------------------------------------------------------------------------------------

def test_drop_path_zeroes_and_rescales_whole_samples() -> None:
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.25)
    per_sample = y.flatten(1)
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # whole samples, never elements
    first = per_sample[:, 0]
    kept = first != 0
    torch.testing.assert_close(first[kept], torch.full_like(first[kept], 1 / 0.75))
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.25) < 0.04
    assert drop_path(x, 0.0) is x


def _single_op_cell(op: str) -> EvalCell:
    return EvalCell(CellArch((Edge(1, 2, op),), concat=(2,)), 4, 4, 4, reduction=False, reduction_prev=False)


def test_cell_drop_path_train_only() -> None:
    torch.manual_seed(0)
    cell = _single_op_cell("conv_1x1")
    s = torch.randn(64, 4, 5, 5)
    ref = cell(s, s, 0.0)
    dropped = cell(s, s, 0.5)
    zeroed = dropped.flatten(1).abs().sum(1) == 0
    assert 0 < zeroed.sum() < 64  # some paths dropped, some kept
    torch.testing.assert_close(dropped[~zeroed], ref[~zeroed] / 0.5)
    cell.eval()
    with torch.no_grad():
        torch.testing.assert_close(cell(s, s, 0.9), cell(s, s, 0.0))


def test_identity_is_never_dropped() -> None:
    cell = _single_op_cell("skip_connect")
    s = torch.randn(32, 4, 5, 5)
    torch.testing.assert_close(cell(s, s, 0.9), cell(s, s, 0.0))


def test_network_drop_path_prob_is_used_in_training_only() -> None:
    torch.manual_seed(0)
    net = NetworkCIFAR(PUBLISHED["DARTS_V2"], layers=5, channels=8)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    with torch.no_grad():
        ref, _ = net(x)
        net.drop_path_prob = 0.7
        torch.testing.assert_close(net(x)[0], ref)
        net.train()
        net.drop_path_prob = 0.0
        a, _ = net(x)
        net.drop_path_prob = 0.7
        b, _ = net(x)
    assert not torch.allclose(a, b)


# -- unshared genotypes ------------------------------------------------------------------------------------------

def test_unshared_genotype_builds_and_runs() -> None:
    g = unshared_genotype()
    net = NetworkCIFAR(g, num_classes=4, layers=5, channels=8, auxiliary=True)
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert net.cells[2].preprocess0 is None  # the 1-input cell reads only the previous cell
    assert [c.multiplier for c in net.cells] == [2, 2, 2, 2, 3]
    net.drop_path_prob = 0.3
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == aux.shape == (2, 4)
    (logits.sum() + aux.sum()).backward()
    assert _grads_complete(net) == []
    assert len(NetworkCIFAR(g, layers=None, channels=8).cells) == 5  # None: the genotype's count
    assert len(net.cells[0].ops) == 7  # one module per edge, repeated (src, dst) pairs included


@pytest.mark.parametrize("layers", [4, 6, 20])
def test_unshared_wrong_cell_count_raises(layers: int) -> None:
    with pytest.raises(GenotypeError, match="5 unshared cells"):
        NetworkCIFAR(unshared_genotype(), layers=layers, channels=8)


def test_unshared_misplaced_reduction_raises() -> None:
    cells = list(unshared_genotype().cells)
    cells[1], cells[2] = cells[2], cells[1]
    with pytest.raises(GenotypeError, match="reduction"):
        NetworkCIFAR(Genotype(cells=tuple(cells), sharing="none"), layers=5, channels=8)


def test_cells_with_more_than_two_inputs_are_rejected() -> None:
    cell = CellArch((Edge(0, 3, "skip_connect"), Edge(2, 3, "conv_1x1")), concat=(3,), n_inputs=3)
    with pytest.raises(GenotypeError, match="3 inputs"):
        EvalCell(cell, 4, 4, 4, reduction=False, reduction_prev=False)
