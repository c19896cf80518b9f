"""KNAS and random search on NAS-Bench-201 through the real search loop, run folder and table (seconds each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nasforge
from nasforge.benchmarks import load_nb201
from nasforge.errors import ConfigError
from nasforge.genotypes import load_genotype
from nasforge.proxies import ScoreCache
from nasforge.spaces import NB201Arch


def _search(tmp_path, name: str, method: str = "knas", preset: str = "tiny", seed: int = 0, **kw):
    return nasforge.search(method=method, preset=preset, out=tmp_path / name, seed=seed, progress=False, **kw)


def _result(run) -> dict:
    return json.loads((run.run_dir / "result.json").read_text())


def _records(run) -> list[dict]:
    return torch.load(run.run_dir / "checkpoints" / "last.pt", weights_only=False)["strategy"]["records"]


@pytest.fixture(scope="module")
def table(data_root):
    return load_nb201(data_dir=data_root)


def test_knas_benchmark_search_is_fast_reproducible_and_reported(tmp_path, table):
    run = _search(tmp_path, "a", seed=3)
    res = _result(run)
    for key in ("cifar10_test_mean", "cifar10_test_std", "cifar100_test_mean", "cifar100_test_std",
                "imagenet16_test_mean", "imagenet16_test_std", "search_cost_s_mean", "search_cost_s_total"):
        assert isinstance(res[key], float), key
    assert res["method"] == "knas" and res["repeats"] == 2 and res["seeds"] == [3, 4] and res["top_k"] == 4
    picks = [r["chosen"] for r in res["per_repeat"]]
    assert NB201Arch.from_genotype(run.genotype).index == picks[-1]
    assert [NB201Arch.from_genotype(load_genotype(run.run_dir / "genotypes" / f"repeat{r}.json")).index
            for r in range(2)] == picks
    tests = [table.query(i).cifar10_test for i in picks]
    assert res["cifar10_test_mean"] == pytest.approx(np.mean(tests))
    assert res["cifar10_test_std"] == pytest.approx(np.std(tests))
    report = (run.run_dir / "report.md").read_text()
    assert "knas on NAS-Bench-201" in report and "cifar10_test" in report and "--preset nb201" in report

    again = _search(tmp_path, "b", seed=3)
    assert _result(again)["per_repeat"] == [{**r, "wall_s": r2["wall_s"], "screening_s": r2["screening_s"],
                                             "selection_s": r2["selection_s"], "cache_hits": r2["cache_hits"]}
                                            for r, r2 in zip(res["per_repeat"], _result(again)["per_repeat"])]
    assert _result(again)["cache_hits"] == 2 * 12  # every score came from the on-disk cache
    other = _search(tmp_path, "c", seed=4)
    assert _records(other)[0]["candidates"] == _records(run)[1]["candidates"]  # repeat r of seed s draws with s + r


def test_knas_keeps_the_top_k_and_selects_by_the_12_epoch_validation(tmp_path, table):
    from nasforge.strategies import STRATEGIES

    run = _search(tmp_path, "k")
    for rec in _records(run):
        scores = np.asarray(rec["scores"])
        assert rec["shortlist"] == list(np.argsort(-scores, kind="stable")[:4])
        column = table.column("c10valid_xvalid_12")
        best = max(rec["shortlist"], key=lambda p: column[rec["candidates"][p]])
        assert rec["chosen"] == rec["candidates"][best]
        assert rec["selection_values"] == [column[rec["candidates"][p]] for p in rec["shortlist"]]
    assert STRATEGIES.get("knas").Config().top_k == 40 and STRATEGIES.get("knas").Config().n_samples == 300
    paper = nasforge.api.resolve_config("knas", "paper", STRATEGIES.get("knas").Config)
    assert (paper.search.n_samples, paper.search.top_k, paper.search.repeats, paper.search.selection) == \
        (300, 40, 9, "benchmark")


def test_random_search_is_reported_like_knas(tmp_path):
    run = _search(tmp_path, "r", method="random")
    res = _result(run)
    assert res["method"] == "random" and res["shortlist_size"] == 12 and "cifar10_test_mean" in res
    assert "random on NAS-Bench-201" in (run.run_dir / "report.md").read_text()


def test_selection_by_brief_training_and_retraining_the_result(tmp_path):
    run = _search(tmp_path, "t", preset="tiny-train", overrides=["search.threads=1"])  # as each of 2 workers
    res = _result(run)
    assert res["selection"] == "train" and len(res["per_repeat"]) == 2
    for r in res["per_repeat"]:
        assert len(r["selection_values"]) == 2 and all(0 <= v <= 100 for v in r["selection_values"])
    assert all(r["selection_s"] > 0 for r in res["per_repeat"])  # real training happened
    assert len({v for r in res["per_repeat"] for v in r["selection_values"]}) > 1
    two = _search(tmp_path, "t2", preset="tiny-train", overrides=["search.workers=2", "search.repeats=1"])
    assert _result(two)["per_repeat"][0]["selection_values"] == res["per_repeat"][0]["selection_values"]
    trained = nasforge.train(run.run_dir / "genotype.json", preset="nb201-tiny", out=tmp_path / "retrain",
                             progress=False)
    assert 0 <= trained["test_acc"] <= 100 and trained["params"] > 0


def test_official_statistic_preset_and_bad_settings(tmp_path):
    run = _search(tmp_path, "o", overrides=["search.proxy=mgm_official", "search.n_samples=6", "search.top_k=2",
                                            "search.repeats=1"])
    assert _result(run)["proxy"] == "mgm_official"
    with pytest.raises(ConfigError, match=r"selection='oracle' is out of range: must be one of"):
        _search(tmp_path, "x1", overrides=["search.selection=oracle"])
    with pytest.raises(ConfigError, match="has no option 'bn'"):
        _search(tmp_path, "x2", overrides=["search.proxy_options=[bn=eval]"])
    with pytest.raises(ConfigError, match="benchmark_dataset"):
        _search(tmp_path, "x3", overrides=["search.benchmark_dataset=imagenet"])


def test_parallel_scoring_fills_the_cache_before_the_steps(tmp_path):
    run = _search(tmp_path, "w", overrides=["search.workers=2", "search.repeats=1", "search.n_samples=6",
                                            "search.top_k=2", f"search.cache_dir={tmp_path / 'w-cache'}"])
    res = _result(run)
    assert res["cache_hits"] == 0 and len(_records(run)[0]["scores"]) == 6  # every step read a prefetched score
    assert len(ScoreCache(tmp_path / "w-cache")) == 6  # each written to the cache as it finished
    again = _search(tmp_path, "w2", overrides=["search.workers=2", "search.repeats=1", "search.n_samples=6",
                                               "search.top_k=2", f"search.cache_dir={tmp_path / 'w-cache'}"])
    assert _result(again)["cache_hits"] == 6 and _records(again)[0]["scores"] == _records(run)[0]["scores"]


def test_official_sampling_draws_with_replacement_from_the_readme_range():
    """--preset paper-official: indices 0..5000 only, with replacement, as the KNAS code's README scores them."""
    import torch

    from nasforge.api import resolve_config
    from nasforge.spaces import NB201Space
    from nasforge.strategies import STRATEGIES

    cfg = resolve_config("knas", "paper-official", STRATEGIES.get("knas").Config)
    c = cfg.search
    assert c.replace and c.index_range == [0, 5000] and c.proxy == "mgm_official" and c.top_k == 40
    draws = NB201Space().sample_indices(20000, torch.Generator().manual_seed(0), True, *c.index_range)
    assert min(draws) >= 0 and max(draws) == 5000 and len(set(draws)) < len(draws)
    few = NB201Space().sample_indices(3, torch.Generator().manual_seed(0), False, 10, 12)
    assert sorted(few) == [10, 11, 12]
    from nasforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"search\.n_samples=300 is out of range: must be <= the 3"):
        resolve_config("knas", "paper", STRATEGIES.get("knas").Config, ["search.index_range=[10,12]"])
    with pytest.raises(ConfigError, match=r"search\.index_range"):
        resolve_config("knas", "paper", STRATEGIES.get("knas").Config, ["search.index_range=[12,10]"])
