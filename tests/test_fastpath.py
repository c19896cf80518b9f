"""The fused supernet forward (supernets/fused.py, issue 13) against the plain per-op path, from the same seed:
logits, alpha gradients, weight gradients and BN running statistics within float tolerance, for DARTS (softmax,
shared cells, first and second order), P-DARTS stage masks, GOLD-NAS (sigmoid, unshared, removed ops, auxiliary
head), EnTranNAS Engine- and Transit-cells, ops the fused path does not know, both recompute modes, eval mode and
odd image sizes; checkpoints move between the paths."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from nasforge.config import from_dict
from nasforge.errors import ConfigError
from nasforge.ops import DARTS_OPS
from nasforge.spaces import DartsSpace
from nasforge.spaces.relaxed import RelaxedSpace
from nasforge.strategies import Darts, DartsConfig, SearchContext
from nasforge.supernets import SuperNet

TOL = {"rtol": 1e-4, "atol": 1e-5}
SPACE = DartsSpace()


def _x(n: int = 6, size: int = 9, seed: int = 1, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=g), torch.randint(10, (n,), generator=g)


def _pair(space=SPACE, channels: int = 4, layers: int = 3, **kw) -> tuple[SuperNet, SuperNet]:
    """(plain, fused) copies of one supernet; 3 layers = a normal cell and two reduction cells."""
    torch.manual_seed(0)
    plain = SuperNet(space, channels, 10, layers, in_channels=3, generator=torch.Generator().manual_seed(0), **kw)
    with torch.no_grad():  # alphas away from uniform, so a wrongly weighted op shows
        for a in plain.arch_parameters():
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(2)))
    fused = copy.deepcopy(plain)
    fused.set_fused(True)
    return plain, fused


def _step(net: SuperNet, x: torch.Tensor, y: torch.Tensor, aux_weight: float = 0.0) -> torch.Tensor:
    logits, aux = net.forward_with_aux(x)
    loss = F.cross_entropy(logits, y)
    if aux is not None:
        loss = loss + aux_weight * F.cross_entropy(aux, y)
    loss.backward()
    return logits.detach()


def _assert_same(plain: SuperNet, fused: SuperNet, x: torch.Tensor, y: torch.Tensor, aux_weight: float = 0.0
                 ) -> None:
    torch.testing.assert_close(_step(fused, x, y, aux_weight), _step(plain, x, y, aux_weight), **TOL)
    grads = 0
    for (name, p), (_, q) in zip(plain.named_parameters(), fused.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
            grads += 1
    assert grads == len(list(plain.parameters()))  # every weight and alpha has a gradient
    for (name, a), (_, b) in zip(plain.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("recompute", ["none", "edges"])
def test_darts_cells_match_the_plain_path(recompute):
    plain, fused = _pair()
    for net in (plain, fused):
        net.set_recompute(recompute)
    _assert_same(plain, fused, *_x())


def test_pdarts_stage_mask_and_zero_skip_dropout_match():
    g = torch.Generator().manual_seed(3)
    alive = {}
    for key in ("normal", "reduce"):
        mask = torch.zeros(len(SPACE.edges), len(SPACE.ops), dtype=torch.bool)
        for e in range(mask.shape[0]):  # a P-DARTS stage: 4 of 8 ops per edge survive, `none` possible
            mask[e, torch.randperm(8, generator=g)[:4]] = True
        alive[key] = mask
    alive["normal"][0, :] = False  # an edge with nothing left
    alive["normal"][0, DARTS_OPS.index("none")] = True
    plain, fused = _pair(alive=alive)
    for net in (plain, fused):
        net.set_skip_dropout(0.0)
        net.set_recompute("edges")
    _assert_same(plain, fused, *_x(size=8))


def test_gold_nas_sigmoid_unshared_with_a_removed_op_and_aux_head_match():
    space = RelaxedSpace(ops=("skip_connect", "sep_conv_3x3", "max_pool_3x3"), nodes=3, layers=4)
    plain, fused = _pair(space, layers=4, weighting="sigmoid", share_cells=False, auxiliary=True)
    for net in (plain, fused):
        net.remove_op("cell0", 2, 1)  # sep_conv_3x3 of edge 2 in cell 0, for good
        net.remove_op("cell1", 0, 0)  # a stride-2 skip (FactorizedReduce)
    assert not fused.alive("cell0")[2, 1] and not fused.alive("cell1")[0, 0]
    _assert_same(plain, fused, *_x(size=11), aux_weight=0.4)


def test_ops_the_fused_path_does_not_know_fall_back_per_op():
    space = DartsSpace(ops=("none", "conv_7x1_1x7", "conv_3x3", "max_pool_5x5", "avg_pool_3x3", "sep_conv_7x7",
                            "skip_connect", "dil_conv_3x3"), nodes=2)
    plain, fused = _pair(space)
    _assert_same(plain, fused, *_x(size=10))


def test_eval_mode_uses_each_ops_running_statistics():
    plain, fused = _pair()
    x, y = _x()
    for _ in range(2):  # give every BN its own running statistics
        _step(plain, x, y)
        _step(fused, x, y)
    plain.eval()
    fused.eval()
    x2, _ = _x(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(fused(x2), plain(x2), **TOL)


def test_skip_dropout_applies_per_edge_and_recomputation_replays_it():
    _, fused = _pair()
    x, y = _x()
    fused.set_skip_dropout(0.5)
    again = copy.deepcopy(fused)
    again.set_recompute("edges")
    torch.manual_seed(7)
    out = _step(fused, x, y)
    torch.manual_seed(7)
    torch.testing.assert_close(_step(again, x, y), out, **TOL)
    for p, q in zip(fused.parameters(), again.parameters()):
        torch.testing.assert_close(q.grad, p.grad, **TOL)
    ref = copy.deepcopy(fused)
    ref.set_skip_dropout(0.0)
    ref_eval, fused_eval = copy.deepcopy(ref).eval(), copy.deepcopy(fused).eval()
    with torch.no_grad():
        assert not torch.allclose(ref(x), fused(x))  # dropout is on in training mode
        torch.testing.assert_close(fused_eval(x), ref_eval(x))  # and off in eval mode


def _darts(fused: bool, order: str, **kw) -> Darts:
    cfg = from_dict(DartsConfig, {"channels": 4, "layers": 3, "order": order, "fused": fused, **kw})
    ctx = SearchContext(num_classes=10, in_channels=3, image_size=9, steps_per_epoch=1, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        s = Darts(cfg, ctx)
    s.begin_epoch(0)
    return s


@pytest.mark.parametrize("order,checkpoint", [("first", True), ("first", False), ("second", False)])
def test_darts_search_steps_match(order, checkpoint):
    plain, fused = (_darts(f, order, checkpoint_edges=checkpoint) for f in (False, True))
    assert fused.net.cells[0].fused and not plain.net.cells[0].fused
    train, val = _x(seed=1), _x(seed=2)
    for _ in range(2):
        m_plain, m_fused = plain.step(train, val), fused.step(train, val)
        assert m_fused["loss"] == pytest.approx(m_plain["loss"], rel=1e-4)
        assert m_fused["arch_loss"] == pytest.approx(m_plain["arch_loss"], rel=1e-4)
    a, b = plain.net.state_dict(), fused.net.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_checkpoints_move_between_the_paths():
    plain, fused = _darts(False, "first"), _darts(True, "first")
    train, val = _x(seed=1), _x(seed=2)
    fused.step(train, val)
    plain.load_state_dict(copy.deepcopy(fused.state_dict()))  # fused -> plain
    with torch.no_grad():
        fused.net.eval()
        plain.net.eval()
        torch.testing.assert_close(plain.net(val[0]), fused.net(val[0]), **TOL)
    plain.step(train, val)
    fused.load_state_dict(copy.deepcopy(plain.state_dict()))  # plain -> fused
    for (k, v), (_, w) in zip(plain.net.state_dict().items(), fused.net.state_dict().items()):
        assert torch.equal(v, w), k


def test_channels_last_matches_on_the_fused_path_and_is_refused_on_the_plain_one():
    plain, other = _pair()
    with pytest.raises(ConfigError, match="fused"):
        copy.deepcopy(plain).configure(fused=False, channels_last=True)
    other.configure(fused=True, channels_last=True, checkpoint_edges=True)
    assert other.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(plain, other, *_x())


def test_amp_runs_in_bf16_and_stays_near_float32():
    plain, fused = _pair()
    x, y = _x()
    with torch.no_grad():
        ref = plain(x)
    for net in (plain, fused):
        net.set_amp(True)
        logits = _step(net, x, y)
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, ref, rtol=0.1, atol=0.1)  # bf16 keeps ~3 significant digits
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_compile_option_wraps_each_cell():
    """Only the wiring: compiling a cell takes minutes on this CPU (507 s measured), so the compiled step is not
    run here; test_fastpath's other tests cover the code it compiles."""
    _, fused = _pair()
    fused.set_compile(True)
    assert all(cell._compiled_call_impl is not None for cell in fused.cells)
    fused.set_compile(False)
    assert all(cell._compiled_call_impl is None for cell in fused.cells)


def test_config_options_reach_the_supernet():
    s = _darts(True, "first", channels_last=True, checkpoint_edges=False, amp=False)
    assert s.net.channels_last and all(c.fused and not c.checkpoint_edges for c in s.net.cells)
    s = _darts(False, "first")
    assert not s.net.channels_last and all(not c.fused and c.checkpoint_edges for c in s.net.cells)


@pytest.mark.parametrize("sharing,derivation,recompute", [(True, "rule", False), (False, "rule", True),
                                                          (True, "dst", True)])
def test_entrannas_engine_and_transit_cells_match_the_plain_path(sharing, derivation, recompute):
    """EnTranNAS on the fused path: each unit's ops computed together (Engine-cells), Transit-cells' affine ops
    falling back per op; logits, α/β and weight gradients and BN statistics as the plain path's."""
    from nasforge.spaces import FreeTopologySpace
    from nasforge.supernets.entrannas import EnTranSuperNet

    space = FreeTopologySpace(ops=tuple(o for o in DARTS_OPS if o != "none")) if derivation == "dst" else \
        DartsSpace(ops=tuple(o for o in DARTS_OPS if o != "none"))
    torch.manual_seed(0)
    plain = EnTranSuperNet(space, 4, 10, 3, [0, 1], in_channels=3, derivation=derivation, feature_sharing=sharing,
                           generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a in plain.arch_parameters():
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(2)))
    plain.set_checkpoint_units(recompute)
    fused = copy.deepcopy(plain)
    fused.set_fused(True)
    x, y = _x()
    outs = []
    for net in (plain, fused):
        logits = net(x)
        F.cross_entropy(logits, y).backward()
        outs.append(logits.detach())
    torch.testing.assert_close(outs[1], outs[0], **TOL)
    unused = plain.unused_parameter_names()
    for (name, p), (_, q) in zip(plain.named_parameters(), fused.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
        else:
            assert name in unused, name
    for (name, a), (_, b) in zip(plain.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, **TOL, msg=lambda m, n=name: f"{n}: {m}")
