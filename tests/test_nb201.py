"""NAS-Bench-201: strings, indices and genotypes against the real table; the networks; the table reader; ``bench``.

The table is the shared real one (``$NASFORGE_DATA/nas-bench-201/nb201_table.csv``) read by the real loader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nasforge.benchmarks import NB201_READERS, load_nb201, resolve_nb201_path
from nasforge.costs import count_params
from nasforge.errors import ConfigError, DataError, GenotypeError
from nasforge.genotypes import Genotype, from_nb201_text, load_genotype, to_nb201_text
from nasforge.models import NB201Network, build_network
from nasforge.supernets import NB201SuperNet
from nasforge.ops import create_op
from nasforge.spaces import NB201Arch, NB201Space
from nasforge.strategies.hypergrad import first_order_arch_grads

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
TABLE_CSV = Path("nas-bench-201") / "nb201_table.csv"


@pytest.fixture(scope="module")
def table(data_root):
    return load_nb201(data_dir=data_root)


# -- strings, indices, genotypes --------------------------------------------------------------------------------

def test_every_index_string_and_genotype_agree_with_the_table(table):
    """All 15,625 rows: the official index order (replayed shuffle) gives each row's string; strings parse, print
    back, map to their index, and survive the genotype IR and its JSON."""
    space = NB201Space()
    assert len(space) == len(table) == 15625
    for i, arch in enumerate(space.enumerate()):
        s = table.query(i).arch
        assert arch.string == s
        assert NB201Arch.from_string(s).index == i
        g = from_nb201_text(s)
        assert to_nb201_text(g) == s == str(g)
        assert NB201Arch.from_genotype(g).ops == arch.ops
    g = from_nb201_text(BEST)
    assert Genotype.from_json(g.to_json()) == g and g.space == "nb201" and g.cells[0].n_inputs == 1


def test_best_and_all_skip_look_up(table):
    best = table.query(6111)
    assert best.arch == BEST and round(best.cifar10_test, 2) == 94.37
    assert table.best().index == 6111
    skip = table.query(ALL_SKIP)
    assert round(skip.cifar10_test, 2) == 54.30 and skip.index == 1835
    by_genotype = table.query(from_nb201_text(BEST))
    assert by_genotype == best == table.query("6111") == table.query(NB201Arch.from_index(6111))
    assert best["cifar10_test"] == best["c10_oritest_200"]  # readable aliases
    assert round(best.cifar100_test, 2) == 73.22 and round(best.imagenet16_test, 2) == 46.71
    assert set(best.as_dict()) >= {"c10valid_xvalid_200", "c10valid_oritest_200", "c100_xtest_200", "in16_xtest_200",
                                   "c10valid_xvalid_12", "c100_xvalid_12", "in16_xvalid_12", "params_mb"}
    assert np.isnan(table.query(10).values["naswot_score_v1"])  # the published score is missing for some cells
    assert table.column("c10_oritest_200").nbytes == 15625 * 8  # compact: one float64 array


@pytest.mark.parametrize("text, match", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "expected 3 node groups"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_3x3' on edge 0->1"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 input 0 is 'none~1'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 input"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
])
def test_bad_strings_say_what_is_wrong(text, match):
    with pytest.raises(GenotypeError, match=match):
        NB201Arch.from_string(text)


def test_index_and_genotype_errors():
    with pytest.raises(GenotypeError, match=r"0\.\.15624"):
        NB201Arch.from_index(15625)
    darts = load_genotype("DARTS_V2")
    with pytest.raises(GenotypeError, match="not an NB201 genotype"):
        NB201Arch.from_genotype(darts)
    with pytest.raises(GenotypeError, match="neither an NB201 string"):
        NB201Arch.parse("hello")


def test_load_genotype_reads_nb201_strings(tmp_path):
    assert load_genotype(BEST) == from_nb201_text(BEST)
    (tmp_path / "arch.txt").write_text(BEST + "\n")
    assert load_genotype(tmp_path / "arch.txt") == from_nb201_text(BEST)


def test_sampling_is_seeded_and_uniform_without_replacement():
    space = NB201Space()
    a = space.sample_indices(500, torch.Generator().manual_seed(3))
    assert a == space.sample_indices(500, torch.Generator().manual_seed(3)) and len(set(a)) == 500
    assert a != space.sample_indices(500, torch.Generator().manual_seed(4))
    space.validate(space.sample(torch.Generator().manual_seed(0)))


# -- networks ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [6111, 1835, 0, 10, 15624, 7313])
def test_network_parameter_count_equals_the_table(table, index):
    net = build_network(NB201Arch.from_index(index).genotype())
    assert isinstance(net, NB201Network)
    assert count_params(net) == round(table.query(index).values["params_mb"] * 1e6)


def test_network_forward_and_none_nodes():
    net = NB201Network(NB201Arch.from_index(10).genotype(), num_classes=5, channels=8, cells_per_stage=1,
                       in_channels=1)  # node 3 only has `none` inputs: the cell outputs zeros
    x = torch.randn(3, 1, 8, 8)
    logits, aux = net(x)
    assert logits.shape == (3, 5) and aux is None
    assert torch.equal(net.cells[0](torch.randn(2, 8, 8, 8)), torch.zeros(2, 8, 8, 8))


def test_build_network_rejects_what_nb201_lacks():
    g = from_nb201_text(BEST)
    with pytest.raises(ConfigError, match="no auxiliary head"):
        build_network(g, auxiliary=True)
    net = build_network(g, layers=1, channels=8)
    net.drop_path_prob = 0.0
    with pytest.raises(ConfigError, match="without drop-path"):
        net.drop_path_prob = 0.1


def test_eval_ops_have_nb201_semantics():
    """DARTS's eval-mode ``avg_pool_3x3``/``skip_connect`` are NB201's; ``nor_conv`` is ReLU-Conv-BN."""
    x = torch.randn(2, 4, 8, 8)
    pool = create_op("avg_pool_3x3", 4, 1, affine=True, search=False)
    assert torch.equal(pool(x), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    assert torch.equal(create_op("skip_connect", 4, 1)(x), x)
    conv = create_op("nor_conv_3x3", 4, 1).eval()
    assert [type(m) for m in conv] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d] and conv[1].bias is None
    assert [type(m) for m in create_op("nor_conv_1x1", 4, 1, affine=False, search=False)] == \
        [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert not [m for m in create_op("avg_pool_3x3", 4, 1, affine=False, search=False).modules()
                if isinstance(m, nn.BatchNorm2d)]  # NB201 search pools carry no BN


# -- supernet ---------------------------------------------------------------------------------------------------

def test_supernet_darts_step_and_derivation():
    """One first-order DARTS step (architecture, then weights) on the NB201 supernet derives a valid cell."""
    gen = torch.Generator().manual_seed(0)
    net = NB201SuperNet(num_classes=10, channels=4, cells_per_stage=1, in_channels=1, generator=gen)
    assert [a.shape for a in net.arch_parameters()] == [(6, 5)]
    assert len(net.weight_parameters()) + 1 == len(list(net.parameters()))
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    before = net.alphas["normal"].detach().clone()
    loss, grads = first_order_arch_grads(lambda: F.cross_entropy(net(x), y), net.arch_parameters())
    assert torch.isfinite(loss) and grads[0].abs().sum() > 0
    net.alphas["normal"].grad = grads[0]
    a_opt.step()
    w_opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    assert all(p.grad is not None for p in net.weight_parameters())
    w_opt.step()
    assert not torch.equal(before, net.alphas["normal"])
    space = NB201Space()
    g = space.derive({k: w.detach() for k, w in net.op_weights().items()},
                     {k: net.alive(k) for k in net.arch_keys()})
    space.validate(g)
    torch.testing.assert_close(net.op_weights()["normal"].sum(1), torch.ones(6))


def test_derivation_argmax_and_exclusions():
    space = NB201Space()
    w = torch.zeros(6, 5)
    w[:, 0] = 1.0  # `none` strongest everywhere
    w[:, 3] = 0.5
    assert set(NB201Arch.from_genotype(space.derive({"normal": w})).ops) == {"none"}
    assert set(NB201Arch.from_genotype(space.derive({"normal": w}, exclude=("none",))).ops) == {"nor_conv_3x3"}
    alive = torch.ones(6, 5, dtype=torch.bool)
    alive[:, 3] = False
    ops = NB201Arch.from_genotype(space.derive({"normal": w}, {"normal": alive}, exclude=("none",))).ops
    assert set(ops) == {"skip_connect"}  # removed ops never win; ties keep the earlier op


# -- the table reader -------------------------------------------------------------------------------------------

def _write_rows(data_root: Path, path: Path, edit=None, keep: int | None = None) -> Path:
    lines = (data_root / TABLE_CSV).read_text().splitlines()
    if keep is not None:
        lines = lines[:keep]
    if edit is not None:
        lines = edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _swap_strings(lines: list[str]) -> list[str]:
    a, b = lines[1].split(","), lines[2].split(",")
    a[1], b[1] = b[1], a[1]
    return [lines[0], ",".join(a), ",".join(b), *lines[3:]]


@pytest.mark.parametrize("name, edit, keep, match", [
    ("truncated.csv", None, 100, "has 99 of the 15625 architectures"),
    ("swapped.csv", _swap_strings, None, "line 2: index 0 is .* but NB201's index 0 is"),
    ("badnumber.csv", lambda ls: [ls[0], ls[1].replace(",0.129306,", ",abc,"), *ls[2:]], None,
     "line 2: params_mb is 'abc'"),
    ("nocolumns.csv", lambda ls: ["index,arch_str", *ls[1:]], None, "lacks column"),
    ("empty.csv", lambda ls: [], None, "is empty"),
])
def test_corrupt_tables_fail_in_one_line(data_root, tmp_path, name, edit, keep, match):
    path = _write_rows(data_root, tmp_path / name, edit, keep)
    with pytest.raises(DataError, match=match) as info:
        load_nb201(path)
    assert "\n" not in str(info.value)


def test_table_location_rules(data_root, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="NB201 table not found at .*--table PATH"):
        load_nb201(tmp_path / "missing.csv")
    (tmp_path / "table.pth").write_bytes(b"\0")
    with pytest.raises(DataError, match="no NB201 reader for 'table.pth'"):
        load_nb201(tmp_path / "table.pth")
    assert "csv" in NB201_READERS
    monkeypatch.setenv("NASFORGE_NB201", str(data_root / TABLE_CSV))
    assert resolve_nb201_path(None, tmp_path) == data_root / TABLE_CSV  # the variable wins over the data root
    monkeypatch.delenv("NASFORGE_NB201")
    assert resolve_nb201_path(None, tmp_path) == tmp_path / TABLE_CSV
    assert load_nb201(data_dir=data_root) is load_nb201(data_root / TABLE_CSV)  # loaded once, cached


# -- the command ------------------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasforge", *args], capture_output=True, text=True, timeout=120)


def test_bench_command(data_root, tmp_path):
    res = _cli("bench", "--space", "nb201", "--arch", "6111", "--arch", ALL_SKIP, "--json",
               "--data-dir", str(data_root))
    assert res.returncode == 0, res.stderr
    best, skip = json.loads(res.stdout)
    assert round(best["c10_oritest_200"], 2) == 94.37 and round(skip["c10_oritest_200"], 2) == 54.30
    text = _cli("bench", "--arch", BEST, "--data-dir", str(data_root))
    assert "NB201 #6111" in text.stdout and "CIFAR-10 test 94.37 %" in text.stdout
    bad = _cli("bench", "--arch", "|nope~0|+|x|", "--data-dir", str(data_root))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nasforge: error: NB201 string" in bad.stderr
    help_ = _cli("bench", "--help")
    assert "examples:" in help_.stdout and "NASFORGE_NB201" in help_.stdout
