"""The second-order DARTS hypergradient (finite-difference HVP) against exact autograd through the unrolled step."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from nasforge.spaces import DartsSpace
from nasforge.strategies.hypergrad import first_order_arch_grads, second_order_arch_grads
from nasforge.supernets import SuperNet


def _exact_unrolled(model, weight_names, arch_names, batch_t, batch_v, xi, wd):
    """d/dα L_val(w - ξ(∇w L_train(w, α) + λw), α), differentiated exactly (create_graph through the step)."""
    params = dict(model.named_parameters())
    w = [params[n] for n in weight_names]
    a = [params[n] for n in arch_names]

    def loss(ws, batch):
        p = {**dict(zip(weight_names, ws)), **dict(zip(arch_names, a))}
        return F.cross_entropy(functional_call(model, p, (batch[0],)), batch[1])

    g = torch.autograd.grad(loss(w, batch_t), w, create_graph=True)
    w_prime = [wi - xi * (gi + wd * wi) for wi, gi in zip(w, g)]
    return torch.autograd.grad(loss(w_prime, batch_v), a)


class _MixModel(nn.Module):
    """y = Σ_k softmax(α)_k · tanh(W_k x): a hand-sized model with a real α-w interaction."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 4, 5, generator=g, dtype=torch.float64))
        self.alpha = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))

    def forward(self, x):
        mix = torch.softmax(self.alpha, 0)
        return sum(mix[k] * torch.tanh(x @ self.w[k].T) for k in range(3))


def _batches(shape, classes, dtype):
    g = torch.Generator().manual_seed(1)
    mk = lambda: (torch.randn(*shape, generator=g, dtype=dtype), torch.randint(classes, (shape[0],), generator=g))  # noqa: E731
    return mk(), mk()


def _check(model, weight_names, arch_names, batch_t, batch_v, rtol, r=1e-2):
    params = dict(model.named_parameters())
    w = [params[n] for n in weight_names]
    a = [params[n] for n in arch_names]
    xi, wd = 0.05, 3e-4
    exact = _exact_unrolled(model, weight_names, arch_names, batch_t, batch_v, xi, wd)
    before = [p.detach().clone() for p in w]
    _, approx = second_order_arch_grads(
        model, lambda: F.cross_entropy(model(batch_t[0]), batch_t[1]),
        lambda: F.cross_entropy(model(batch_v[0]), batch_v[1]), w, a, xi=xi, momentum=0.9, weight_decay=wd,
        momentum_buffers=[None] * len(w), r=r)
    for e, g in zip(exact, approx):
        torch.testing.assert_close(g, e, rtol=rtol, atol=1e-9)
    for p, b in zip(w, before):  # weights restored
        assert torch.equal(p.detach(), b)
    # the first-order gradient is different (the test can fail): the second-order term matters here
    _, first = first_order_arch_grads(lambda: F.cross_entropy(model(batch_v[0]), batch_v[1]), a)
    assert any(not torch.allclose(f, e, rtol=1e-3) for f, e in zip(first, exact))


def test_second_order_matches_exact_autograd_on_hand_model():
    model = _MixModel()
    batch_t, batch_v = _batches((16, 5), 4, torch.float64)
    _check(model, ["w"], ["alpha"], batch_t, batch_v, rtol=1e-4)


def test_second_order_matches_exact_autograd_on_tiny_supernet():
    with torch.random.fork_rng():  # module init draws from the global RNG
        torch.manual_seed(0)
        net = SuperNet(DartsSpace(nodes=2), channels=2, num_classes=3, layers=2, in_channels=1,
                       generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        for p in net.arch_parameters():
            p.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    names = [n for n, _ in net.named_parameters()]
    arch = [n for n in names if n.startswith("alphas.")]
    weights = [n for n in names if n not in arch]
    batch_t, batch_v = _batches((8, 1, 6, 6), 3, torch.float64)
    # BN over 8 images makes this tiny net very curved: the paper's r = 0.01 is too coarse a finite difference
    # here, so check convergence with a smaller r in float64 (the hand model above uses the default r)
    _check(net, weights, arch, batch_t, batch_v, rtol=1e-4, r=1e-4)


def test_momentum_enters_the_virtual_step():
    model = _MixModel()
    batch_t, batch_v = _batches((16, 5), 4, torch.float64)
    args = (model, lambda: F.cross_entropy(model(batch_t[0]), batch_t[1]),
            lambda: F.cross_entropy(model(batch_v[0]), batch_v[1]), [model.w], [model.alpha])
    _, g0 = second_order_arch_grads(*args, xi=0.05, momentum=0.9, weight_decay=0.0, momentum_buffers=[None])
    _, g1 = second_order_arch_grads(*args, xi=0.05, momentum=0.9, weight_decay=0.0,
                                    momentum_buffers=[torch.ones_like(model.w)])
    assert not torch.allclose(g0[0], g1[0])
