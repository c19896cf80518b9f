"""What a trusted tool promises beyond correct results: loading never runs code, one writer per run folder,
signals and full disks never leave a half-written run, files other tools read (issue #10)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import nasforge
from nasforge.errors import DiskFullError, GenotypeError, RunLockedError
from nasforge.genotypes import load_genotype, published, to_darts_text
from nasforge.run import RunDir

ARGS = ["--set", "search.epochs=3", "--set", "search.layers=3", "--set", "search.channels=4",
        "--set", "data.n_train=384", "--seed", "5", "--no-progress"]
TIMING = {"epoch_s", "wall_s"}


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasforge", "-q", *args], capture_output=True, text=True,
                          timeout=timeout)


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted CLI search with ARGS: what every interrupted-and-resumed run must end as."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    res = _cli("search", "--out", str(ref), *ARGS)
    assert res.returncode == 0, res.stderr
    return ref


# -- 1. checkpoints never execute code ------------------------------------------------------------------------
class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if the loader executes globals."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"format": "nasforge.checkpoint/1", "kind": "search", "payload": _Payload(marker)},
               out / "checkpoints" / "last.pt")
    res = _cli("search", "--out", str(out), "--resume", *ARGS)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "refusing to load" in res.stderr and "could run code" in res.stderr
    assert not marker.exists()
    # the unsafe loader would have run it: the payload is real
    torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert marker.exists()


def test_checkpoints_hold_only_safe_types(reference_run):
    state = torch.load(reference_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["kind"] == "search"


# -- 2. one writer per run folder -----------------------------------------------------------------------------
def test_a_second_writer_stops_at_once_naming_the_first(tmp_path):
    out = tmp_path / "run"
    holder = RunDir(out, "search")  # this process holds the folder, as a running search would
    try:
        start = time.perf_counter()
        res = _cli("search", "--out", str(out), *ARGS)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert f"pid {os.getpid()} on {socket.gethostname()}" in res.stderr and "in use" in res.stderr
        assert time.perf_counter() - start < 60  # no waiting for the first to finish
        with pytest.raises(RunLockedError, match=str(os.getpid())):
            RunDir(out, "search")  # also within one process: the lock is per open file
    finally:
        holder.close()
    assert not (out / "run.lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / "run.lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()}\n")
    run = RunDir(out, "search")
    try:
        assert (out / "run.lock").read_text().split()[0] == str(os.getpid())
    finally:
        run.close()


# -- 3. interruption and a full disk ----------------------------------------------------------------------------
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_run_cleanly_and_resume_reaches_the_same_result(reference_run, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "-q", "search", "--out", str(out), *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the search finished before the signal arrived (a very fast machine)")
    assert proc.returncode == code, err
    assert err.count("\n") == 1 and "--resume" in err and str(out) in err, err
    assert not list(out.rglob("*.tmp")) and not (out / "run.lock").exists()
    torch.load(out / "checkpoints" / "last.pt", weights_only=True)  # whole
    [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]  # every row whole
    done = _cli("search", "--out", str(out), "--resume", *ARGS)
    assert done.returncode == 0, done.stderr
    assert load_genotype(out) == load_genotype(reference_run)
    assert _rows(out) == _rows(reference_run)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 8 MiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Take every free byte of the file system holding ``folder``."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 2**16)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_ends_in_one_line_and_resume_with_space_finishes(reference_run, small_tmpfs, monkeypatch):
    out = small_tmpfs / "run"
    original = RunDir.save_checkpoint
    calls = {"n": 0}

    def fill_after_first(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # epoch 1 is safely on disk; now the disk is full
            _fill(small_tmpfs)

    monkeypatch.setattr(RunDir, "save_checkpoint", fill_after_first)
    overrides = [a for a in ARGS[1::2] if "=" in a]
    with pytest.raises(DiskFullError, match="no space left") as err:
        nasforge.search("darts", dataset="digits", preset="tiny", out=out, seed=5, overrides=overrides,
                        progress=False)
    assert "\n" not in str(err.value) and "--resume" in str(err.value)
    monkeypatch.undo()
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1  # the last good checkpoint is intact
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] in ([1], [1, 2])  # whole rows only
    assert not list(out.rglob("*.tmp"))
    (small_tmpfs / "filler").unlink()
    nasforge.search("darts", dataset="digits", preset="tiny", out=out, seed=5, overrides=overrides,
                    progress=False, resume=True)
    assert load_genotype(out) == load_genotype(reference_run)
    assert _rows(out) == _rows(reference_run)


def test_a_full_disk_at_the_start_is_refused_before_the_run_folder_is_made(small_tmpfs):
    _fill(small_tmpfs)
    res = _cli("search", "--out", str(small_tmpfs / "run"), *ARGS)
    assert res.returncode == 2 and "no space left" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (small_tmpfs / "run").exists()


# -- 4. files other tools read -------------------------------------------------------------------------------
def test_metrics_rows_hold_the_genotype_as_a_json_object(reference_run):
    for row in (json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()):
        assert isinstance(row["genotype"], dict) and row["genotype"]["cells"]
        assert nasforge.Genotype.from_dict(row["genotype"]).hash() == row["genotype_hash"]


def _classic(name: str) -> dict:
    g = published(name)
    ns: dict = {}
    exec(to_darts_text(g), {"Genotype": lambda **kw: ns.update(kw)})  # the classic fields, as users have them
    return {k: [list(p) for p in v] if k in ("normal", "reduce") else list(v) for k, v in ns.items()}


@pytest.mark.parametrize("name", ["DARTS_V2", "PDARTS"])
def test_genotype_files_accept_the_classic_fields_as_json(tmp_path, name):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(_classic(name)))
    assert load_genotype(path) == published(name)
    no_concat = {k: v for k, v in _classic(name).items() if not k.endswith("concat")}
    assert load_genotype(json.dumps(no_concat)) == published(name)  # concat defaults to every node
    res = _cli("show", str(path), "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["hash"] == published(name).hash()


def test_an_unknown_op_in_classic_json_is_named(tmp_path):
    data = _classic("DARTS_V2")
    data["normal"][3][0] = "sep_conv_9x9"
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match="unknown op 'sep_conv_9x9'"):
        load_genotype(path)
    res = _cli("show", str(path))
    assert res.returncode == 2 and "sep_conv_9x9" in res.stderr and res.stderr.count("\n") == 1
    with pytest.raises(GenotypeError, match="unknown field"):
        load_genotype(json.dumps({**_classic("DARTS_V2"), "extra": 1}))


def test_interrupt_before_the_first_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    """A fresh run stopped before anything resumable exists leaves no folder behind."""
    from nasforge.interrupts import Interrupted
    import nasforge.api as api

    def boom(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler raises here
        raise AssertionError("SIGINT was not turned into Interrupted")

    monkeypatch.setattr(api, "run_search", boom)
    with pytest.raises(Interrupted, match="before the first checkpoint"):
        nasforge.search("darts", preset="tiny", out=tmp_path / "run", overrides=["search.epochs=1"], progress=False)
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
