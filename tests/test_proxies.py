"""Training-free proxies: MGM against its closed form and against a loop of batch-1 backward passes, the
official-code statistic on a hand-computed toy, the baselines, determinism, the cache, rank correlations, and
the ``proxies`` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasforge.errors import ConfigError
from nasforge.proxies import (PROXIES, NetworkSpec, ScoreCache, gram_mean, init_network, kendall_tau,
                              official_code_statistic, per_sample_grads, per_sample_grads_loop, score_architecture,
                              score_many, spearman_rho)
from nasforge.proxies.mgm import select_params
from nasforge.spaces import NB201Arch

SMALL = NetworkSpec(num_classes=10, in_channels=3, channels=8, cells=1)  # C=8, N=1: fast maths checks
BEST, ALL_NONE = 6111, NB201Arch(("none",) * 6).index


def _batch(n: int = 8, size: int = 16, seed: int = 0, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def _net(index: int = BEST, seed: int = 0, spec: NetworkSpec = SMALL) -> nn.Module:
    return spec.build(NB201Arch.from_index(index).genotype(), seed)


# -- MGM --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_diagonal", [False, True])
def test_mgm_equals_the_closed_form_on_a_linear_model(drop_diagonal):
    """Softmax regression: g_i = ((p_i − e_{y_i}) x_iᵀ, p_i − e_{y_i}); MGM = (1/n²) Σ_ij g_iᵀ g_j."""
    torch.manual_seed(0)
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    model = nn.Sequential(nn.Linear(5, 3)).double()
    score = PROXIES.get("mgm")(model, x, y, {"drop_diagonal": drop_diagonal, "n_samples": 7})
    with torch.no_grad():
        r = torch.softmax(model(x), 1) - F.one_hot(y, 3).double()  # [n, classes]
        g = torch.cat([(r[:, :, None] * x[:, None, :]).flatten(1), r], 1)  # per-sample gradients [n, P]
        gram = g @ g.T
    n = len(x)
    expected = (gram.sum() - gram.trace()) / (n * (n - 1)) if drop_diagonal else gram.sum() / n**2
    assert score == pytest.approx(float(expected), rel=1e-10)
    if not drop_diagonal:  # ‖mean gradient‖² — the identity the paper's definition rests on
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        mean_grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert score == pytest.approx(float(mean_grad @ mean_grad), rel=1e-10)


@pytest.mark.parametrize("bn_mode", ["per_sample_train", "eval"])
def test_batched_per_sample_gradients_equal_a_loop_of_batch1_backward_passes(bn_mode):
    x, y = _batch(6, dtype=torch.float64)
    names = select_params(_net())
    looped = per_sample_grads_loop(_net().double(), x, y, names, bn_mode)
    batched = per_sample_grads(_net().double(), x, y, names, bn_mode)
    assert looped.keys() == batched.keys()
    for k in names:
        torch.testing.assert_close(batched[k], looped[k], rtol=1e-9, atol=1e-12)
    mgm = PROXIES.get("mgm")(_net().double(), x, y, {"bn_mode": bn_mode})
    assert mgm == pytest.approx(gram_mean(looped), rel=1e-9)


def test_per_sample_bn_is_not_a_slice_of_the_batched_backward():
    """Why per-sample passes are needed: with batch-mode BN, Σ g_i differs from the batch gradient."""
    x, y = _batch(6, dtype=torch.float64)
    net = _net().double()
    names = select_params(net)
    per_sample = per_sample_grads_loop(net, x, y, names)
    net.zero_grad()
    F.cross_entropy(net(x)[0], y, reduction="sum").backward()
    name = names[0]
    batch_grad = dict(net.named_parameters())[name].grad
    assert not torch.allclose(per_sample[name].sum(0), batch_grad)


def test_official_code_statistic_on_a_hand_computed_toy():
    """4 samples → pairs (0, 2) and (1, 3); one tensor, two coordinates.

    coordinate 0: a = (1, 2), b = (3, 5): centred (−0.5, 0.5)·(−1, 1) = 1.0
    coordinate 1: a = (0, 4), b = (1, 1): b is constant → 0
    score = (1.0 + 0) / n² = 1 / 16
    """
    g = torch.tensor([[1.0, 0.0], [2.0, 4.0], [3.0, 1.0], [5.0, 1.0]]).reshape(4, 1, 2)
    assert official_code_statistic(g) == pytest.approx(1 / 16)
    five = torch.cat([g, torch.full((1, 1, 2), 100.0)])  # an odd last sample is unused; the divisor is n²
    assert official_code_statistic(five) == pytest.approx(1 / 25)
    with pytest.raises(ConfigError):
        official_code_statistic(torch.zeros(1, 1, 2))


def test_official_mode_uses_the_first_11_tensors_with_50_elements():
    net = _net()
    names = select_params(net, "first_k", 11, 50)
    params = dict(net.named_parameters())
    assert len(names) == 11 and names[0] == "stem.0.weight" and all(params[n].numel() >= 50 for n in names)
    assert [n for n in params if params[n].numel() >= 50][:11] == names  # definition order
    x, y = _batch(10, dtype=torch.float64)
    grads = per_sample_grads_loop(_net().double(), x, y, names)
    entries = torch.stack([grads[n].reshape(10, -1)[:, :50] for n in names], 1)
    score = PROXIES.get("mgm_official")(_net().double(), x, y, {"n_samples": 10})
    assert score == pytest.approx(official_code_statistic(entries), rel=1e-9)


# -- baselines, determinism, options ----------------------------------------------------------------------------

def test_baselines_are_sane():
    x, y = _batch()
    scores = {p: score_architecture(NB201Arch.from_index(BEST).genotype(), p, x, y, seed=0, net=SMALL).value
              for p in PROXIES.names()}
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert scores["params"] == sum(p.numel() for p in _net().parameters())
    assert scores["synflow"] > 0 and scores["snip"] > 0 and scores["grad_norm"] > 0 and scores["mgm"] > 0
    dead = {p: score_architecture(NB201Arch.from_index(ALL_NONE).genotype(), p, x, y, seed=0, net=SMALL).value
            for p in ("grad_norm", "snip", "synflow")}
    assert dead["synflow"] < scores["synflow"]  # a cell of `none` edges only passes the residual blocks' signal


def test_scores_are_deterministic_per_architecture_and_seed():
    x, y = _batch()
    g = NB201Arch.from_index(BEST).genotype()
    torch.manual_seed(123)  # the global RNG plays no part
    a = {p: score_architecture(g, p, x, y, seed=5, net=SMALL).value for p in PROXIES.names()}
    torch.manual_seed(456)
    b = {p: score_architecture(g, p, x, y, seed=5, net=SMALL).value for p in PROXIES.names()}
    assert a == b
    assert score_architecture(g, "mgm", x, y, seed=6, net=SMALL).value != a["mgm"]
    w1 = init_network(_net(), torch.Generator().manual_seed(1)).stem[0].weight
    w2 = init_network(_net(), torch.Generator().manual_seed(1)).stem[0].weight
    assert torch.equal(w1, w2)


def test_proxy_options_are_checked():
    x, y = _batch()
    g = NB201Arch.from_index(BEST).genotype()
    with pytest.raises(ConfigError, match="has no option 'bn'"):
        score_architecture(g, "mgm", x, y, seed=0, net=SMALL, options={"bn": "eval"})
    with pytest.raises(ConfigError, match="bn_mode must be one of"):
        score_architecture(g, "mgm", x, y, seed=0, net=SMALL, options={"bn_mode": "batch"})
    with pytest.raises(ConfigError, match="expected int"):
        score_architecture(g, "mgm", x, y, seed=0, net=SMALL, options={"n_samples": "many"})
    as_text = score_architecture(g, "mgm", x, y, seed=0, net=SMALL, options={"drop_diagonal": "true"}).value
    assert as_text == score_architecture(g, "mgm", x, y, seed=0, net=SMALL, options={"drop_diagonal": True}).value


# -- cache and parallel scoring ---------------------------------------------------------------------------------

def test_cache_hits_survive_restarts_and_keys_separate_what_differs(tmp_path):
    x, y = _batch()
    g = NB201Arch.from_index(BEST).genotype()
    cache = ScoreCache(tmp_path)
    first = score_architecture(g, "mgm", x, y, seed=0, net=SMALL, cache=cache)
    assert not first.cached
    with open(cache.path, "a") as f:
        f.write('{"key": "truncated by a kill')  # a half-written last line is ignored
    again = score_architecture(g, "mgm", x, y, seed=0, net=SMALL, cache=ScoreCache(tmp_path))
    assert again.cached and again.value == first.value and again.seconds == first.seconds
    reread = ScoreCache(tmp_path)
    for changed in ({"seed": 1}, {"options": {"bn_mode": "eval"}}, {"x": x + 1}):
        kw = {"seed": 0, "options": None, "x": x, **changed}
        assert not score_architecture(g, "mgm", kw["x"], y, seed=kw["seed"], net=SMALL, options=kw["options"],
                                      cache=reread).cached
    assert score_architecture(g, "params", x + 1, y, seed=9, net=SMALL, cache=reread).cached is False
    assert score_architecture(g, "params", x + 2, y, seed=8, net=SMALL, cache=reread).cached  # ignores data and seed


def test_score_many_in_processes_equals_in_process(tmp_path):
    x, y = _batch(6, size=8)
    spec = NetworkSpec(num_classes=10, channels=4, cells=1)
    archs = [NB201Arch.from_index(i).genotype() for i in (BEST, 1835, 0)]
    one = score_many(archs, ["mgm", "params"], x, y, seed=0, net=spec, progress=False)
    cache = ScoreCache(tmp_path)
    two = score_many(archs, ["mgm", "params"], x, y, seed=0, net=spec, cache=cache, workers=2, progress=False)
    # worker processes may run with another intra-op thread count, so float sums can differ in the last digits
    for r1, r2 in zip(one, two):
        assert {p: pytest.approx(s.value, rel=1e-5) for p, s in r1.items()} == {p: s.value for p, s in r2.items()}
    assert len(ScoreCache(tmp_path)) == 6
    three = score_many(archs, ["mgm", "params"], x, y, seed=0, net=spec, cache=ScoreCache(tmp_path), progress=False)
    assert all(s.cached for r in three for s in r.values())


# -- rank correlations ------------------------------------------------------------------------------------------

def test_rank_correlations_match_scipy_with_ties_and_nan():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 15, 700).astype(float)
    b = a + rng.normal(0, 4, 700)
    b[::9] = np.round(b[::9])
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b)[0], abs=1e-12)
    assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    a_nan = a.copy()
    a_nan[:5] = np.nan
    assert kendall_tau(a_nan, b) == pytest.approx(stats.kendalltau(a[5:], b[5:])[0], abs=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0 and spearman_rho([1, 2, 3], [1, 5, 9]) == 1.0
    assert kendall_tau([-np.inf, -np.inf, 1.0], [0.0, 0.0, 2.0]) == 1.0
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


# -- the command ------------------------------------------------------------------------------------------------

def test_proxies_command(data_root, tmp_path):
    archs = tmp_path / "archs.txt"
    archs.write_text(f"# mixed formats and spaces\n{NB201Arch.from_index(BEST).string}\n1835  # all skip\n"
                     f"DARTS_V2\n\n0\n")
    out = tmp_path / "scores.csv"
    res = subprocess.run([sys.executable, "-m", "nasforge", "proxies", "--proxy", "params,mgm,naswot", "--archs",
                          str(archs), "--dataset", "digits", "--samples", "16", "--channels", "4", "--cells", "1",
                          "--out", str(out), "--json", "--no-progress", "--data-dir", str(data_root)],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["n"] == 4 and report["n_in_table"] == 3
    tau = report["correlations"]["params"]["c10_oritest_200"]["kendall_tau"]
    assert -1 <= tau <= 1
    rows = out.read_text().splitlines()
    assert rows[0].startswith("nb201_index,arch,params,mgm,naswot") and len(rows) == 5
    assert rows[3].startswith(',"Genotype(normal=')  # the DARTS cell was scored too, without an NB201 index
    bad = subprocess.run([sys.executable, "-m", "nasforge", "proxies", "--proxy", "mgm,nope", "--n", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown proxy 'nope'" in bad.stderr and bad.stderr.count("\n") == 1
