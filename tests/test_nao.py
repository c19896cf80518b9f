"""NAO-V2: sequences, NAONet-V2, supernet, controller, strategy, presets, resume (seconds each, tiny sizes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import nasforge
from nasforge.api import resolve_config
from nasforge.config import load_preset
from nasforge.controllers import (ControllerConfig, NAOController, generate, nao_token_spec, swap_augment,
                                  train_controller)
from nasforge.costs import count_params
from nasforge.errors import ConfigError, GenotypeError
from nasforge.genotypes import CellArch, Genotype, load_genotype, published
from nasforge.genotypes.nao_seq import format_nao_seq, parse_nao_seq, to_nao_seq
from nasforge.models import build_network
from nasforge.models.nao import NAONetworkCIFAR, nao_param_count
from nasforge.proxies.stats import kendall_tau
from nasforge.spaces.nao import NAOSpace
from nasforge.strategies import STRATEGIES, SearchContext
from nasforge.strategies.nao_config import NaoV2Config
from nasforge.supernets.nao import NAOSuperNet
from nasforge.supernets.nb201_path import NB201PathSuperNet

SPACES = [NAOSpace(), NAOSpace(nodes=2), NAOSpace(ops=("identity", "sep_conv_3x3", "max_pool_3x3"), nodes=4),
          NAOSpace(ops=("sep_conv_3x3", "dil_conv_3x3", "conv_1x1", "avg_pool_3x3", "none"), nodes=7)]
FAST = ["search.controller.epochs=10", "search.top_k=2", "search.rerank_epochs=2"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- sequences and genotypes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", SPACES, ids=lambda s: f"B{s.nodes}-{len(s.ops)}ops")
def test_sequence_round_trip_for_sampled_architectures(space):
    g = _gen(1)
    for _ in range(200):
        seq = space.sample_seq(g)
        genotype = space.genotype(seq)
        assert genotype.space == "nao" and len(genotype.cells) == 2
        assert space.seq(genotype) == seq
        assert to_nao_seq(Genotype.from_json(genotype.to_json()), space.ops) == list(seq)
        assert parse_nao_seq(format_nao_seq(seq)) == list(seq)
        used = {e.src for c in genotype.cells for e in c.edges if e.dst}  # loose ends = states nobody reads
        for cell in genotype.cells:
            reads = {e.src for e in cell.edges}
            assert set(cell.concat) == set(range(space.nodes + 2)) - reads
        assert used


def test_bad_sequences_are_refused_in_one_line():
    space = NAOSpace()
    for bad, words in [([0] * 39, "40 integers"), ([2] + [0] * 39, "x_id 2 is out of range"),
                       ([0, 5] + [0] * 38, "x_op 5 is out of range"), (["a"] * 40, "not an integer")]:
        with pytest.raises(GenotypeError, match=words) as exc:
            space.check_seq(bad)
        assert "\n" not in str(exc.value)
    v2 = published("NAONET_V2")
    with pytest.raises(GenotypeError, match="concatenates its loose ends"):
        to_nao_seq(Genotype.from_cells(CellArch(v2.normal.edges, (6,)), v2.reduce))
    with pytest.raises(GenotypeError, match="has 1 inputs; NAO nodes have exactly 2"):
        to_nao_seq(published("DARTS_V2").__class__.from_cells(
            CellArch(v2.normal.edges[1:], v2.normal.concat), v2.reduce))


def test_naonet_v2_parameter_counts():
    """Counted by instantiating the released model code (METHODS-ADDENDUM.md §4 N1, §7 N12)."""
    for name, expected in (("NAONET_V2", 4_387_654), ("NAONET_V2_2019_09", 3_802_150)):
        g = load_genotype(name)
        assert g.space == "nao"
        net = build_network(g, layers=20, channels=36, auxiliary=True)
        assert isinstance(net, NAONetworkCIFAR)
        assert count_params(net) == expected
        assert nao_param_count(g, 10, 20, 36) == expected
    assert to_nao_seq(published("NAONET_V2")) == parse_nao_seq(
        "1 1 0 1 2 4 0 0 0 0 2 1 0 0 0 2 0 3 0 0 0 2 0 2 2 2 1 0 0 0 0 1 0 0 0 3 0 0 0 1")
    assert nasforge.describe("NAONET_V2")["params"] == 4_387_654


def test_nao_network_reduces_loose_inputs_and_counts_match():
    space, g = NAOSpace(), _gen(2)
    seen_loose_input_in_reduction = False
    for _ in range(30):
        genotype = space.sample(g)
        seen_loose_input_in_reduction |= any(s < 2 for s in genotype.reduce.concat)
        net = NAONetworkCIFAR(genotype, 10, 5, 4, auxiliary=True, in_channels=1, dropout=0.4)
        assert count_params(net) == nao_param_count(genotype, 10, 5, 4, 1)
        net.drop_path_prob = 0.2
        logits, aux = net(torch.randn(2, 1, 8, 8))
        assert logits.shape == (2, 10) and aux.shape == (2, 10) and torch.isfinite(logits).all()
    assert seen_loose_input_in_reduction


# -- supernets -----------------------------------------------------------------------------------------------------

def test_single_path_forward_touches_only_the_sampled_ops():
    space = NAOSpace()
    net = NAOSuperNet(space, 10, 1, 4, in_channels=1, generator=_gen(0))
    seq = space.sample_seq(_gen(3))
    net(torch.randn(4, 1, 8, 8), seq).sum().backward()
    half = 4 * space.nodes
    for cell in net.cells:
        cell_seq = seq[half:] if cell.reduction else seq[:half]
        for i, node in enumerate(cell.slots):
            for slot, ops in enumerate(node):
                src, chosen = cell_seq[4 * i + 2 * slot], cell_seq[4 * i + 2 * slot + 1]
                for k, op in enumerate(ops):
                    for name, p in op.named_parameters():
                        if k != chosen:
                            assert p.grad is None, (i, slot, k, name)
                        elif p.grad is not None:  # rows of the inputs not chosen get nothing
                            others = [r for r in range(p.shape[0]) if r != src]
                            assert p.grad[others].abs().sum() == 0, name
    nb = NB201PathSuperNet(10, 4, 1, 1, generator=_gen(0))
    ops = (3, 0, 2, 1, 4, 3)
    nb(torch.randn(4, 1, 8, 8), ops).sum().backward()
    for cell in (m for m in nb.cells if hasattr(m, "edges")):
        for e, edge in enumerate(cell.edges):
            for k, op in enumerate(edge):
                for p in op.parameters():
                    assert (p.grad is not None) == (k == ops[e])


# -- controller ----------------------------------------------------------------------------------------------------

def test_predictor_ranks_held_out_architectures_by_parameter_count():
    space, g = NAOSpace(), _gen(0)
    seqs = space.sample_pool(400, g)
    target = [math.log(nao_param_count(space.genotype(s), 10, 11, 20)) for s in seqs]
    cfg = ControllerConfig(epochs=30, augment=1, val_fraction=0.0, lr=0.005)
    ctrl = NAOController(nao_token_spec(5, 5), cfg, g)
    train_controller(ctrl, seqs[:300], target[:300], cfg, g)
    with torch.no_grad():
        pred = ctrl.predict(ctrl.embedding(ctrl.encode(ctrl.spec.tokens(seqs[300:]))))
    assert kendall_tau(pred.numpy(), np.asarray(target[300:])) >= 0.6


def test_decoder_reconstructs_its_training_architectures():
    space, g = NAOSpace(), _gen(0)
    seqs = space.sample_pool(60, g)
    cfg = ControllerConfig(epochs=100, augment=1, val_fraction=0.0, lr=0.02, batch_size=20)
    ctrl = NAOController(nao_token_spec(5, 5), cfg, g)
    stats = train_controller(ctrl, seqs, [float(i) for i in range(60)], cfg, g)
    assert stats.train_token_acc >= 0.95


def test_generated_architectures_are_valid_and_new():
    space, g = NAOSpace(nodes=3), _gen(4)
    seqs = space.sample_pool(50, g)
    cfg = ControllerConfig(epochs=5, augment=2, lr=0.005)
    ctrl = NAOController(nao_token_spec(3, 5), cfg, g)
    stats = train_controller(ctrl, seqs, [float(sum(s)) for s in seqs], cfg, g,
                             augment=lambda s, gg: swap_augment(s, 3, gg))
    assert stats.n_val == 5 and 0 <= stats.pairwise_acc <= 1
    new, step = generate(ctrl, seqs[:20], 15, 50, set(seqs))
    assert new and len(new) == len(set(new)) and step >= 1
    for seq in new:
        space.check_seq(seq)
        assert seq not in set(seqs)


def test_swap_augmentation_keeps_the_architecture():
    space, g = NAOSpace(), _gen(5)
    for _ in range(20):
        seq = space.sample_seq(g)
        assert space.genotype(swap_augment(seq, 5, g)).hash() == space.genotype(seq).hash()


# -- strategy ------------------------------------------------------------------------------------------------------

def _strategy(**overrides):
    cfg = NaoV2Config(cells_per_stage=1, channels=4, iterations=2, epochs_per_iteration=1, seed_archs=12,
                      new_archs=4, generate_top=4, top_k=2, rerank_epochs=1, rerank_cells_per_stage=1,
                      rerank_channels=4, eval_batch_size=8, controller=ControllerConfig(epochs=3))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    ctx = SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=2,
                        device=torch.device("cpu"), generator=_gen(0))
    return STRATEGIES.get("nao-v2")(cfg, ctx)


def _batch(seed: int):
    g = _gen(seed)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randint(10, (8,), generator=g)


def test_sampling_frequencies_follow_the_size_weights():
    s = _strategy()
    s.begin_epoch(0)
    w = s.sampling_weights(s.pool_new, True)
    sizes = torch.tensor([float(s.model_size(a)) for a in s.pool_new], dtype=torch.float64)
    torch.testing.assert_close(w, sizes / sizes.sum())
    n = 20000
    counts = np.bincount([s.pool_new.index(s.draw("main")) for _ in range(n)], minlength=len(s.pool_new))
    expected = w.numpy() * n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 31.3  # chi-square 0.999 quantile, 11 degrees of freedom
    uniform = s.sampling_weights(s.pool_new, False)
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / 12))


@pytest.mark.parametrize("independent", [True, False])
def test_independent_reinitialises_the_supernet_and_its_optimiser(independent):
    s = _strategy(independent=independent)
    s.begin_epoch(0)
    for k in range(2):
        s.step(_batch(k), _batch(k + 10))
    s.end_epoch(0)
    before = s.trainees["main"]
    trained = {n: p.detach().clone() for n, p in before.net.named_parameters()}
    assert before.optimizer.state  # momentum buffers exist
    s.begin_epoch(1)
    after = s.trainees["main"]
    if independent:
        assert after.net is not before.net and after.optimizer is not before.optimizer
        assert not after.optimizer.state
        changed = [n for n, p in after.net.named_parameters() if not torch.equal(p, trained[n])]
        assert changed
    else:
        assert after.net is before.net and after.optimizer.state
    assert after.optimizer.param_groups[0]["lr"] == s.config.lr  # the schedule restarts either way (restart_lr)


def test_strategy_compare_trains_both_on_the_same_pool():
    s = _strategy(compare=True)
    assert {k: (t.balanced, t.independent) for k, t in (s.begin_epoch(0) or s.trainees).items()} == {
        "main": (True, True), "compare": (False, False)}
    m = s.step(_batch(0), _batch(1))
    assert "compare_loss" in m and math.isfinite(m["compare_loss"])


@pytest.mark.parametrize("override, words", [
    ("search.nodes=0", "search.nodes=0 is out of range"),
    ("search.ops=[sep_conv_3x3,foo]", "search.ops item 'foo' is not a NAO op"),
    ("search.top_k=20", "search.top_k=20 exceeds the pool"),
    ("search.generate_top=99", "search.generate_top=99 exceeds the pool"),
    ("search.rerank=benchmark", "needs search.space=nb201"),
    ("search.controller.trade_off=2", r"search.controller.trade_off=2.0 is out of range: must be in \[0, 1\]"),
])
def test_bad_options_are_refused_in_one_line(override, words):
    with pytest.raises(ConfigError, match=words) as exc:
        resolve_config("nao-v2", "tiny", NaoV2Config, [override])
    assert "\n" not in str(exc.value)


def test_presets_resolve():
    for name in ("paper", "nb201", "tiny", "nb201-tiny"):
        cfg = load_preset("nao-v2", name, NaoV2Config)
        assert cfg.search.iterations >= 1
    paper = load_preset("nao-v2", "paper", NaoV2Config).search
    assert (paper.cells_per_stage, paper.channels, paper.iterations, paper.epochs_per_iteration, paper.seed_archs,
            paper.new_archs, paper.generate_top, paper.top_k, paper.rerank_epochs) == (3, 20, 4, 50, 1000, 300, 100,
                                                                                      5, 10)
    assert paper.controller.epochs == 1000 and paper.balanced and paper.independent
    train = load_preset("train", "paper-nao", None).train
    assert (train.layers, train.channels, train.weight_decay, train.epochs) == (20, 36, 5e-4, 600)


# -- end to end ----------------------------------------------------------------------------------------------------

def _rows(run_dir):
    drop = ("epoch_s", "wall_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _strategy_state(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["strategy"]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a if k not in ("wall_s", "rerank_s"))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nao") / "full"
    return nasforge.search("nao-v2", preset="tiny", out=out, overrides=FAST, progress=False)


def test_tiny_search_runs_end_to_end_and_the_genotype_retrains(tiny_run, tmp_path):
    run = tiny_run.run_dir
    res = json.loads((run / "result.json").read_text())
    assert [r["iteration"] for r in res["iterations"]] == [1, 2]
    assert res["chosen"] in res["finalists"] and len(res["rerank_acc"]) == 2 and not res["rerank_errors"]
    assert res["chosen"] == res["finalists"][max(range(2), key=lambda i: (res["rerank_acc"][i], -i))]
    NAOSpace().validate(tiny_run.genotype)
    report = (run / "report.md").read_text()
    assert "--preset paper-nao" in report and 'NAO(normal="' in report
    for fig in ("nao_pool_accuracy.png", "nao_controller.png", "nao_finalist1.png"):
        assert fig in report and (run / fig).is_file()
    trained = nasforge.train(run / "genotype.json", preset="tiny", out=tmp_path / "train", progress=False,
                             overrides=["train.epochs=1"])
    assert trained["params"] == count_params(build_network(load_genotype(run / "genotype.json"), layers=5,
                                                           channels=8, num_classes=10, in_channels=1,
                                                           auxiliary=True))
    assert math.isfinite(trained["test_acc"])


def test_resume_mid_iteration_and_mid_reranking_is_bit_exact(tiny_run, tmp_path, interrupt_after, monkeypatch):
    """Killed after epoch 1, then again once the first finalist's accuracy is cached: the resumed run trains only
    the second finalist and ends exactly where the uninterrupted one did."""
    from nasforge.proxies import ScoreCache

    out = tmp_path / "interrupted"
    own_cache = [*FAST, f"search.cache_dir={tmp_path / 'cache'}"]  # the uninterrupted run's cache is not this one
    interrupt_after("save_checkpoint", 1)  # after epoch 1 of iteration 1 (of 2 epochs)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("nao-v2", preset="tiny", out=out, overrides=own_cache, progress=False)
    interrupt_after.restore()
    put = ScoreCache.put

    def put_then_die(self, *args, **kwargs):
        put(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ScoreCache, "put", put_then_die)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("nao-v2", preset="tiny", out=out, overrides=own_cache, resume=True, progress=False)
    monkeypatch.undo()
    assert len(ScoreCache(tmp_path / "cache")) == 1
    resumed = nasforge.search("nao-v2", preset="tiny", out=out, overrides=own_cache, resume=True, progress=False)
    assert resumed.genotype == tiny_run.genotype
    rows, full = _rows(out), _rows(tiny_run.run_dir)
    assert "(1 read from the cache)" in rows[-1]["events"][-1]
    rows[-1]["events"][-1] = full[-1]["events"][-1]
    assert rows == full
    assert _same(_strategy_state(out), _strategy_state(tiny_run.run_dir))
    assert len(ScoreCache(tmp_path / "cache")) == 2


def test_finalists_trained_by_two_worker_processes_give_the_same_accuracies(tmp_path):
    """Each finalist's training depends on nothing but the finalist: two local workers give the one-process
    values bit for bit (with the same torch threads: the float summation order follows the thread count)."""
    results = []
    for workers in (1, 2):
        run = nasforge.search("nao-v2", preset="tiny", out=tmp_path / f"w{workers}", progress=False, threads=1,
                              overrides=[*FAST, f"search.workers={workers}", "search.threads=1",
                                         "search.cache_dir=off"])
        results.append(json.loads((run.run_dir / "result.json").read_text()))
    assert results[0]["rerank_acc"] == results[1]["rerank_acc"] and results[0]["chosen"] == results[1]["chosen"]


def test_nb201_tiny_reports_kendall_tau_for_v2_and_v1_style(data_root, tmp_path):
    run = nasforge.search("nao-v2", preset="nb201-tiny", out=tmp_path / "nb", progress=False,
                          overrides=["search.controller.epochs=10"])
    res = json.loads((run.run_dir / "result.json").read_text())
    for rec in res["iterations"]:
        assert -1 <= rec["kendall_tau"] <= 1 and -1 <= rec["kendall_tau_compare"] <= 1
        assert rec["flags"] == {"main": {"balanced": True, "independent": True},
                                "compare": {"balanced": False, "independent": False}}
    assert run.genotype.space == "nb201" and "benchmark" in res and res["chosen"] in res["finalists"]
    report = (run.run_dir / "report.md").read_text()
    assert "nao_kendall_tau.png" in report and "V1-style" in report


def test_nao_text_round_trips_and_loads():
    space, g = NAOSpace(), _gen(7)
    for _ in range(20):
        genotype = space.genotype(space.sample_seq(g))
        assert str(genotype).startswith('NAO(normal="') and load_genotype(str(genotype)) == genotype
    other = NAOSpace(ops=("sep_conv_3x3", "none"), nodes=2).sample(g)
    assert str(other).startswith("{") and load_genotype(str(other)) == other  # other op sets print as JSON
    with pytest.raises(GenotypeError, match="NAO text must read"):
        load_genotype('NAO(normal="1 x")')


def test_paper_nao_trains_with_classifier_dropout(tmp_path):
    """train.dropout reaches NAO's classifier; other spaces refuse it in one line."""
    from nasforge.api import resolve_config
    from nasforge.errors import ConfigError
    from nasforge.genotypes import published

    cfg = resolve_config("train", "paper-nao", None)
    assert cfg.train.dropout == 0.4
    net = build_network(published("NAONET_V2"), layers=5, channels=8, dropout=cfg.train.dropout)
    assert net.classifier.dropout == 0.4
    net.train()
    assert not torch.equal(net.classifier(torch.ones(4, net.classifier.in_features)),
                           net.classifier(torch.ones(4, net.classifier.in_features)))  # dropped at random
    with pytest.raises(ConfigError, match="train.dropout"):
        build_network(published("DARTS_V2"), layers=5, channels=8, dropout=0.4)
