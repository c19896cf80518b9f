"""P-DARTS: stages, op pruning, skip dropout schedules, the skip cap, resume across stage boundaries."""

from __future__ import annotations

import json
import math

import pytest
import torch

import nasforge
from nasforge.config import from_dict
from nasforge.errors import ConfigError
from nasforge.ops import DARTS_OPS
from nasforge.spaces import DartsSpace
from nasforge.strategies import PDarts, PDartsConfig, SearchContext
from nasforge.strategies.pdarts import cap_skip_connects, ops_to_drop, skip_dropout_rate
from nasforge.supernets import MixedEdge

TINY = ["search.epochs_per_stage=2", "search.warmup_epochs=1", "search.stage_layers=[2,3,3]",
        "data.n_train=256", "data.batch_size=64"]


def _ctx(seed: int = 0) -> SearchContext:
    return SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=1, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("schedule,epoch,expected", [
    ("paper", 0, 0.4 * 24 / 25), ("paper", 9, 0.4 * 15 / 25), ("paper", 10, 0.4 * 14 / 25), ("paper", 24, 0.0),
    ("code", 0, 0.4 * 24 / 25), ("code", 9, 0.4 * 15 / 25), ("code", 10, 0.4), ("code", 15, 0.4 * math.exp(-1.0)),
    ("code", 24, 0.4 * math.exp(-2.8)),
])
def test_skip_dropout_schedules(schedule, epoch, expected):
    assert skip_dropout_rate(0.4, epoch, 25, 10, schedule) == pytest.approx(expected)


def test_unknown_dropout_schedule():
    with pytest.raises(ConfigError, match="dropout_schedule"):
        PDarts(PDartsConfig(dropout_schedule="cosine"), _ctx())


def test_ops_to_drop_removes_the_weakest_alive_ops():
    w = torch.tensor([[0.30, 0.05, 0.10, 0.20, 0.35, 0.0, 0.0, 0.0]])
    alive = torch.tensor([[True, True, True, True, True, False, False, False]])
    drop = ops_to_drop(w, alive, keep=3)
    assert drop[0].nonzero().flatten().tolist() == [1, 2]  # 0.05 and 0.10 go (`none` could go too if weakest)
    assert ops_to_drop(w, alive, keep=5).sum() == 0


def test_stages_shrink_ops_per_edge_and_grow_depth():
    cfg = from_dict(PDartsConfig, {"stage_layers": [2, 3, 4], "stage_ops": [8, 5, 3], "channels": 4,
                                   "epochs_per_stage": 1, "warmup_epochs": 0})
    s = PDarts(cfg, _ctx())
    x, y = torch.randn(4, 1, 8, 8), torch.randint(10, (4,))
    seen = []
    for epoch in range(3):
        s.begin_epoch(epoch)
        s.step((x, y), (x, y))
        alive = s.net.alive("normal")
        seen.append((len(s.net.cells), set(alive.sum(1).tolist())))
        # removed ops are not instantiated: modules on each edge = alive ops minus `none`
        for cell in s.net.cells:
            key = "reduce" if cell.reduction else "normal"
            for e, mixed in enumerate(cell.edges):
                names = [DARTS_OPS[c] for c in mixed.columns]
                assert "none" not in names
                assert len(mixed.ops) == int(s.net.alive(key)[e].sum()) - int(bool(s.net.alive(key)[e, 0]))
        s.end_epoch(epoch)
    assert seen == [(2, {8}), (3, {5}), (4, {3})]
    g = s.export()
    DartsSpace().validate(g)
    # the final cell uses only ops that survived stage 3 on their edge
    space = DartsSpace()
    for key, cell in (("normal", g.normal), ("reduce", g.reduce)):
        for edge in cell.edges:
            row = space.edges.index((edge.src, edge.dst))
            assert bool(s.net.alive(key)[row, DARTS_OPS.index(edge.op)])


def test_skip_cap_on_a_hand_made_weight_matrix():
    """Normal cell where every node's two strongest edges are skip-connects; with cap M the M strongest
    skips survive and the other edges fall back to their next-best op or edge."""
    space = DartsSpace()
    skip, sep = DARTS_OPS.index("skip_connect"), DARTS_OPS.index("sep_conv_3x3")
    w = torch.zeros(14, 8)
    strengths = torch.linspace(0.9, 0.5, 14)
    w[:, skip] = strengths  # skip strongest everywhere, the strongest on the earliest edges
    w[:, sep] = 0.2
    weights = {"normal": w, "reduce": torch.rand(14, 8, generator=torch.Generator().manual_seed(0))}
    alive = {k: torch.ones(14, 8, dtype=torch.bool) for k in weights}
    uncapped = space.derive(weights, alive)
    assert [e.op for e in uncapped.normal.edges].count("skip_connect") == 8
    g2 = cap_skip_connects(space, weights, alive, cap=2)
    skips = [e for e in g2.normal.edges if e.op == "skip_connect"]
    assert [(e.src, e.dst) for e in skips] == [(0, 2), (1, 2)]  # the two strongest skips (edges 0 and 1)
    assert all(e.op == "sep_conv_3x3" for e in g2.normal.edges if (e.src, e.dst) not in {(0, 2), (1, 2)})
    assert g2.reduce == uncapped.reduce  # the cap applies to the normal cell only
    for cap in range(9):
        g = cap_skip_connects(space, weights, alive, cap=cap)
        assert [e.op for e in g.normal.edges].count("skip_connect") == min(cap, 8)


def test_tiny_search_exports_every_cap_and_reports_stages(tmp_path):
    res = nasforge.search("pdarts", dataset="digits", preset="tiny", out=tmp_path / "p", overrides=TINY,
                          progress=False)
    run = res.run_dir
    for m in range(9):
        g = nasforge.load_genotype(run / "genotypes" / f"skip_cap_{m}.json")
        assert [e.op for e in g.normal.edges].count("skip_connect") <= m
    assert res.genotype == nasforge.load_genotype(run / "genotypes" / "skip_cap_2.json")
    result = json.loads((run / "result.json").read_text())
    assert [s["stage"] for s in result["stages"]] == [1, 2, 3]
    assert [s["ops_per_edge"] for s in result["stages"]] == [8, 5, 3]
    assert [s["layers"] for s in result["stages"]] == [2, 3, 3]
    report = (run / "report.md").read_text()
    assert "## Stages" in report and "stage3_weights.png" in report and "skip_cap_2.json" in report
    assert (run / "stage1_weights.png").is_file()


def test_resume_across_a_stage_boundary_is_exact(tmp_path, interrupt_after):
    ref = nasforge.search("pdarts", dataset="digits", preset="tiny", out=tmp_path / "ref", overrides=TINY,
                          progress=False)
    interrupt_after("save_checkpoint", 2)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("pdarts", dataset="digits", preset="tiny", out=tmp_path / "r", overrides=TINY,
                        progress=False)
    interrupt_after.restore()
    resumed = nasforge.search("pdarts", dataset="digits", preset="tiny", out=tmp_path / "r", overrides=TINY,
                              resume=True, progress=False)
    assert resumed.genotype == ref.genotype
    assert resumed.extra == ref.extra
    drop = {"epoch_s", "wall_s", "events"}  # events quote wall times
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in ref.history]


def test_skip_dropout_only_after_identity():
    edge = MixedEdge(DARTS_OPS, [True] * 8, channels=4, stride=1)
    edge.skip_dropout = 0.9
    edge.train()
    x = torch.ones(2, 4, 6, 6)
    w = torch.zeros(8)
    w[DARTS_OPS.index("skip_connect")] = 1.0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = edge(x, lambda: torch.relu(x), w)
    assert (out == 0).float().mean() > 0.5  # element-wise dropout hit the identity path
    edge.eval()
    assert torch.equal(edge(x, lambda: torch.relu(x), w), x)
    reduce_edge = MixedEdge(DARTS_OPS, [True] * 8, channels=4, stride=2)  # stride 2: FactorizedReduce, no dropout
    reduce_edge.train()
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    reduce_edge.skip_dropout = 0.9
    dropped = reduce_edge(x, lambda: torch.relu(x), w)
    reduce_edge.skip_dropout = 0.0
    assert torch.equal(dropped, reduce_edge(x, lambda: torch.relu(x), w))


def test_bad_stage_config():
    with pytest.raises(ConfigError, match="one value per stage"):
        PDarts(PDartsConfig(stage_layers=[5, 11], stage_ops=[8, 5, 3]), _ctx())
    with pytest.raises(ConfigError, match="must not grow"):
        PDarts(PDartsConfig(stage_ops=[5, 8, 3]), _ctx())
