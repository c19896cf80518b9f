"""Data-parallel search and training under torchrun (issue 14): real processes, gloo on the CPU.

Every test starts ``python -m torch.distributed.run --nproc-per-node 2`` (what ``torchrun`` is) with one torch
thread per process, so the two ranks share this machine's cores without oversubscribing them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import nasforge

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ddp_worker  # noqa: E402

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
SEARCH = ["search.epochs=3", "data.n_train=400"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, nproc: int = 2, module: bool = False, timeout: float = 300,
              wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    cmd += ["-m", *args] if module else [str(WORKER), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _ranks(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def ddp_darts(tmp_path_factory):
    """A 3-epoch DARTS search on the digits, two ranks, uninterrupted."""
    root = tmp_path_factory.mktemp("ddp-darts")
    res = _torchrun("search", str(root / "ranks"), str(root / "run"), "darts", *SEARCH)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def test_one_step_on_two_ranks_equals_one_process_on_the_whole_batch(tmp_path):
    res = _torchrun("step", str(tmp_path / "ddp.pt"))
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran
    try:
        singles = {case: ddp_worker.one_step(case, shard=False) for case in ddp_worker.STEP_CASES}
    finally:
        torch.set_num_threads(before)  # later tests compare against runs with the default threads
    for case, single in singles.items():
        assert single["grads"].keys() == ddp[case]["grads"].keys()
        for opt in single["grads"]:
            a, b = ddp[case]["grads"][opt], single["grads"][opt]
            assert len(a) == len(b) > 0, (case, opt)
            for ga, gb in zip(a, b):
                torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-6, msg=f"{case} {opt} gradient")
        for k, v in single["state"].items():  # weights after the step and BN running statistics
            torch.testing.assert_close(ddp[case]["state"][k], v, rtol=1e-4, atol=1e-6, msg=f"{case} {k}")


def test_darts_ranks_hold_identical_architecture_state_after_every_epoch(ddp_darts):
    r0, r1 = _ranks(ddp_darts / "ranks")
    assert len(r0["arch_history"]) == 3
    assert r0["arch_history"] == r1["arch_history"]  # bit-identical, every epoch
    assert r0["genotype"] == r1["genotype"] and r0["losses"] == r1["losses"]


def test_gold_nas_ranks_prune_alike(tmp_path):
    res = _torchrun("search", str(tmp_path / "ranks"), str(tmp_path / "run"), "gold-nas",
                    "search.epochs=3", "data.n_train=300", "search.xi_max=0.6")
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = _ranks(tmp_path / "ranks")
    assert r0["arch_history"] == r1["arch_history"] and r0["genotype"] == r1["genotype"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(row["pruned"] > 0 for row in rows)  # decisions were taken, and taken alike


@pytest.mark.parametrize("method, settings", [
    ("pdarts", ["data.n_train=200"]),  # three stages: new supernets and op masks mid-run
    ("entrannas", ["data.n_train=200", "search.epochs=2"]),  # Engine- and Transit-cells, derived every forward
])
def test_every_supernet_method_keeps_its_ranks_identical(method, settings, tmp_path):
    res = _torchrun("search", str(tmp_path / "ranks"), str(tmp_path / "run"), method, *settings)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = _ranks(tmp_path / "ranks")
    assert r0 == r1 and r0["arch_history"]


def test_nao_v2_ranks_score_generate_and_rerank_alike(tmp_path):
    """NAO-V2's supernets train data-parallel; scores, the controller's new pools and the finalists' accuracies
    (each rank trains one of the two) reach every rank alike."""
    cache = tmp_path / "cache"
    res = _torchrun("search", str(tmp_path / "ranks"), str(tmp_path / "run"), "nao-v2", "search.controller.epochs=10",
                    "search.top_k=2", "search.rerank_epochs=1", f"search.cache_dir={cache}")
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = _ranks(tmp_path / "ranks")
    assert r0 == r1
    assert [row["phase"] for row in r0["rows"]] == ["search"] * 4 + ["rerank"]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert len(result["rerank_acc"]) == 2 and result["chosen"] in result["finalists"] and not result["rerank_errors"]
    assert [r["iteration"] for r in result["iterations"]] == [1, 2]
    assert len((cache / "scores-v1.jsonl").read_text().splitlines()) == 2  # each finalist trained once, by one rank


def test_only_rank_0_writes(ddp_darts, tmp_path):
    run = ddp_darts / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "genotype.json", "report.md",
                                               "checkpoints", "run.log"}
    assert not (run / "run.lock").exists() and not list(run.rglob("*.tmp"))
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3  # one writer: no duplicated rows
    assert set(os.listdir(ddp_darts)) == {"run", "ranks"}


def test_a_killed_ddp_search_resumes_to_the_uninterrupted_result(ddp_darts, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun("search", str(tmp_path / "ranks"), str(run), "darts", *SEARCH, wait=False)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # torchrun and both ranks, as a scheduler's kill does
    proc.communicate(timeout=120)
    if (tmp_path / "ranks" / "rank0.json").exists():
        pytest.skip("the search finished before the signal arrived (a very fast machine)")
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert 1 <= len(rows) < 3
    alone = tmp_path / "alone"
    shutil.copytree(run, alone)
    res = _torchrun("search", str(tmp_path / "ranks"), str(run), "darts", *SEARCH, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _ranks(tmp_path / "ranks") == _ranks(ddp_darts / "ranks")  # same world size: the same run, bit for bit
    # another world size: one process continues the two-process checkpoint (same state, other float order)
    done = nasforge.search(method="darts", preset="tiny", out=alone, resume=True, overrides=SEARCH, progress=False,
                           threads=1)
    assert len(done.history) == 3 and len(done.arch_history) == 3
    reference = _ranks(ddp_darts / "ranks")[0]["arch_history"][-1]
    for key, weights in done.arch_history[-1].items():
        torch.testing.assert_close(torch.tensor(weights), torch.tensor(reference[key]), rtol=0, atol=0.02)


def test_a_ddp_training_writes_one_result(tmp_path):
    out = tmp_path / "train"
    res = _torchrun("nasforge", "-q", "train", "--genotype", "DARTS_V2", "--out", str(out), "--set",
                    "train.epochs=1", "--set", "data.n_train=256", "--set", "data.n_test=128", "--no-progress",
                    module=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("test accuracy") == 1  # rank 0 speaks for the job
    result = json.loads((out / "result.json").read_text())
    assert 0 <= result["test_acc"] <= 100
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_methods_without_one_supernet_refuse_torchrun_in_one_line(tmp_path):
    res = _torchrun("nasforge", "search", "--method", "knas", "--out", str(tmp_path / "k"), module=True,
                    timeout=120)
    assert res.returncode != 0
    assert "nasforge: error: knas does not train one supernet, so torchrun cannot split" in res.stderr
    assert "nasforge/" not in res.stderr  # no traceback of ours (torchrun adds its own summary of the exit)
