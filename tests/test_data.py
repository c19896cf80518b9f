"""Tests of nasforge.data: loaders (real CIFAR-10 and MNIST from the shared data folder, embedded digits, npz),
md5/corruption/download handling, splits, augmentation and resumable batch streams. No network access."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from nasforge.data import (CIFAR_MD5, CIFAR_URLS, DATASET_NAMES, BatchStream, ImageDataset, apply_cutout,
                           augment_batch, channel_stats, load_dataset, normalize, resolve_data_root, search_split)
from nasforge.data.cifar import CIFAR_SPECS
from nasforge.errors import CheckpointError, ConfigError, DataError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point every download URL at a file that does not exist, so no test can reach the network."""
    for key in list(CIFAR_URLS):
        monkeypatch.setitem(CIFAR_URLS, key, (tmp_path / "no-network" / f"{key}.tar.gz").as_uri())


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---------------------------------------------------------------------------------------------- data root


def test_resolve_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NASFORGE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("NASFORGE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root(None) == tmp_path / "home" / ".cache" / "nasforge" / "data"
    assert not (tmp_path / "home").exists()  # resolving creates nothing


# ---------------------------------------------------------------------------------------------- real CIFAR-10


@pytest.fixture(scope="module")
def cifar10(data_root: Path) -> ImageDataset:
    return load_dataset("cifar10", data_dir=data_root, download=False)


def test_cifar10_real(cifar10: ImageDataset) -> None:
    d = cifar10
    assert d.name == "cifar10"
    assert d.x_train.shape == (50000, 3, 32, 32) and d.x_test.shape == (10000, 3, 32, 32)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert d.y_train.shape == (50000,) and d.y_test.shape == (10000,)
    assert d.classes == CIFAR10_CLASSES and d.num_classes == 10
    assert int(d.y_train.min()) == 0 and int(d.y_train.max()) == 9
    assert torch.bincount(d.y_train).tolist() == [5000] * 10
    assert torch.bincount(d.y_test).tolist() == [1000] * 10
    assert (d.in_channels, d.image_size, d.pad, d.flip) == (3, 32, 4, True)
    assert d.mean == (0.4914, 0.4822, 0.4465) and d.std == (0.2470, 0.2435, 0.2616)


def test_cifar10_official_stats_match_pixels(cifar10: ImageDataset) -> None:
    # Checks the channel order of the decoding too: the published stats are per R, G, B.
    mean, std = channel_stats(cifar10.x_train)
    np.testing.assert_allclose(mean, cifar10.mean, atol=1e-4)
    np.testing.assert_allclose(std, cifar10.std, atol=1e-4)


def _linked_cifar10(data_root: Path, tmp_path: Path) -> Path:
    """A data root whose CIFAR-10 folder symlinks the real files (so one of them can be replaced)."""
    root = tmp_path / "root"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in (data_root / "cifar-10-batches-py").iterdir():
        (folder / f.name).symlink_to(f)
    return root


def test_cifar10_md5_mismatch(data_root: Path, tmp_path: Path) -> None:
    root = _linked_cifar10(data_root, tmp_path)
    meta = root / "cifar-10-batches-py" / "batches.meta"
    data = bytearray(meta.read_bytes())
    data[-2] ^= 0xFF
    meta.unlink()
    meta.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"batches\.meta has md5 .*delete it"):
        load_dataset("cifar10", data_dir=root, download=False)


def test_cifar10_truncated_batch_fails_md5(data_root: Path, tmp_path: Path) -> None:
    root = _linked_cifar10(data_root, tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    head = batch.read_bytes()[:4096]
    batch.unlink()
    batch.write_bytes(head)
    with pytest.raises(DataError, match=r"data_batch_2 has md5"):
        load_dataset("cifar10", data_dir=root, download=False)


def test_cifar10_truncated_pickle(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With the md5 table accepting the truncated file, the unpickling itself must fail cleanly.
    root = _linked_cifar10(data_root, tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    head = batch.read_bytes()[:100_000]
    batch.unlink()
    batch.write_bytes(head)
    monkeypatch.setitem(CIFAR_MD5, "cifar10", {**CIFAR_MD5["cifar10"], "data_batch_1": _md5(head)})
    with pytest.raises(DataError, match=r"data_batch_1 is not a readable pickle"):
        load_dataset("cifar10", data_dir=root, download=False)


def test_cifar10_pickle_cannot_run_code(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _linked_cifar10(data_root, tmp_path)
    meta = root / "cifar-10-batches-py" / "batches.meta"
    evil = pickle.dumps(os.system)  # any global other than numpy's array machinery is refused
    meta.unlink()
    meta.write_bytes(evil)
    monkeypatch.setitem(CIFAR_MD5, "cifar10", {**CIFAR_MD5["cifar10"], "batches.meta": _md5(evil)})
    with pytest.raises(DataError, match=r"batches\.meta is not a readable pickle"):
        load_dataset("cifar10", data_dir=root, download=False)


def test_cifar10_missing_file_without_download(data_root: Path, tmp_path: Path) -> None:
    root = _linked_cifar10(data_root, tmp_path)
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match=r"lacks test_batch"):
        load_dataset("cifar10", data_dir=root, download=False)


# ---------------------------------------------------------------------------------------------- archive/download


def _fake_cifar_archive(tmp_path: Path, key: str, monkeypatch: pytest.MonkeyPatch, n: int = 10) -> Path:
    """A tiny archive with the official layout and pickle format; the md5 table is patched to accept it."""
    spec = CIFAR_SPECS[key]
    k = 10 if key == "cifar10" else 100
    rng = np.random.default_rng(0)
    files = {spec.meta_file: pickle.dumps({spec.names_key: [f"class{i}".encode() for i in range(k)]}, protocol=2)}
    for name in (*spec.train_files, *spec.test_files):
        files[name] = pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                    spec.label_key: [int(v) for v in rng.integers(0, k, n)],
                                    b"batch_label": name.encode()}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        extra = {"readme.html": b"<html/>", "../escape": b"x"}  # must not be written (the second is outside)
        for name, data in {**files, **extra}.items():
            info = tarfile.TarInfo(f"{spec.folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    src = tmp_path / "server" / spec.archive
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(buf.getvalue())
    monkeypatch.setitem(CIFAR_MD5, key, {spec.archive: _md5(buf.getvalue()),
                                         **{name: _md5(data) for name, data in files.items()}})
    monkeypatch.setitem(CIFAR_URLS, key, src.as_uri())
    return src


def test_cifar10_download_extract_and_repair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar_archive(tmp_path, "cifar10", monkeypatch)
    root = tmp_path / "root"
    d = load_dataset("cifar10", data_dir=root, progress=True)
    assert d.x_train.shape == (50, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    assert d.classes[0] == "class0" and d.num_classes == 10
    # downloaded atomically and extracted atomically: only the final names, no temp files, no escaped member
    assert _leftovers(root) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == sorted(CIFAR_SPECS["cifar10"].files)
    assert not (tmp_path / "escape").exists()
    # a deleted file is re-extracted from the archive, without any download
    monkeypatch.setitem(CIFAR_URLS, "cifar10", (tmp_path / "gone.tar.gz").as_uri())
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    again = load_dataset("cifar10", data_dir=root, download=False)
    assert torch.equal(again.x_train, d.x_train)
    # with the folder in place the archive is not needed
    (root / "cifar-10-python.tar.gz").unlink()
    assert torch.equal(load_dataset("cifar10", data_dir=root, download=False).y_test, d.y_test)


def test_cifar100_from_archive_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fake_cifar_archive(tmp_path, "cifar100", monkeypatch, n=20)
    root = tmp_path / "root"
    root.mkdir()
    (root / src.name).write_bytes(src.read_bytes())
    d = load_dataset("CIFAR100", data_dir=root, download=False)
    assert (len(d.y_train), len(d.y_test), d.num_classes, d.in_channels) == (20, 20, 100, 3)
    assert d.mean == (0.5071, 0.4865, 0.4409) and d.std == (0.2673, 0.2564, 0.2762)
    assert _leftovers(root) == ["cifar-100-python", "cifar-100-python.tar.gz"]


def test_corrupt_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fake_cifar_archive(tmp_path, "cifar10", monkeypatch)
    root = tmp_path / "root"
    root.mkdir()
    (root / src.name).write_bytes(src.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz has md5 .*delete it"):
        load_dataset("cifar10", data_dir=root, download=False)
    assert _leftovers(root) == ["cifar-10-python.tar.gz"]


def test_download_failure_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"could not download CIFAR-10 from file:.*place cifar-10-python\.tar\.gz "
                                        r"or the cifar-10-batches-py folder in " + re.escape(str(root))):
        load_dataset("cifar10", data_dir=root, progress=False)
    assert _leftovers(root) == []


def test_download_md5_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar_archive(tmp_path, "cifar10", monkeypatch)
    monkeypatch.setitem(CIFAR_MD5["cifar10"], "cifar-10-python.tar.gz", "0" * 32)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"md5"):
        load_dataset("cifar10", data_dir=root, progress=False)
    assert _leftovers(root) == []


def test_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-100 was not found in .*place cifar-100-python\.tar\.gz"):
        load_dataset("cifar100", data_dir=tmp_path, download=False)


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; choose one of: digits, cifar10"):
        load_dataset("imagenet")
    assert "npz:PATH" in DATASET_NAMES


# ---------------------------------------------------------------------------------------------- digits


def test_digits() -> None:
    d = load_dataset("digits")
    assert (len(d.y_train), len(d.y_test)) == (1437, 360)
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_train.dtype == torch.uint8
    assert (d.num_classes, d.in_channels, d.image_size, d.pad, d.flip) == (10, 1, 8, 1, False)
    assert int(d.x_train.max()) == 255 and int(d.x_train.min()) == 0
    assert set(torch.unique(d.x_train).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    assert sorted(torch.unique(d.y_test).tolist()) == list(range(10))
    mean, std = channel_stats(d.x_train)
    assert d.mean == mean and d.std == std
    assert torch.equal(load_dataset("digits").x_test, d.x_test)  # fixed split


# ---------------------------------------------------------------------------------------------- npz


def _good_arrays(h: int = 12, c: int | None = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    shape = (h, h, c) if c else (h, h)
    return {"x_train": rng.integers(0, 256, (30, *shape), dtype=np.uint8), "y_train": rng.integers(0, 4, 30),
            "x_test": rng.integers(0, 256, (8, *shape), dtype=np.uint8),
            "y_test": rng.integers(0, 4, 8).astype(np.int32)}


def test_npz_good(tmp_path: Path) -> None:
    arrays = _good_arrays()
    np.savez(tmp_path / "rgb.npz", **arrays, classes=np.array(["a", "b", "c", "d", "e"]), flip=True)
    d = load_dataset(f"npz:{tmp_path / 'rgb.npz'}")
    assert d.x_train.shape == (30, 3, 12, 12) and d.y_test.dtype == torch.int64
    assert torch.equal(d.x_train.permute(0, 2, 3, 1), torch.from_numpy(arrays["x_train"]))
    assert d.classes == ["a", "b", "c", "d", "e"] and d.flip is True and d.pad == 1
    np.testing.assert_allclose(d.mean, arrays["x_train"].reshape(-1, 3).mean(0) / 255)
    np.testing.assert_allclose(d.std, arrays["x_train"].reshape(-1, 3).std(0) / 255)

    gray = _good_arrays(h=32, c=None)
    np.savez(tmp_path / "gray.npz", **gray)
    d = load_dataset("npz:gray.npz", data_dir=tmp_path)  # relative path: found in the data root
    assert (d.in_channels, d.image_size, d.pad, d.flip) == (1, 32, 4, False)
    assert d.num_classes == 1 + max(gray["y_train"].max(), gray["y_test"].max())


def _bad_cases() -> dict[str, tuple[dict[str, object], str]]:
    g = _good_arrays()
    return {
        "missing key": ({k: v for k, v in g.items() if k != "y_test"}, r"no array 'y_test'"),
        "float images": ({**g, "x_train": g["x_train"].astype(np.float32)},
                         r"'x_train' has dtype float32; expected uint8"),
        "NCHW images": ({**g, "x_test": np.zeros((8, 3, 12, 12), np.uint8)}, r"'x_test' has shape .*transpose"),
        "1-D images": ({**g, "x_train": np.zeros(30, np.uint8)}, r"'x_train' has shape \(30,\)"),
        "length mismatch": ({**g, "y_train": g["y_train"][:-1]}, r"'y_train' has 29 labels but 'x_train' has 30"),
        "float labels": ({**g, "y_test": g["y_test"].astype(np.float64)},
                         r"'y_test' has dtype float64; expected integer"),
        "negative labels": ({**g, "y_train": g["y_train"] - 5}, r"'y_train' has negative labels"),
        "2-D labels": ({**g, "y_train": np.zeros((30, 2), np.int64)}, r"'y_train' has shape \(30, 2\)"),
        "test size differs": ({**g, "x_test": np.zeros((8, 10, 10, 3), np.uint8)}, r"'x_test' images are 10×10×3"),
        "object array": ({**g, "classes": np.array(["a", 1], dtype=object)},
                         r"'classes' is an array of Python objects"),
        "too few classes": ({**g, "classes": np.array(["a"])}, r"'classes' names 1 classes"),
        "bad flip": ({**g, "flip": np.array([1, 0])}, r"'flip' .*expected a boolean scalar"),
        "empty train": ({**g, "x_train": g["x_train"][:0], "y_train": g["y_train"][:0]},
                        r"'x_train' holds no images"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_npz_bad(tmp_path: Path, case: str) -> None:
    arrays, pattern = _bad_cases()[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=pattern):
        load_dataset(f"npz:{path}")


def test_npz_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"junk\.npz is not a readable \.npz"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"single array"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")
    with pytest.raises(DataError, match=r"needs a file path"):
        load_dataset("npz:")


def test_mnist_sample_as_npz(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "mnist" / "mnist_10k.npz"
    if not src.is_file():
        pytest.skip(f"MNIST sample not available at {src}")
    with np.load(src) as z:
        x, y = z["x"], z["y"]
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x[:8000], y_train=y[:8000], x_test=x[8000:], y_test=y[8000:])
    d = load_dataset(f"npz:{path}")
    assert d.x_train.shape == (8000, 1, 28, 28) and d.x_test.shape == (2000, 1, 28, 28)
    assert (d.num_classes, d.in_channels, d.image_size, d.flip, d.pad) == (10, 1, 28, False, 3)
    assert 0.1 < d.mean[0] < 0.15 and 0.29 < d.std[0] < 0.33  # MNIST: about 0.1307 and 0.3081


# ---------------------------------------------------------------------------------------------- ImageDataset


def _tiny_dataset(n: int = 40, k: int = 4) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    return ImageDataset("tiny", x, torch.arange(n) % k, x[:10].clone(), torch.arange(10) % k,
                        [f"c{i}" for i in range(k)], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pad=1, flip=True)


def test_image_dataset_validation_subset_to() -> None:
    d = _tiny_dataset()
    with pytest.raises(DataError, match=r"x_train must be a uint8"):
        ImageDataset("bad", d.x_train.float(), d.y_train, d.x_test, d.y_test, d.classes, d.mean, d.std, 1, False)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\]"):
        ImageDataset("bad", d.x_train, d.y_train + 1, d.x_test, d.y_test, d.classes, d.mean, d.std, 1, False)
    with pytest.raises(DataError, match=r"has 40 images but y_train has 39"):
        ImageDataset("bad", d.x_train, d.y_train[1:], d.x_test, d.y_test, d.classes, d.mean, d.std, 1, False)
    with pytest.raises(DataError, match=r"one value per channel"):
        ImageDataset("bad", d.x_train, d.y_train, d.x_test, d.y_test, d.classes, (0.5,), (0.2,), 1, False)
    s = d.subset(5, 3)
    assert (len(s.x_train), len(s.y_test)) == (5, 3) and torch.equal(s.x_train, d.x_train[:5])
    assert s.mean == d.mean and s.classes == d.classes
    assert len(d.subset(None, 0).x_test) == 10 and len(d.subset(1000).x_train) == 40
    with pytest.raises(ConfigError):
        d.subset(-1)
    moved = d.to("cpu")
    assert moved.x_train.device.type == "cpu" and torch.equal(moved.y_train, d.y_train)
    assert "tiny" in repr(d) and "train=40" in repr(d)


# ---------------------------------------------------------------------------------------------- search split


def test_search_split() -> None:
    a, b = search_split(101, 0.5, torch.Generator().manual_seed(3))
    assert (len(a), len(b)) == (50, 51) and a.dtype == torch.int64
    assert torch.equal(torch.cat([a, b]).sort().values, torch.arange(101))  # disjoint and covering
    assert not set(a.tolist()) & set(b.tolist())
    a2, _ = search_split(101, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, a2)
    a3, _ = search_split(101, 0.5, torch.Generator().manual_seed(4))
    assert not torch.equal(a, a3)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError):
            search_split(10, bad, torch.Generator())
    with pytest.raises(ConfigError, match=r"both parts"):
        search_split(1, 0.5, torch.Generator())


# ---------------------------------------------------------------------------------------------- augmentation


def _batch(n: int = 16, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_augment_shapes_determinism_identity() -> None:
    x = _batch()
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=True, cutout=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    again = augment_batch(x, torch.Generator().manual_seed(0), pad=2, flip=True, cutout=4)
    assert torch.equal(out, again)
    other = augment_batch(x, torch.Generator().manual_seed(1), pad=2, flip=True, cutout=4)
    assert not torch.equal(out, other)
    assert torch.equal(augment_batch(x, torch.Generator(), pad=0, flip=False, cutout=0), x)
    with pytest.raises(ValueError, match=r"uint8"):
        augment_batch(x.float(), torch.Generator(), 1, False, 0)


def test_pad_crop_is_a_shifted_window() -> None:
    x, pad = _batch(n=32), 2
    out = augment_batch(x, torch.Generator().manual_seed(5), pad=pad, flip=False, cutout=0)
    padded = F.pad(x, (pad,) * 4)
    shifts = set()
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.equal(out[i], padded[i, :, dy:dy + x.shape[2], dx:dx + x.shape[3]])]
        assert found, f"sample {i} is not a crop of the padded image"
        shifts.add(found[0])
    assert len(shifts) > 5  # offsets vary per sample


def test_flip_really_flips() -> None:
    x = _batch(n=64)
    out = augment_batch(x, torch.Generator().manual_seed(2), pad=0, flip=True, cutout=0)
    same = [torch.equal(out[i], x[i]) for i in range(len(x))]
    mirrored = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_cutout_zeroes_a_square() -> None:
    x = torch.full((200, 2, 16, 16), 255, dtype=torch.uint8)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=0, flip=False, cutout=6)
    zero = out == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # the same square in every channel
    sizes = []
    for m in zero[:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert len(rows) and len(cols)
        assert int(m.sum()) == len(rows) * len(cols)  # a filled axis-aligned rectangle
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        assert len(rows) <= 6 and len(cols) <= 6
        sizes.append((len(rows), len(cols)))
    assert (6, 6) in sizes and any(s != (6, 6) for s in sizes)  # full squares inside, clipped at the borders
    xf = normalize(x, (0.5, 0.5), (0.5, 0.5))
    cut = apply_cutout(xf, torch.Generator().manual_seed(0), 6)
    assert torch.equal(cut == 0, zero)  # the same regions, float input


def test_normalize() -> None:
    x = _batch(c=3)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32 and out.shape == x.shape
    ref = (x.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- batch streams


def _stream(d: ImageDataset, indices: torch.Tensor | None, seed: int, bs: int = 8, **kw: object) -> BatchStream:
    opts = {"train": True, "pad": 1, "flip": True, "cutout": 3, "mean": d.mean, "std": d.std, **kw}
    return BatchStream(d.x_train, d.y_train, indices, bs, torch.Generator().manual_seed(seed), **opts)


def test_stream_epochs_cover_the_split() -> None:
    d = _tiny_dataset(n=40)
    d = ImageDataset(d.name, d.x_train, torch.arange(40), d.x_test, d.y_test, [str(i) for i in range(40)],
                     d.mean, d.std, d.pad, d.flip)  # label = sample index, to track samples
    idx = torch.arange(0, 40, 2)  # 20 samples
    s = _stream(d, idx, seed=0, bs=6)
    assert s.batches_per_epoch == 4 and (s.epoch, s.position) == (0, 0)
    epochs = []
    for _ in range(3):
        ys = [s.next_batch()[1] for _ in range(s.batches_per_epoch)]
        assert [len(y) for y in ys] == [6, 6, 6, 2]
        seen = torch.cat(ys)
        assert torch.equal(seen.sort().values, idx)
        epochs.append(seen)
    assert s.epoch == 3 and s.position == 0
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    x, y = s.next_batch()
    assert x.dtype == torch.float32 and x.shape == (6, 3, 8, 8) and y.dtype == torch.int64
    dropping = _stream(d, idx, seed=0, bs=6, drop_last=True)
    assert dropping.batches_per_epoch == 3
    assert [len(dropping.next_batch()[1]) for _ in range(7)] == [6] * 7


def test_eval_stream_in_order_unaugmented() -> None:
    d = _tiny_dataset(n=40)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    s = BatchStream(d.x_train, d.y_train, None, 16, g, train=False, pad=4, flip=True, cutout=8, mean=d.mean,
                    std=d.std)
    batches = list(s.iter_epoch())
    assert [len(y) for _, y in batches] == [16, 16, 8]
    assert torch.equal(torch.cat([x for x, _ in batches]), normalize(d.x_train, d.mean, d.std))
    assert torch.equal(torch.cat([y for _, y in batches]), d.y_train)
    assert torch.equal(s.next_batch()[0], batches[0][0])
    assert torch.equal(g.get_state(), state)  # evaluation never draws random numbers
    with pytest.raises(ConfigError, match=r"iter_epoch"):
        next(_stream(d, None, 0).iter_epoch())


@pytest.mark.parametrize("drop_last", [False, True])
def test_stream_resume_is_bit_exact(drop_last: bool) -> None:
    d = _tiny_dataset(n=40)
    idx, _ = search_split(40, 0.5, torch.Generator().manual_seed(0))
    reference = _stream(d, idx, seed=7, bs=6, drop_last=drop_last)
    expected = [reference.next_batch() for _ in range(20)]  # crosses several epoch boundaries

    first = _stream(d, idx, seed=7, bs=6, drop_last=drop_last)
    for _ in range(9):
        first.next_batch()
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    resumed = _stream(d, idx, seed=999, bs=6, drop_last=drop_last)  # a different seed: the state must win
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.position) == (first.epoch, first.position)
    for want, got in zip(expected[9:], (resumed.next_batch() for _ in range(11))):
        assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])


def test_stream_state_mismatch() -> None:
    d = _tiny_dataset(n=40)
    state = _stream(d, torch.arange(20), seed=0).state_dict()
    with pytest.raises(CheckpointError, match=r"batch_size=8 but this run has batch_size=4"):
        _stream(d, torch.arange(20), seed=0, bs=4).load_state_dict(state)
    with pytest.raises(CheckpointError, match=r"other samples"):
        _stream(d, torch.arange(20, 40), seed=0).load_state_dict(state)
    with pytest.raises(CheckpointError, match=r"lacks"):
        _stream(d, torch.arange(20), seed=0).load_state_dict({"epoch": 0})


def test_stream_rejects_bad_input() -> None:
    d = _tiny_dataset(n=40)
    with pytest.raises(DataError, match=r"indices must lie"):
        _stream(d, torch.tensor([0, 40]), seed=0)
    with pytest.raises(DataError, match=r"at least one sample"):
        _stream(d, torch.tensor([], dtype=torch.int64), seed=0)
    with pytest.raises(ConfigError, match=r"batch size"):
        _stream(d, None, seed=0, bs=0)
    with pytest.raises(ConfigError, match=r"drop_last"):
        _stream(d, torch.arange(4), seed=0, bs=8, drop_last=True)
