"""Every input validated before the disk is touched; every option has a declared range (issue #16)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge.config import DataConfig, LoopConfig, TrainConfig, build_config, describe_fields, field_range
from nasforge.errors import ConfigError
from nasforge.strategies import STRATEGIES


def _cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasforge", "-q", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasforge: error: "), res.stderr
    return lines[0]


# -- the table of issue #16, row by row ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "0"])
def test_search_epochs_below_one_is_refused(tmp_path, value):
    line = _one_error_line(_cli("search", "--set", f"search.epochs={value}", "--out", str(tmp_path / "r")))
    assert f"search.epochs={value}" in line and ">= 1" in line
    assert not (tmp_path / "r").exists()


def test_train_epochs_negative_is_refused(tmp_path):
    line = _one_error_line(_cli("train", "--genotype", "DARTS_V2", "--set", "train.epochs=-5",
                                "--out", str(tmp_path / "r")))
    assert "train.epochs=-5" in line and ">= 1" in line
    assert not (tmp_path / "r").exists()


def test_negative_learning_rate_is_refused_as_a_config_error(tmp_path):
    line = _one_error_line(_cli("search", "--set", "search.w_lr=-0.1", "--out", str(tmp_path / "r")))
    assert "search.w_lr=-0.1" in line and "> 0" in line and "internal error" not in line


@pytest.mark.parametrize("out, reason", [("/proc/x", "cannot create run folder /proc/x"),
                                         ("{file}/x", "is a file, not a directory"),
                                         ("{file}", "is a file, not a directory")])
def test_an_output_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path, out, reason):
    afile = tmp_path / "afile"
    afile.write_text("x")
    path = out.format(file=afile)
    line = _one_error_line(_cli("search", "--out", path))
    assert path in line and reason.format(file=afile) in line and "internal error" not in line
    assert afile.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: no permission error to provoke")
def test_an_unwritable_output_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "permission denied" in _one_error_line(_cli("search", "--out", str(locked / "r")))


def test_a_read_only_file_system_is_refused(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        assert "read-only file system" in _one_error_line(_cli("search", "--out", str(mount / "r")))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_refused_batch_size_leaves_no_folder(tmp_path):
    line = _one_error_line(_cli("search", "--set", "data.batch_size=0", "--out", "r", cwd=tmp_path))
    assert "data.batch_size=0" in line and ">= 1" in line
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []


def test_a_refused_run_never_touches_an_existing_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _one_error_line(_cli("search", "--set", "search.epochs=0", "--out", str(out)))
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_a_run_failing_before_its_first_checkpoint_removes_what_it_wrote(tmp_path):
    """Not caught by a range: the loss diverges in the first epoch, after the run folder was made."""
    line = _one_error_line(_cli("search", "--set", "search.w_lr=1e30", "--set", "search.epochs=2",
                                "--out", str(tmp_path / "r")))
    assert "the loss became nan" in line
    assert not (tmp_path / "r").exists()


def test_top_k_larger_than_the_pool_is_refused(tmp_path):
    line = _one_error_line(_cli("search", "--method", "knas", "--set", "search.n_samples=5", "--set",
                                "search.top_k=9", "--out", str(tmp_path / "r")))
    assert "search.top_k=9" in line and "<= n_samples (5)" in line
    assert not (tmp_path / "r").exists()


def test_a_tiny_training_split_is_warned_about(tmp_path):
    res = _cli("search", "--set", "data.n_train=3", "--set", "search.epochs=1", "--set", "search.layers=2",
               "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("nasforge: warning:")]
    assert any("fewer than one batch" in w for w in warnings) and any("3 training images for 10" in w
                                                                      for w in warnings), res.stderr


@pytest.mark.parametrize("method, overrides, needle", [
    ("pdarts", ["search.epochs_per_stage=2", "search.warmup_epochs=2"], "no stage ever updates"),
    ("gold-nas", ["search.epochs=1"], "pruning round"),
])
def test_method_settings_that_leave_no_room_are_warned_about(method, overrides, needle):
    import torch

    from nasforge.api import resolve_config
    from nasforge.strategies import SearchContext

    cls = STRATEGIES.get(method)
    cfg = resolve_config(method, "tiny", cls.Config, overrides)
    ctx = SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=1, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0))
    assert any(needle in w for w in cls(cfg.search, ctx).config_warnings())
    assert not cls(resolve_config(method, "tiny", cls.Config).search, ctx).config_warnings()


# -- ranges declared for every option --------------------------------------------------------------------------
def _numeric_fields(cls: type) -> list[str]:
    import typing

    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)]


@pytest.mark.parametrize("cls", [DataConfig, LoopConfig, TrainConfig, *(STRATEGIES.get(m).Config
                                                                         for m in STRATEGIES.names())],
                         ids=lambda c: c.__name__)
def test_every_numeric_option_declares_its_range(cls):
    missing = [n for n in _numeric_fields(cls) if field_range(cls, n) is None]
    assert not missing, f"{cls.__name__} fields without a declared range: {missing}"


@pytest.mark.parametrize("method", STRATEGIES.names())
def test_every_default_is_inside_its_range(method):
    build_config({"method": method}, STRATEGIES.get(method).Config)  # raises if a default is out of range


def test_the_presets_command_shows_each_field_with_its_range():
    res = _cli("presets", "darts")
    assert res.returncode == 0
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line.startswith(("search.", "data."))}
    assert "> 0" in rows["search.w_lr"] and ">= 1" in rows["search.epochs"] and "in (0, 1)" in \
        rows["data.train_portion"] and "one of: first, second" in rows["search.order"]
    keys = {k for k, *_ in describe_fields(STRATEGIES.get("darts").Config, "search.")}
    assert keys <= set(rows)


def test_a_range_error_names_field_value_range_and_a_sensible_value():
    with pytest.raises(ConfigError, match=r"search\.w_lr=-0\.1 is out of range: must be > 0 \(e\.g\. 0\.025\)"):
        build_config({"search": {"w_lr": -0.1}}, STRATEGIES.get("darts").Config)
    with pytest.raises(ConfigError, match=r"search\.stage_layers item 0 is out of range"):
        build_config({"method": "pdarts", "search": {"stage_layers": [0, 3, 4]}}, STRATEGIES.get("pdarts").Config)
