"""End to end through the public API on real data: search, resume, retrain, report (CPU, seconds each)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nasforge
from nasforge.genotypes import Genotype, load_genotype
from nasforge.spaces import DartsSpace

FAST = ["search.epochs=2", "search.layers=3", "search.channels=4", "data.n_train=384", "data.batch_size=64"]
TIMING = {"epoch_s", "wall_s"}


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _final_alphas(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return {k: v for k, v in state["strategy"]["model"].items() if k.startswith("alphas.")}


@pytest.fixture(scope="module")
def digits_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    return nasforge.search("darts", dataset="digits", preset="tiny", out=out, overrides=FAST, progress=False)


def test_search_writes_a_complete_run_folder(digits_search):
    run = digits_search.run_dir
    for name in ["config.yaml", "metrics.jsonl", "genotype.json", "run.log", "report.md", "split.json",
                 "cells.png", "curves.png", "arch_weights.png", "checkpoints/last.pt"]:
        assert (run / name).is_file(), name
    g = load_genotype(run / "genotype.json")
    assert g == digits_search.genotype
    DartsSpace().validate(g)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["seed"] == 2 and cfg["search"]["epochs"] == 2 and cfg["data"]["n_train"] == 384
    assert cfg["environment"]["nasforge_version"] == nasforge.__version__
    assert {"git_commit", "device", "torch"} <= set(cfg["environment"])
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["valid_acc"] <= 100 for r in rows)
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train_indices"]) & set(split["val_indices"])
    assert len(split["train_indices"]) + len(split["val_indices"]) == 384
    report = (run / "report.md").read_text()
    assert "![cells](cells.png)" in report and g.hash() in report


def test_search_is_reproducible_per_seed(digits_search, tmp_path):
    again = nasforge.search("darts", dataset="digits", preset="tiny", out=tmp_path / "again", overrides=FAST,
                            progress=False)
    assert again.genotype == digits_search.genotype
    assert _rows(again.run_dir) == _rows(digits_search.run_dir)
    for k, v in _final_alphas(again.run_dir).items():
        assert torch.equal(v, _final_alphas(digits_search.run_dir)[k])


def test_resume_after_interruption_is_bit_exact(digits_search, tmp_path, interrupt_after):
    """Interrupt after epoch 1's checkpoint, while epoch 2's metrics are already written; resume."""
    out = tmp_path / "interrupted"
    interrupt_after("append_metrics", 2)
    with pytest.raises(KeyboardInterrupt):
        nasforge.search("darts", dataset="digits", preset="tiny", out=out, overrides=FAST, progress=False)
    interrupt_after.restore()
    assert not (out / "genotype.json").exists()
    resumed = nasforge.search("darts", dataset="digits", preset="tiny", out=out, overrides=FAST, resume=True,
                              progress=False)
    assert resumed.genotype == digits_search.genotype
    assert _rows(out) == _rows(digits_search.run_dir)  # the half-logged epoch was redone, not duplicated
    for k, v in _final_alphas(out).items():
        assert torch.equal(v, _final_alphas(digits_search.run_dir)[k])


def test_resume_refuses_a_different_config(digits_search, tmp_path):
    out = tmp_path / "x"
    nasforge.search("darts", dataset="digits", preset="tiny", out=out, overrides=FAST[:1] + ["search.epochs=1"] +
                    FAST[1:], progress=False)
    with pytest.raises(nasforge.errors.CheckpointError, match="search.channels"):
        nasforge.search("darts", dataset="digits", preset="tiny", out=out, resume=True, progress=False,
                        overrides=[*FAST, "search.channels=6"])


def test_existing_run_folder_is_not_overwritten(digits_search):
    with pytest.raises(nasforge.errors.NasforgeError, match="already holds a run"):
        nasforge.search("darts", dataset="digits", preset="tiny", out=digits_search.run_dir, overrides=FAST,
                        progress=False)


def test_killed_process_resumes_to_the_same_genotype(tmp_path):
    """A real SIGKILL in the middle of a CLI search, then the same command with --resume."""
    args = ["--set", "search.epochs=3", "--set", "search.layers=3", "--set", "search.channels=4",
            "--set", "data.n_train=384", "--seed", "5", "--no-progress"]
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "nasforge", "search", "--out", str(ref), *args], check=True,
                   capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "search", "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((out / "checkpoints").glob("*.tmp"))
    done = subprocess.run([sys.executable, "-m", "nasforge", "search", "--out", str(out), "--resume", *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_genotype(out) == load_genotype(ref)
    assert _rows(out) == _rows(ref)


def test_second_order_search_runs(tmp_path):
    res = nasforge.search("darts", dataset="digits", preset="tiny-second-order", out=tmp_path / "so",
                          overrides=["search.epochs=1", "search.layers=3", "data.n_train=256"], progress=False)
    assert isinstance(res.genotype, Genotype)
    assert np.isfinite(res.history[-1]["train_arch_loss"])


def test_train_a_searched_genotype_and_resume(digits_search, tmp_path, interrupt_after):
    overrides = ["train.epochs=2", "train.layers=3", "train.channels=4", "data.n_train=384", "data.n_test=200"]
    ref = nasforge.train(digits_search.run_dir / "genotype.json", dataset="digits", preset="tiny",
                         out=tmp_path / "ref", overrides=overrides, progress=False)
    saved = json.loads((tmp_path / "ref" / "result.json").read_text())
    assert {"test_acc", "params", "macs", "wall_s"} <= set(saved)
    assert isinstance(saved["params"], int) and saved["params"] > 0 and saved["macs"] > 0
    assert 0 <= saved["test_acc"] <= 100 and saved["test_acc"] == ref["test_acc"]
    assert (tmp_path / "ref" / "report.md").is_file()

    interrupt_after("save_checkpoint", 1)
    with pytest.raises(KeyboardInterrupt):
        nasforge.train(digits_search.genotype, dataset="digits", preset="tiny", out=tmp_path / "r",
                       overrides=overrides, progress=False)
    interrupt_after.restore()
    assert not (tmp_path / "r" / "result.json").exists()
    resumed = nasforge.train(digits_search.genotype, dataset="digits", preset="tiny", out=tmp_path / "r",
                             overrides=overrides, resume=True, progress=False)
    assert resumed["test_acc"] == ref["test_acc"] and resumed["test_loss"] == ref["test_loss"]


def test_cifar10_subset_search_and_train(data_root, tmp_path):
    res = nasforge.search("darts", dataset="cifar10", preset="tiny", out=tmp_path / "s", data_dir=str(data_root),
                          overrides=["search.epochs=1", "search.layers=3", "search.channels=4", "data.n_train=256",
                                     "data.batch_size=32", "data.download=false"], progress=False)
    DartsSpace().validate(res.genotype)
    out = nasforge.train(res.genotype, dataset="cifar10", preset="tiny", out=tmp_path / "t", data_dir=str(data_root),
                         overrides=["train.epochs=1", "train.layers=3", "train.channels=4", "data.n_train=256",
                                    "data.n_test=256", "data.cutout=16", "data.download=false"], progress=False)
    assert 0 <= out["test_acc"] <= 100
    assert out["macs"] > 0 and out["params"] > 0


def test_npz_dataset_from_mnist_sample(data_root, tmp_path):
    mnist = data_root / "mnist" / "mnist_10k.npz"
    if not mnist.is_file():
        pytest.skip("MNIST sample missing")
    d = np.load(mnist)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=d["x"][:300], y_train=d["y"][:300], x_test=d["x"][9000:9100], y_test=d["y"][9000:9100])
    res = nasforge.search("darts", dataset=f"npz:{path}", preset="tiny", out=tmp_path / "m", progress=False,
                          overrides=["search.epochs=1", "search.layers=3", "search.channels=4"])
    DartsSpace().validate(res.genotype)


def test_describe_published_numbers():
    assert nasforge.describe("DARTS_V2")["params"] == 3_349_342
    assert nasforge.describe("PDARTS")["params"] == 3_433_798
    assert nasforge.describe("DARTS_V1")["params"] == 3_169_414
    assert nasforge.describe("DARTS_V2", network="imagenet")["params"] == 4_718_752


@pytest.mark.skipif(not os.environ.get("NASFORGE_TEST_CUDA"), reason="set NASFORGE_TEST_CUDA=1 on a GPU machine")
def test_cuda_search(tmp_path):
    res = nasforge.search("darts", dataset="digits", preset="tiny", out=tmp_path / "g", device="cuda",
                          overrides=FAST, progress=False)
    DartsSpace().validate(res.genotype)


def test_darts_searches_nas_bench_201(tmp_path):
    from nasforge.spaces.nb201 import NB201Space

    res = nasforge.search("darts", dataset="digits", preset="nb201-tiny", out=tmp_path / "nb", progress=False,
                          overrides=["search.epochs=1", "data.n_train=256"])
    NB201Space().validate(res.genotype)
    assert res.genotype.space == "nb201"
    assert load_genotype(tmp_path / "nb" / "genotype.json") == res.genotype
