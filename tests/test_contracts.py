"""Contract tests that loop over the registries (timm ``tests/test_models.py`` style, STYLE.md §2(a) 11, 13).

Every op, every edge weighting and every search strategy registered now, or later, gets the same checks:
shapes, no NaN, a gradient for every parameter, a valid export and a bit-exact ``state_dict`` round trip.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
from typing import Any

import pytest
import torch
from torch import nn

from nasforge.genotypes import KNOWN_OPS, Genotype
from nasforge.ops import DARTS_OPS, OPS, create_op, wants_relu_input
from nasforge.strategies import STRATEGIES, SearchContext, Strategy
from nasforge.supernets import WEIGHTINGS

C, H = 4, 8  # tiny: channels (even, for FactorizedReduce) and spatial size
OP_NAMES = sorted(OPS.names())
WEIGHTING_NAMES = sorted(WEIGHTINGS.names())
STRATEGY_NAMES = sorted(STRATEGIES.names())
TINY = {"layers": 3, "channels": 4, "warmup_epochs": 0, "stage_layers": [2, 3, 3], "epochs_per_stage": 1}
# ^ applied to whichever fields a Config has


# -- ops ---------------------------------------------------------------------------------------------------------

def _op(name: str, stride: int, search: bool, relu: bool) -> nn.Module:
    torch.manual_seed(0)
    return create_op(name, C, stride, affine=not search, search=search, relu=relu).double()


def _input(op: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, C, H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return x, (torch.relu(x) if wants_relu_input(op) else x)


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "shared_relu"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("search", [True, False], ids=["search", "eval"])
@pytest.mark.parametrize("name", OP_NAMES)
def test_op_forward_backward(name, search, stride, relu):
    op = _op(name, stride, search, relu)
    _, x = _input(op)
    x.requires_grad_(True)
    out = op(x)
    assert out.shape == (2, C, H // stride, H // stride)
    assert torch.isfinite(out).all()
    (out * torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(2))).sum().backward()
    missing = [n for n, p in op.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: parameters without a gradient: {missing}"
    op.eval()
    with torch.no_grad():
        out_eval = op(x)
    assert out_eval.shape == out.shape and torch.isfinite(out_eval).all()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("search", [True, False], ids=["search", "eval"])
@pytest.mark.parametrize("name", OP_NAMES)
def test_op_without_relu_fed_relu_input_matches(name, search, stride):
    """``relu=False`` + ReLU(x) computes exactly what the op with its own ReLU computes from x."""
    with_relu, without = _op(name, stride, search, True), _op(name, stride, search, False)
    with torch.no_grad():
        for a, b in zip(list(with_relu.parameters()) + list(with_relu.buffers()),
                        list(without.parameters()) + list(without.buffers()), strict=True):
            b.copy_(a)
    x, _ = _input(without)
    fed = torch.relu(x) if wants_relu_input(without) else x
    assert wants_relu_input(with_relu) is False
    torch.testing.assert_close(without(fed), with_relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("search", [True, False], ids=["search", "eval"])
@pytest.mark.parametrize("name", OP_NAMES)
def test_op_batchnorms_follow_the_mode(name, search):
    """Search ops: non-affine BNs (pools get one); evaluation ops: affine BNs, bare pools (METHODS.md §1.1)."""
    op = _op(name, 1, search, True)
    bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.affine is (not search) for bn in bns)
    if "pool" in name:
        assert len(bns) == (1 if search else 0)


def test_op_registry_matches_genotype_names():
    assert set(OPS.names()) == KNOWN_OPS
    assert DARTS_OPS == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                         "dil_conv_3x3", "dil_conv_5x5")  # METHODS.md §1.1 index order (P-DARTS relies on it)


@pytest.mark.parametrize("stride", [1, 2])
def test_none_op_is_zero(stride):
    op = _op("none", stride, True, True)
    x, _ = _input(op)
    assert torch.equal(op(x), torch.zeros(2, C, H // stride, H // stride, dtype=x.dtype))
    assert not list(op.parameters())


# -- weightings -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WEIGHTING_NAMES)
def test_weighting_gives_dead_ops_exactly_zero(name):
    weighting = WEIGHTINGS.get(name)
    g = torch.Generator().manual_seed(0)
    alpha = torch.randn(14, 8, generator=g, requires_grad=True)
    alive = torch.rand(14, 8, generator=g) > 0.4
    alive[0] = False  # an edge with every op removed
    alive[1] = True
    alive[2] = False
    alive[2, 3] = True  # one op left
    w = weighting(alpha, alive)
    assert w.shape == alpha.shape
    assert torch.isfinite(w).all()
    assert torch.equal(w[~alive], torch.zeros(int((~alive).sum())))
    assert (w[alive] > 0).all()
    (w * torch.randn(w.shape, generator=g)).sum().backward()
    assert torch.isfinite(alpha.grad).all()
    assert torch.equal(alpha.grad[~alive], torch.zeros(int((~alive).sum())))
    assert (alpha.grad[1] != 0).any()


def test_softmax_and_sigmoid_weightings():
    alpha = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    alive = torch.tensor([[True] * 5, [True, False, True, False, True], [False] * 5])
    soft = WEIGHTINGS.get("softmax")(alpha, alive)
    torch.testing.assert_close(soft[0], torch.softmax(alpha[0], 0))
    torch.testing.assert_close(soft[1, [0, 2, 4]], torch.softmax(alpha[1, [0, 2, 4]], 0))
    assert soft[2].abs().sum() == 0
    sig = WEIGHTINGS.get("sigmoid")(alpha, alive)
    torch.testing.assert_close(sig[0], torch.sigmoid(alpha[0]))
    torch.testing.assert_close(sig[1, [0, 2, 4]], torch.sigmoid(alpha[1, [0, 2, 4]]))


# -- strategies -------------------------------------------------------------------------------------------------

def _variants() -> list[tuple[str, dict[str, Any]]]:
    """Each strategy once; DARTS-like ones (with an ``order`` field) in first and second order. The second-order
    runs skip edge checkpointing to stay fast (test_supernet checks that checkpointing changes nothing)."""
    out = []
    for name in STRATEGY_NAMES:
        fields = {f.name for f in dataclasses.fields(STRATEGIES.get(name).Config)}
        if "order" in fields:
            out += [(name, {"order": "first"}), (name, {"order": "second", "checkpoint_edges": False})]
        else:
            out.append((name, {}))
    return out


VARIANTS = _variants()
VARIANT_IDS = [f"{n}-{v.get('order', 'default')}" for n, v in VARIANTS]


def _context(seed: int = 0) -> SearchContext:
    return SearchContext(num_classes=10, in_channels=1, image_size=H, steps_per_epoch=2, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(seed))


def _strategy(name: str, extra: dict[str, Any], seed: int = 0) -> Strategy:
    cls = STRATEGIES.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    cfg = dataclasses.replace(cls.Config(), **{k: v for k, v in {**TINY, **extra}.items() if k in fields})
    torch.manual_seed(seed)
    return cls(cfg, _context(seed))


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(10, 1, H, H, generator=g), torch.arange(10)[torch.randperm(10, generator=g)])
            for _ in range(n)]


def _step(strategy: Strategy, train: tuple, val: tuple) -> dict[str, float]:
    return strategy.step(train, val if strategy.needs_val_batch else None)


def _check_metrics(metrics: dict[str, float]) -> None:
    assert "loss" in metrics
    for k, v in metrics.items():
        assert isinstance(k, str) and isinstance(v, float) and math.isfinite(v), (k, v)


@pytest.mark.parametrize("name, extra", VARIANTS, ids=VARIANT_IDS)
def test_strategy_steps_train_everything(name, extra):
    strategy = _strategy(name, extra)
    model = strategy.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    had_grad: set[str] = set()
    idle = set(before)  # parameters the architecture left out of every step (EnTranNAS Transit-cell ops)
    batches = _batches(4)
    strategy.begin_epoch(0)
    for train, val in (batches[:2], batches[2:]):
        _check_metrics(_step(strategy, train, val))
        had_grad |= {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        inactive = strategy.inactive_parameters()
        assert inactive <= set(before) and not inactive & {n for n, p in model.named_parameters()
                                                            if p.grad is not None}, f"{name}: an idle op ran"
        idle &= inactive
    strategy.end_epoch(0)
    params = dict(model.named_parameters())
    untrained = [n for n, p in params.items() if n not in had_grad and n not in idle and torch.equal(p, before[n])]
    assert not untrained, f"{name}: parameters that never got a gradient: {untrained}"
    assert all(torch.isfinite(p).all() for p in params.values())
    arch = getattr(model, "arch_parameters", lambda: [])()
    assert all(any(a is p for p in params.values()) for a in arch)  # arch parameters live in the model
    for a in arch:  # and every one moved (weights could move by weight decay alone; alphas only by the arch step)
        name_of = next(n for n, p in params.items() if p is a)
        assert not torch.equal(a, before[name_of]), f"{name}: arch parameter {name_of} did not change"


@pytest.mark.parametrize("name, extra", VARIANTS, ids=VARIANT_IDS)
def test_strategy_export_is_valid_for_its_space(name, extra):
    strategy = _strategy(name, extra)
    g = strategy.export()
    assert isinstance(g, Genotype)
    space = getattr(strategy, "space", None)
    if space is not None:
        space.validate(g)
    assert Genotype.from_json(g.to_json()) == g
    for extra_g in strategy.extra_exports().values():
        assert isinstance(extra_g, Genotype)
    for key, w in strategy.arch_weights().items():
        assert w.dim() == 2 and torch.isfinite(w).all(), key
        assert w.shape[1] == len(strategy.op_names())


@pytest.mark.parametrize("name, extra", VARIANTS, ids=VARIANT_IDS)
def test_strategy_state_dict_round_trip_is_bit_exact(name, extra):
    """Resume semantics of the search loop: checkpoint after an epoch, then redo the next one."""
    b = _batches(4, seed=3)
    a = _strategy(name, extra, seed=0)
    a.begin_epoch(0)
    _step(a, b[0], b[1])
    a.end_epoch(0)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)

    resumed = _strategy(name, extra, seed=1)  # a different init: everything must come from the state
    resumed.load_state_dict(state)
    results = []
    for s in (a, resumed):
        torch.manual_seed(1234)  # the loop restores the global RNG state too
        s.begin_epoch(1)
        results.append((_step(s, b[2], b[3]), s.export(), copy.deepcopy(s.model.state_dict())))
    (m_a, g_a, sd_a), (m_b, g_b, sd_b) = results
    assert m_a == m_b
    assert g_a == g_b
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k


def test_darts_phases_are_separate():
    """The architecture step leaves weights untouched (second order restores them); the weight step leaves α."""
    for order in ("first", "second"):
        s = _strategy("darts", {"order": order, "checkpoint_edges": order == "first"})
        s.begin_epoch(0)
        (train, val), (train2, _) = _batches(2), _batches(2, seed=1)
        s.weight_step(train)  # momentum buffers exist from here on (the second-order virtual step uses them)
        weights = [w.detach().clone() for w in s.net.weight_parameters()]
        alphas = [a.detach().clone() for a in s.net.arch_parameters()]
        s.arch_step(train2, val)
        assert all(torch.equal(w, v) for w, v in zip(s.net.weight_parameters(), weights))
        assert not all(torch.equal(a, v) for a, v in zip(s.net.arch_parameters(), alphas))
        alphas = [a.detach().clone() for a in s.net.arch_parameters()]
        s.weight_step(train2)
        assert all(torch.equal(a, v) for a, v in zip(s.net.arch_parameters(), alphas))
        assert all(a.requires_grad for a in s.net.arch_parameters())
