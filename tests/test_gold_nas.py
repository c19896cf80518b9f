"""GOLD-NAS: the constraint-weight rule, pruning, the analytic cost model, the Pareto front, resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import nasforge
from nasforge.config import from_dict
from nasforge.costs import count_macs, count_params
from nasforge.models import build_network
from nasforge.pareto import pareto_front
from nasforge.strategies import GoldNas, GoldNasConfig, SearchContext
from nasforge.strategies.gold_nas import update_lambda

FAST = ["search.epochs=6", "data.n_train=400"]


def _strategy(**overrides) -> GoldNas:
    cfg = from_dict(GoldNasConfig, {"layers": 4, "channels": 4, "checkpoint_edges": False, **overrides})
    ctx = SearchContext(num_classes=10, in_channels=3, image_size=16, steps_per_epoch=1, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return GoldNas(cfg, ctx)


def test_lambda_rule_on_a_scripted_sequence():
    lam, dlam = 0.0, 1e-5
    seen = []
    for pruned in [0, 0, 0, 4, 5, 1, 0, 4]:
        lam, dlam = update_lambda(lam, dlam, pruned, n0=4, lambda0=1e-5, c0=2.0)
        seen.append((lam, dlam))
    expected = [(2e-5, 2e-5), (6e-5, 4e-5), (1.4e-4, 8e-5), (7e-5, 1e-5), (3.5e-5, 1e-5), (5.5e-5, 2e-5),
                (9.5e-5, 4e-5), (4.75e-5, 1e-5)]
    for (a, b), (c, d) in zip(seen, expected):
        assert a == pytest.approx(c) and b == pytest.approx(d)


def test_pareto_front_on_hand_made_points():
    pts = [{"id": "a", "macs": 10, "acc": 90}, {"id": "b", "macs": 5, "acc": 80}, {"id": "c", "macs": 7, "acc": 79},
           {"id": "d", "macs": 12, "acc": 95}, {"id": "e", "macs": 12, "acc": 93}, {"id": "f", "macs": 5, "acc": 80},
           {"id": "g", "macs": 3, "acc": None}, {"id": "h", "macs": 20, "acc": 95}]
    assert [pts[i]["id"] for i in pareto_front(pts, "macs", "acc")] == ["b", "a", "d"]
    assert pareto_front([], "macs", "acc") == []


def test_pruning_removes_for_good_and_never_empties_a_node():
    s = _strategy(xi_min=0.3, xi_max=0.45, n0=1000, prune_weight="raw")
    with torch.no_grad():
        for a in s.net.arch_parameters():
            a.fill_(-5.0)  # every op very weak: only the node-protection rule stops pruning
    n_weights = len(s.net.weight_parameters())
    pruned = s.prune()
    assert pruned > 0 and len(s.net.weight_parameters()) < n_weights
    for key in s.net.arch_keys():
        alive = s.net.alive(key)
        for dst in set(d for _, d in s.space.edges):
            rows = [i for i, (_, d) in enumerate(s.space.edges) if d == dst]
            assert int(alive[rows].sum()) == 1  # exactly the last input survives
    before = {k: s.net.alive(k).clone() for k in s.net.arch_keys()}
    with torch.no_grad():
        for a in s.net.arch_parameters():
            a.fill_(5.0)  # strong again: nothing comes back
    x, y = torch.randn(4, 3, 16, 16), torch.randint(10, (4,))
    s.step((x, y), None)
    s.prune()
    for k in before:
        assert torch.equal(s.net.alive(k), before[k])
    g = s.export()
    assert all(len(c.inputs_of(n)) == 1 for c in g.cells for n in c.nodes)


@pytest.mark.parametrize("resource", ["macs", "params"])
def test_analytic_cost_equals_the_counter_on_derived_networks(resource):
    """Removing ops from the derived network changes its measured cost by exactly their analytic cost —
    in normal and reduction cells, each cell with its own architecture."""
    s = _strategy(resource=resource)
    gen = torch.Generator().manual_seed(1)

    def measure() -> int:
        g = s.export()
        net = build_network(g, dataset_kind="cifar", num_classes=10, layers=4, channels=4, auxiliary=True,
                            in_channels=3)
        return count_macs(net, (3, 16, 16)) if resource == "macs" else count_params(net)

    for _ in range(3):
        before = measure()
        removed = 0.0
        for key in s.net.arch_keys():
            alive = s.net.alive(key)
            for e, o in alive.nonzero().tolist():
                if torch.rand((), generator=gen) < 0.3 and s._try_remove(key, e, o):
                    removed += float(s.cost_table[key][e, o]) * 1e6
        assert before - measure() == pytest.approx(removed, abs=0.5)
    assert {s.net.cells[i].reduction for i in range(4)} == {True, False}


def test_expected_cost_is_differentiable_in_the_architecture():
    for form in ("paper", "unofficial"):
        s = _strategy(cost_form=form)
        grads = torch.autograd.grad(s.expected_cost(), s.net.arch_parameters())
        assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_tiny_preset_front_and_reported_params_match_training(tmp_path):
    # The front's size is a property of one trajectory: 16 epochs of pruning decisions amplify float-order
    # differences, and the fused path's trajectory (same step within 1e-7, tests/test_fastpath.py) ends with a
    # 2-point front, the plain path's with 3. This test pins the plain path's.
    res = nasforge.search("gold-nas", dataset="digits", preset="tiny", out=tmp_path / "g", progress=False,
                          overrides=["search.fused=false"])
    run = res.run_dir
    rows = list(csv.DictReader(open(run / "pareto.csv")))
    assert len(rows) >= 3
    assert [r for r in rows if not (run / r["path"]).is_file()] == []
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["ops_alive"] < metrics[0]["ops_alive"]
    assert all(b["ops_alive"] <= a["ops_alive"] for a, b in zip(metrics, metrics[1:]))  # never re-added
    assert "pareto.png" in (run / "report.md").read_text()
    point = rows[0]
    trained = nasforge.train(run / point["path"], dataset="digits", preset="tiny", out=tmp_path / "t",
                             overrides=["train.epochs=1", "train.channels=4", "data.n_train=128"], progress=False)
    assert trained["params"] == int(point["params"]) and trained["macs"] == int(point["macs"])


def test_resume_keeps_pruning_state_lambda_and_front(tmp_path, interrupt_after):
    ref = nasforge.search("gold-nas", dataset="digits", preset="tiny", out=tmp_path / "ref", overrides=FAST,
                          progress=False)
    interrupt_after("save_checkpoint", 4)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("gold-nas", dataset="digits", preset="tiny", out=tmp_path / "r", overrides=FAST,
                        progress=False)
    interrupt_after.restore()
    resumed = nasforge.search("gold-nas", dataset="digits", preset="tiny", out=tmp_path / "r", overrides=FAST,
                              resume=True, progress=False)
    assert resumed.genotype == ref.genotype
    drop = {"epoch_s", "wall_s", "events"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in ref.history]
    assert (tmp_path / "r" / "pareto.csv").read_text() == (tmp_path / "ref" / "pareto.csv").read_text()


def test_bad_options():
    with pytest.raises(nasforge.errors.ConfigError, match="cost_form"):
        _strategy(cost_form="exact")
    with pytest.raises(nasforge.errors.ConfigError, match="none"):
        _strategy(ops=["none", "sep_conv_3x3"])
