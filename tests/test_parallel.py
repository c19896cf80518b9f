"""Parallel candidate evaluation (issue #14, items 2 and 3): the executor interface, its local and Ray backends,
the thread rule, failing candidates, the score cache, and KNAS through both backends.

Ray tests start a real local Ray (``ray.init(num_cpus=2)``) and are skipped, with the reason, when Ray is not
installed (``pip install 'nasforge[ray]'``; the README's test command installs it).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nasforge
from nasforge.errors import ConfigError
from nasforge.genotypes import Genotype, published
from nasforge.parallel import LocalExecutor, default_threads, make_executor
from nasforge.proxies import NetworkSpec, ScoreCache, score_many
from nasforge.spaces import NB201Arch

SPEC = NetworkSpec(num_classes=10, channels=4, cells=1)
PROXIES = ["mgm", "params", "naswot"]


def _threads_in_worker(_: object) -> int:
    """What torch says inside the worker (module level: workers import it by name)."""
    return torch.get_num_threads()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _archs() -> list[Genotype]:
    """Three NB201 cells and, second, a 3-cell unshared DARTS genotype that cannot be built with one cell: its
    scoring raises a real GenotypeError in the worker."""
    v2 = published("DARTS_V2")
    unshared = Genotype(cells=(v2.normal, v2.reduce, v2.reduce), sharing="none")
    return [NB201Arch.from_index(6111).genotype(), unshared, NB201Arch.from_index(1835).genotype(),
            NB201Arch.from_index(77).genotype()]


def _check_failure_and_cache(tmp_path: Path, executor) -> list[dict]:
    """Score through ``executor``: the unbuildable candidate is reported, the rest finish and are cached, and a
    rerun recomputes only the failure."""
    x, y = _batch()
    first = score_many(_archs(), PROXIES, x, y, seed=0, net=SPEC, cache=ScoreCache(tmp_path), executor=executor,
                       progress=False)
    bad = first[1]
    assert all(math.isnan(s.value) and s.error.startswith("GenotypeError: the genotype has 3 unshared cells")
               and "\n" not in s.error for s in bad.values())  # building the network fails for every proxy
    good = [r for i, r in enumerate(first) if i != 1]
    assert all(s.error is None and math.isfinite(s.value) and not s.cached for r in good for s in r.values())
    assert len(ScoreCache(tmp_path)) == len(good) * len(PROXIES)  # failures are never cached
    again = score_many(_archs(), PROXIES, x, y, seed=0, net=SPEC, cache=ScoreCache(tmp_path), executor=executor,
                       progress=False)
    assert all(s.cached and s.value == first[i][p].value for i in (0, 2, 3) for p, s in again[i].items())
    assert not again[1]["mgm"].cached and again[1]["mgm"].error == bad["mgm"].error  # tried again, failed again
    return first


# -- local backend -------------------------------------------------------------------------------------------

def _exit(code: int) -> None:
    """A candidate that takes its worker process down with it (as a segfault or an out-of-memory kill would)."""
    os._exit(code)


def test_a_failing_candidate_is_reported_and_the_others_finish_locally():
    for workers in (1, 2):  # in this process, then in a pool that the next check reuses
        ex = LocalExecutor(workers)
        out = ex.map(math.sqrt, [4.0, -1.0, 9.0])
        assert [o.value for o in out] == [2.0, None, 3.0]
        assert out[1].error == "ValueError: math domain error" and out[0].ok and not out[1].ok
        assert all(o.worker > 0 and o.peak_rss_mib > 0 for o in out)
    with ex:
        died = ex.map(_exit, [3, 3])
        assert all(o.error.startswith("WorkerDied: a worker process ended abruptly") for o in died)
        assert [o.value for o in ex.map(math.sqrt, [1.0, 4.0])] == [1.0, 2.0]  # a fresh pool took over


def test_the_thread_rule_holds_in_every_worker():
    assert default_threads(2, cores=8) == 4 and default_threads(3, cores=2) == 1 and default_threads(1, 16) == 16
    before = torch.get_num_threads()
    big = torch.ones(2**27)  # 512 MiB in this process: a worker's own peak must not include it
    with LocalExecutor(2) as ex:  # cores / workers, measured by torch inside the worker processes
        out = ex.map(_threads_in_worker, [0, 1, 2])
    assert [o.value for o in out] == [default_threads(2)] * 3 and os.getpid() not in {o.worker for o in out}
    assert all(0 < o.peak_rss_mib < 450 for o in out), [o.peak_rss_mib for o in out]
    del big
    with LocalExecutor(1, threads=2) as ex:  # --threads overrides the rule; in this process, with the caller's
        # own count restored afterwards
        out = ex.map(_threads_in_worker, [0])
    assert out[0].value == 2 and out[0].worker == os.getpid() and torch.get_num_threads() == before


def test_bad_executor_settings_are_one_line_errors():
    for kwargs, message in (({"kind": "dask"}, "--executor 'dask': choose one of: local, ray"),
                            ({"ray_address": "auto"}, r"a Ray address \(auto\) needs --executor ray"),
                            ({"workers": 0}, "workers must be >= 1, got 0"),
                            ({"threads": 0}, "threads must be >= 1, got 0")):
        with pytest.raises(ConfigError, match=message):
            make_executor(**kwargs)


@pytest.fixture(scope="module")
def local_scores(tmp_path_factory) -> list[dict]:
    with LocalExecutor(2, threads=1) as ex:
        return _check_failure_and_cache(tmp_path_factory.mktemp("local"), ex)


def test_score_many_locally_reports_failures_and_caches_the_rest(local_scores):
    assert len(local_scores) == 4 and list(local_scores[0]) == PROXIES  # checked in _check_failure_and_cache


def test_proxies_command_with_a_failing_architecture(tmp_path, data_root):
    archs = tmp_path / "archs.txt"
    archs.write_text("6111\n" + _archs()[1].to_json(indent=None) + "\n1835\n")
    out = tmp_path / "scores.csv"
    cmd = [sys.executable, "-m", "nasforge", "proxies", "--proxy", "mgm", "--archs", str(archs), "--dataset",
           "digits", "--samples", "8", "--channels", "4", "--cells", "1", "--out", str(out), "--json",
           "--no-progress", "--data-dir", str(data_root), "--cache", str(tmp_path / "cache")]
    res = subprocess.run([*cmd, "--threads", "1"], capture_output=True, text=True, timeout=240)
    assert res.returncode == 1, res.stderr  # finished, with one failure
    report = json.loads(res.stdout)
    assert [f["error"].split(":")[0] for f in report["failed"]] == ["GenotypeError"]
    assert len(out.read_text().splitlines()) == 4 and report["executor"] == "local"
    bad = subprocess.run([*cmd, "--ray-address", "auto"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "needs --executor ray" in bad.stderr


# -- Ray backend -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'nasforge[ray]' runs these tests")
    # workers import this test module by name (for _threads_in_worker), as they import nasforge
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                     os.environ.get("PYTHONPATH", "")])}})
    yield ray
    ray.shutdown()


def test_ray_reports_failures_and_sets_threads(ray_session):
    with make_executor("ray", workers=2) as ex:
        out = ex.map(math.sqrt, [4.0, -1.0, 9.0])
        assert [o.value for o in out] == [2.0, None, 3.0] and out[1].error == "ValueError: math domain error"
        assert [o.value for o in ex.map(_threads_in_worker, [0, 1])] == [1, 1]  # one per requested CPU
        assert [o.value for o in ex.map(_threads_in_worker, [0], cpus=2)] == [2]
    with make_executor("ray", workers=2, threads=2) as ex:
        assert [o.value for o in ex.map(_threads_in_worker, [0, 1])] == [2, 2]


def test_ray_scores_equal_local_scores_exactly(ray_session, tmp_path, local_scores):
    with make_executor("ray", workers=2, threads=1) as ex:
        on_ray = _check_failure_and_cache(tmp_path, ex)
    values = [[(p, s.value, s.error) for p, s in r.items()] for r in on_ray]
    assert values == [[(p, s.value, s.error) for p, s in r.items()] for r in local_scores]


def test_knas_selects_the_same_on_ray_as_locally(ray_session, tmp_path, data_root):
    runs = {}
    for kind in ("local", "ray"):
        run = nasforge.search(method="knas", preset="tiny", out=tmp_path / kind, seed=1, progress=False,
                              overrides=[f"search.executor={kind}", "search.workers=2", "search.threads=1",
                                         "search.repeats=1", "search.n_samples=6", "search.top_k=2",
                                         "search.selection=train", "search.train_steps=6", "search.eval_batches=2",
                                         f"search.cache_dir={tmp_path / (kind + '-cache')}"])
        runs[kind] = torch.load(run.run_dir / "checkpoints" / "last.pt", weights_only=False)["strategy"]["records"]
    fields = ("candidates", "scores", "shortlist", "chosen", "selection_values")
    assert [{k: r[k] for k in fields} for r in runs["ray"]] == [{k: r[k] for k in fields} for r in runs["local"]]
    assert len(runs["ray"][0]["scores"]) == 6 and all(math.isfinite(s) for s in runs["ray"][0]["scores"])
    assert len(runs["ray"][0]["selection_values"]) == 2  # the shortlist trained as Ray tasks, chosen alike


def test_nao_v2_finalists_train_alike_on_ray_and_locally(ray_session, tmp_path, data_root):
    """NAO-V2's final re-ranking as Ray tasks gives the finalists' accuracies of local worker processes."""
    results = {}
    for kind in ("local", "ray"):
        run = nasforge.search(method="nao-v2", preset="tiny", out=tmp_path / kind, progress=False, threads=1,
                              overrides=[f"search.executor={kind}", "search.workers=2", "search.threads=1",
                                         "search.controller.epochs=10", "search.top_k=2", "search.rerank_epochs=1",
                                         "search.cache_dir=off"])
        results[kind] = json.loads((run.run_dir / "result.json").read_text())
    assert len(results["ray"]["rerank_acc"]) == 2 and not results["ray"]["rerank_errors"]
    for key in ("finalists", "rerank_acc", "chosen"):
        assert results["ray"][key] == results["local"][key], key


# -- repeated seeds of a search through the executor -----------------------------------------------------------
SEEDS_SET = ["search.epochs=1", "data.n_train=160"]


def _seed_runs(runs: list) -> list[tuple]:
    return [(r.seed, r.genotype, r.valid_acc, r.error) for r in runs]


@pytest.fixture(scope="module")
def seeds_in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "one"
    return out, nasforge.api.search_seeds([0, 1], out=out, overrides=SEEDS_SET, workers=1, threads=1)


def test_seeds_run_in_parallel_give_what_one_process_gives_and_are_not_redone(seeds_in_process, tmp_path):
    _, alone = seeds_in_process
    both = nasforge.api.search_seeds([0, 1], out=tmp_path / "two", overrides=SEEDS_SET, workers=2, threads=1)
    assert _seed_runs(both) == _seed_runs(alone) and all(r.genotype for r in both)
    assert both[0].genotype != both[1].genotype or both[0].valid_acc != both[1].valid_acc  # the seeds differ
    summary = json.loads((tmp_path / "two" / "seeds.json").read_text())
    assert [s["seed"] for s in summary] == [0, 1] and (tmp_path / "two" / "seed1" / "report.md").is_file()
    again = nasforge.api.search_seeds([0, 1], out=tmp_path / "two", overrides=SEEDS_SET, workers=2, threads=1)
    assert all(r.cached for r in again) and _seed_runs(again) == _seed_runs(both)


def test_a_failing_seed_is_reported_and_the_others_finish(tmp_path):
    broken = tmp_path / "seed1" / "checkpoints" / "last.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")  # seed 1 would resume from this and fail
    runs = nasforge.api.search_seeds([0, 1], out=tmp_path, overrides=SEEDS_SET, workers=2, threads=1)
    assert runs[0].error is None and runs[0].genotype
    assert runs[1].error.startswith("CheckpointError: cannot read checkpoint") and runs[1].genotype is None
    cli = subprocess.run([sys.executable, "-m", "nasforge", "search", "--seeds", "0,1", "--out", str(tmp_path),
                          *sum((["--set", s] for s in SEEDS_SET), [])], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1 and "seed 1: FAILED CheckpointError" in cli.stdout
    assert "seed 0:" in cli.stdout and "(finished before)" in cli.stdout


def test_bad_seed_settings_are_refused_before_any_folder(tmp_path):
    for kwargs, message in (({"seeds": []}, "needs at least one seed"), ({"seeds": [1, 1]}, "lists a seed twice"),
                            ({"seeds": [0], "workers": 0}, "--workers and --threads must be >= 1"),
                            ({"seeds": [0], "executor": "dask"}, "choose one of: local, ray")):
        with pytest.raises(ConfigError, match=message):
            nasforge.api.search_seeds(out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()
    cli = subprocess.run([sys.executable, "-m", "nasforge", "search", "--seeds", "a,b", "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "--seeds 'a,b'" in cli.stderr


def test_workers_without_seeds_set_the_methods_executor_or_are_refused(tmp_path):
    """``--workers/--executor/--ray-address`` without --seeds go to a candidate method's own settings; a
    one-supernet method refuses them in one line instead of ignoring them."""
    from nasforge.cli import runs

    parser = nasforge.cli.build_parser()
    args = parser.parse_args(["search", "--method", "nao-v2", "--workers", "3", "--executor", "ray"])
    assert runs._candidate_overrides(args) == ["search.workers=3", "search.executor=ray"]
    assert runs._candidate_overrides(parser.parse_args(["search", "--method", "knas"])) == []
    cli = subprocess.run([sys.executable, "-m", "nasforge", "search", "--method", "darts", "--workers", "2",
                          "--out", str(tmp_path / "d")], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1
    assert "--workers: darts trains one supernet and evaluates no independent candidates" in cli.stderr
    assert not (tmp_path / "d").exists()


def test_seeds_on_ray_equal_seeds_in_process(ray_session, seeds_in_process, tmp_path):
    _, alone = seeds_in_process
    on_ray = nasforge.api.search_seeds([0, 1], out=tmp_path, overrides=SEEDS_SET, executor="ray", workers=2,
                                       threads=1)
    assert _seed_runs(on_ray) == _seed_runs(alone)
