"""Parameter and multiply-add counters: DARTS conventions, published numbers, flop-counter parity, per-op costs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasforge.costs import count_macs, count_params, flop_counter_macs, op_cost
from nasforge.genotypes import PUBLISHED, CellArch, Edge, Genotype
from nasforge.models import NetworkCIFAR, NetworkImageNet
from nasforge.ops import OPS, create_op


def _small_unshared() -> Genotype:
    e = Edge
    return Genotype(cells=(
        CellArch((e(0, 2, "sep_conv_5x5"), e(1, 2, "skip_connect"), e(1, 2, "conv_3x3"), e(2, 3, "dil_conv_3x3")),
                 concat=(2, 3)),
        CellArch((e(0, 2, "skip_connect"), e(1, 2, "conv_7x1_1x7"), e(1, 3, "avg_pool_3x3"), e(2, 3, "none")),
                 concat=(2, 3), reduction=True),
        CellArch((e(0, 1, "sep_conv_3x3"), e(1, 2, "max_pool_3x3")), concat=(1, 2), n_inputs=1, reduction=True),
    ), sharing="none")


# -- params --------------------------------------------------------------------------------------------------------

def test_count_params_excludes_the_aux_head_only() -> None:
    g = PUBLISHED["DARTS_V2"]
    with_aux = NetworkCIFAR(g, layers=5, channels=8, auxiliary=True)
    without = NetworkCIFAR(g, layers=5, channels=8, auxiliary=False)
    head = sum(p.numel() for p in with_aux.auxiliary_head.parameters())
    assert count_params(with_aux) == count_params(without)
    assert count_params(with_aux, exclude_prefixes=()) == count_params(without) + head
    wrapped = nn.Sequential(with_aux)  # names become "0.auxiliary_head...."
    assert count_params(wrapped) == count_params(without)


# -- multiply-adds -------------------------------------------------------------------------------------------------

def test_darts_v2_cifar_macs() -> None:
    """DARTS_V2, 20 cells, C=36, 32×32: 528.36M ×+ (the "528M" later papers quote for DARTS)."""
    net = NetworkCIFAR(PUBLISHED["DARTS_V2"], layers=20, channels=36, auxiliary=True)
    assert count_macs(net, (3, 32, 32)) == 528_359_040


def test_darts_v2_imagenet_macs() -> None:
    """DARTS_V2 ImageNet (14 cells, C=48, 224×224): 529,911,552 ×+ counting convs and the classifier.

    The DARTS paper reports 574M; that figure is not reproducible by counting conv/linear multiply-adds
    (quark0/darts#46: 523M by D-X-Y, 544.6M with ptflops, which also counts BN/ReLU/pooling). Our count agrees
    with UniNAS's torchprofile numbers for DARTS_V1 and P-DARTS to within 0.01% (asserted below).
    """
    net = NetworkImageNet(PUBLISHED["DARTS_V2"], num_classes=1000, layers=14, channels=48, auxiliary=True)
    macs = count_macs(net, (3, 224, 224))
    assert macs == 529_911_552
    assert abs(macs - 574e6) / 574e6 < 0.08  # the published figure, 7.7% above the conv/linear count


def test_imagenet_macs_agree_with_an_independent_count() -> None:
    # cogsys-tuebingen/uninas tests/test_model_params.py: DARTS_V1 ImageNet 505,893,696 (4,510,432 params)
    net = NetworkImageNet(PUBLISHED["DARTS_V1"])
    assert count_params(net) == 4_510_432
    assert count_macs(net, (3, 224, 224)) == pytest.approx(505_893_696, rel=1e-4)


@pytest.mark.parametrize("make", [
    lambda: NetworkCIFAR(PUBLISHED["DARTS_V2"], layers=5, channels=8, auxiliary=True),
    lambda: NetworkCIFAR(PUBLISHED["AmoebaNet"], layers=5, channels=8),
    lambda: NetworkCIFAR(_small_unshared(), layers=3, channels=8, auxiliary=True),
    lambda: NetworkImageNet(PUBLISHED["PDARTS"], num_classes=20, layers=5, channels=8, auxiliary=True),
], ids=["darts_v2", "amoebanet", "unshared", "imagenet"])
def test_count_macs_matches_flop_counter(make) -> None:
    net = make()
    size = (3, 64, 64) if isinstance(net, NetworkImageNet) else (3, 32, 32)
    assert count_macs(net, size) == flop_counter_macs(net, size) > 0


def test_counters_restore_every_module_mode() -> None:
    net = NetworkCIFAR(PUBLISHED["DARTS_V2"], layers=5, channels=8, auxiliary=True)
    net.train()
    net.cells[0].eval()  # mixed modes must come back as they were
    before = [m.training for m in net.modules()]
    count_macs(net, (3, 16, 16))
    flop_counter_macs(net, (3, 16, 16))
    assert [m.training for m in net.modules()] == before
    net.eval()
    count_macs(net, (3, 16, 16))
    assert not any(m.training for m in net.modules())


def test_count_macs_ignores_the_aux_head_and_leaves_rng_alone() -> None:
    g = PUBLISHED["DARTS_V2"]
    with_aux = NetworkCIFAR(g, layers=5, channels=8, auxiliary=True)
    without = NetworkCIFAR(g, layers=5, channels=8, auxiliary=False)
    state = torch.get_rng_state()
    assert count_macs(with_aux, (3, 32, 32)) == count_macs(without, (3, 32, 32))
    assert torch.equal(torch.get_rng_state(), state)


# -- analytic per-op costs -----------------------------------------------------------------------------------------

SHAPES = [(4, 8, 1), (4, 8, 2), (6, 7, 1), (6, 7, 2), (16, 5, 2), (10, 16, 1), (8, 3, 2)]


@pytest.mark.parametrize("op", sorted(OPS.names()))
def test_op_cost_equals_measured(op: str) -> None:
    for channels, size, stride in SHAPES:
        module = create_op(op, channels, stride)
        measured = (count_params(module, exclude_prefixes=()), count_macs(module, (channels, size, size)))
        assert op_cost(op, channels, size, size, stride) == measured, (op, channels, size, stride)


def test_op_cost_rectangular_and_known_values() -> None:
    # SepConv 3×3, C=16, 8×8, stride 1: 2·(9C + C²)·HW MACs, 2·(9C + C² + 2C) params
    assert op_cost("sep_conv_3x3", 16, 8, 8, 1) == (2 * (9 * 16 + 256 + 32), 2 * (9 * 16 + 256) * 64)
    # FactorizedReduce C→C: C²·H_out·W_out
    assert op_cost("skip_connect", 16, 8, 8, 2) == (256 + 32, 256 * 16)
    assert op_cost("skip_connect", 16, 8, 8, 1) == (0, 0)
    for op in ("sep_conv_5x5", "dil_conv_5x5", "conv_7x1_1x7", "conv_3x3"):
        for stride in (1, 2):
            module = create_op(op, 6, stride)
            measured = (count_params(module, exclude_prefixes=()), count_macs(module, (6, 6, 10)))
            assert op_cost(op, 6, 6, 10, stride) == measured, (op, stride)
