"""The command line as a user meets it: help that teaches, one-line errors, exit codes, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def nasforge(*args: str, cwd: Path | None = None, env_data: str | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_data is not None:
        env["NASFORGE_DATA"] = env_data
    return subprocess.run([sys.executable, "-m", "nasforge", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    err = [line for line in lines if line.startswith("nasforge: error: ")]
    assert len(err) == 1 and lines[-1] == err[0], res.stderr  # progress lines may precede; one error ends it
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in err[0], (n, err[0])


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["train", "--help"], ["show", "--help"]])
def test_help_teaches(args):
    res = nasforge(*args)
    assert res.returncode == 0
    assert "usage: nasforge" in res.stdout
    if args != ["--help"]:
        assert "examples:" in res.stdout


def test_presets_listing():
    res = nasforge("presets")
    assert res.returncode == 0 and "darts: paper" in res.stdout and "train:" in res.stdout
    full = nasforge("presets", "darts")
    assert "[tiny]" in full.stdout and "epochs" in full.stdout


def test_show_json_counts_published_cells():
    res = nasforge("show", "DARTS_V2", "--json")
    info = json.loads(res.stdout)
    assert info["params"] == 3_349_342 and isinstance(info["macs"], int) and info["macs"] > 0
    res = nasforge("show", "DARTS_V2", "--dataset", "imagenet", "--json")
    assert json.loads(res.stdout)["params"] == 4_718_752


def test_show_text_and_png(tmp_path):
    png = tmp_path / "c.png"
    res = nasforge("show", "PDARTS", "--png", str(png))
    assert res.returncode == 0
    assert "3,433,798" in res.stdout and "node 2 =" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,needles", [
    (["show", "NOT_A_CELL"], ["NOT_A_CELL", "published name"]),
    (["show", "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2], reduce=[], reduce_concat=[2])"],
     ["even"]),
    (["show", "Genotype(normal=[('magic_op', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
              "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])"], ["unknown op 'magic_op'"]),
    (["show", "Genotype(normal=[('sep_conv_3x3', 5), ('sep_conv_3x3', 1)], normal_concat=[2], "
              "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])"], ["edge 5->2"]),
    (["search", "--set", "search.epoch=3"], ["search.epoch", "did you mean search.epochs"]),
    (["search", "--set", "search.epochs=three"], ["search.epochs", "expected int"]),
    (["search", "--set", "data.batch_size=1.5"], ["data.batch_size"]),
    (["search", "--set", "search.ops=[sep_conv_3x3,warp_conv]"], ["warp_conv"]),
    (["search", "--preset", "huge"], ["no preset 'huge'", "tiny"]),
    (["search", "--method", "enas"], ["unknown search method 'enas'"]),
    (["search", "--dataset", "imagenet22k"], ["imagenet22k"]),
    (["search", "--resume"], ["--resume needs --out"]),
    (["search", "--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["search", "--device", "tpu"],
     ["device"]),
    (["train", "--genotype", "DARTS_V2", "--set", "train.lr_schedule=sawtooth"], ["lr_schedule"]),
])
def test_bad_input_is_one_line(args, needles, tmp_path):
    res = nasforge(*args, "--out", str(tmp_path / "run")) if args[0] in ("search", "train") and \
        "--resume" not in args else nasforge(*args)
    assert_one_line_error(res, *needles)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_resume_without_checkpoint(tmp_path):
    res = nasforge("search", "--out", str(tmp_path / "nothing"), "--resume")
    assert_one_line_error(res, "no checkpoint")


def test_missing_cifar_offline(tmp_path):
    res = nasforge("search", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--set",
                   "data.download=false", "--out", str(tmp_path / "run"))
    assert_one_line_error(res, "cifar-10", str(tmp_path / "empty"))
    assert not (tmp_path / "run").exists()


def test_corrupt_cifar_file(tmp_path, data_root):
    root = tmp_path / "data"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in (data_root / "cifar-10-batches-py").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "test_batch").unlink()
    (folder / "test_batch").write_bytes((data_root / "cifar-10-batches-py" / "test_batch").read_bytes()[:1000])
    res = nasforge("search", "--dataset", "cifar10", "--data-dir", str(root), "--set", "data.download=false",
                   "--out", str(tmp_path / "run"))
    assert_one_line_error(res, "test_batch")


def test_bad_npz(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64))
    res = nasforge("search", "--dataset", f"npz:{path}", "--out", str(tmp_path / "run"))
    assert_one_line_error(res, "x_test")


def test_nan_loss_stops_with_advice(tmp_path):
    res = nasforge("train", "--genotype", "DARTS_V2", "--set", "train.lr=1e12", "--set", "train.grad_clip=0",
                   "--set", "train.epochs=1", "--set", "train.layers=3", "--set", "data.n_train=256",
                   "--out", str(tmp_path / "run"))
    assert_one_line_error(res, "loss became", "learning rate")


def test_debug_shows_traceback():
    res = nasforge("--debug", "show", "NOT_A_CELL")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_default_search_says_what_it_does(tmp_path):
    """`nasforge search` with no options: tiny preset on digits, announced (shortened here with --set)."""
    res = nasforge("search", "--set", "search.epochs=1", "--set", "data.n_train=256", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "preset 'tiny'" in res.stderr and "digits" in res.stderr and "embedded default" in res.stderr
    assert "genotype: Genotype(" in res.stdout
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "genotype.json").is_file()
