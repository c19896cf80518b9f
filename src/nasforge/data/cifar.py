"""CIFAR-10 and CIFAR-100 from the official python release, with md5 verification and an offline-friendly
download.

Layout under the data root (the official one, so a folder users already have is found as is)::

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}
    <root>/cifar-10-python.tar.gz, <root>/cifar-100-python.tar.gz   (optional once extracted)

Order of preference: the extracted folder, else the archive (extracted atomically next to it), else a download
of the archive (if allowed). Every file is checked against the md5 published with the dataset each time it is
loaded: hashing the 180 MB of CIFAR-10 takes about 0.2 s and happens on bytes that must be read anyway, so no
verification cache is kept (the shared data folder may be read-only). Files are unpickled only after their md5
matched, and with an unpickler that accepts nothing but numpy arrays.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataError
from .dataset import ImageDataset

__all__ = ["CIFAR_URLS", "CIFAR_MD5", "load_cifar", "CifarSpec", "CIFAR_SPECS"]

#: Official archive URLs; a module-level table so tests (and mirrors) can point them elsewhere.
CIFAR_URLS: dict[str, str] = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}

#: Official md5 of the archive and of every extracted file, keyed by dataset then file name.
CIFAR_MD5: dict[str, dict[str, str]] = {
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    },
}


@dataclass(frozen=True)
class CifarSpec:
    """What differs between CIFAR-10 and CIFAR-100: file names, pickle keys and normalisation constants."""

    key: str
    title: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the extracted folder, the small meta file first so a bad one fails fast."""
        return (self.meta_file, *self.train_files, *self.test_files)


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        key="cifar10", title="CIFAR-10", folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        meta_file="batches.meta", label_key=b"labels", names_key=b"label_names",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": CifarSpec(
        key="cifar100", title="CIFAR-100", folder="cifar-100-python", archive="cifar-100-python.tar.gz",
        train_files=("train",), test_files=("test",), meta_file="meta", label_key=b"fine_labels",
        names_key=b"fine_label_names", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}

_CHUNK = 1 << 20


def load_cifar(key: str, root: Path, download: bool = True, progress: bool = True) -> ImageDataset:
    """Load CIFAR-10 (``key="cifar10"``) or CIFAR-100 (``"cifar100"``) from ``root``.

    Args:
        key: ``"cifar10"`` or ``"cifar100"``.
        root: the data root (see :func:`~nasforge.data.resolve_data_root`).
        download: fetch the official archive when neither the folder nor the archive is in ``root``.
        progress: show a progress bar while downloading.

    Returns:
        The dataset: uint8 3×32×32 images, official mean/std, pad 4, flip True.

    Raises:
        DataError: missing data (and no download), a failed download, an md5 mismatch, a corrupt archive or a
            truncated/corrupt pickle; the message names the file and what to do.
    """
    spec = CIFAR_SPECS[key]
    root = Path(root)
    folder = root / spec.folder
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if missing:
        archive = root / spec.archive
        verified = False
        if not archive.is_file():
            if not download:
                what = (f"{folder} lacks {missing[0]}" if folder.is_dir() else f"{spec.title} was not found in {root}")
                raise DataError(f"{what} and downloads are off: place {spec.archive} or the {spec.folder} folder "
                                f"in {root} (or set --data-dir / NASFORGE_DATA), or allow the download")
            _download(spec, root, progress)
            verified = True
        _extract(spec, archive, root, missing, verified=verified)
    return _load_folder(spec, folder)


def _fix_hint(spec: CifarSpec, path: Path) -> str:
    return (f"delete it and run again to re-extract it from {spec.archive} (downloaded if absent), or place the "
            f"official file there")


def _reason(e: BaseException) -> str:
    """The useful part of a download error (``URLError`` wraps the cause in ``reason``)."""
    reason = getattr(e, "reason", None)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if reason:
        return str(reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _download(spec: CifarSpec, root: Path, progress: bool) -> None:
    """Download the archive into a temp file in ``root``, check its md5, then rename it into place."""
    url = CIFAR_URLS[spec.key]
    dest = root / spec.archive
    where = f"place {spec.archive} or the {spec.folder} folder in {root} (or set --data-dir / NASFORGE_DATA)"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{spec.archive}.", suffix=".part")
    except OSError as e:
        raise DataError(f"cannot write to the data folder {root} ({e.strerror or e}); {where}") from None
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=spec.archive,
                          disable=not progress, leave=False) as bar:
                    while block := resp.read(_CHUNK):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeouts, HTTP errors, bad URLs
            raise DataError(f"could not download {spec.title} from {url} ({_reason(e)}); {where}") from None
        expected = CIFAR_MD5[spec.key][spec.archive]
        if h.hexdigest() != expected:
            raise DataError(f"the {spec.title} archive downloaded from {url} has md5 {h.hexdigest()}, expected "
                            f"{expected} (a damaged or changed download); try again or {where}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _extract(spec: CifarSpec, archive: Path, root: Path, names: list[str], verified: bool = False) -> None:
    """Extract ``names`` from ``archive`` into a temp folder in ``root``, then rename them into place.

    The whole folder is renamed when it does not exist yet, else each missing file is (so deleting one bad
    file and running again repairs it). Either way nothing half-written ever carries a final name. Only the
    expected regular files ``<folder>/<name>`` are written (no links, no other paths), which also rules out
    path-traversal tricks from a tampered archive.
    """
    if not verified:
        expected = CIFAR_MD5[spec.key][spec.archive]
        try:
            got = _md5_file(archive)
        except OSError as e:
            raise DataError(f"cannot read {archive} ({e.strerror or e}); check its permissions") from None
        if got != expected:
            raise DataError(f"{archive} has md5 {got}, but the official {spec.title} archive has {expected}; "
                            f"delete it and run again to re-download, or place the official archive there")
    try:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.folder}.", suffix=".extract"))
    except OSError as e:
        raise DataError(f"cannot extract {archive}: {root} is not writable ({e.strerror or e}); extract it "
                        f"yourself (tar xzf) or set --data-dir / NASFORGE_DATA to a writable folder") from None
    try:
        wanted = set(names)
        (tmp / spec.folder).mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    parts = PurePosixPath(member.name).parts
                    if member.isfile() and len(parts) == 2 and parts[0] == spec.folder and parts[1] in wanted:
                        src = tar.extractfile(member)
                        assert src is not None  # a regular file always has a payload
                        with src, open(tmp / spec.folder / parts[1], "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
                        wanted.discard(parts[1])
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"could not extract {archive} ({e}); it is truncated or corrupt: delete it and run "
                            f"again to re-download, or place the official archive there") from None
        if wanted:
            raise DataError(f"{archive} lacks {spec.folder}/{sorted(wanted)[0]}; it is not the official "
                            f"{spec.title} archive: delete it and run again to re-download")
        folder = root / spec.folder
        if not folder.is_dir():
            try:
                os.rename(tmp / spec.folder, folder)
            except OSError:
                if not folder.is_dir():  # else another process extracted it first: use theirs
                    raise
        else:
            for name in names:
                os.replace(tmp / spec.folder / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global (no code execution).

    ``_codecs.encode`` is how protocol-2 pickles written by Python 3 store bytes (torch's ``weights_only``
    loader allows it too).
    """

    _ALLOWED = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(spec: CifarSpec, path: Path) -> dict[bytes, Any]:
    """Read ``path``, verify its official md5, and unpickle it (``encoding='bytes'``, as the release needs)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; run again to re-extract it from {spec.archive} (downloaded if "
                        f"absent), or place the official file there") from None
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check its permissions") from None
    expected = CIFAR_MD5[spec.key][path.name]
    got = hashlib.md5(data).hexdigest()
    if got != expected:
        raise DataError(f"{path} has md5 {got}, but the official file has {expected} (corrupt or not the "
                        f"official {spec.title}); {_fix_hint(spec, path)}")
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # truncated or corrupt pickles raise many types (EOFError, UnpicklingError, ...)
        raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e}); it is truncated or "
                        f"corrupt: {_fix_hint(spec, path)}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected the official dict; {_fix_hint(spec, path)}")
    return obj


def _load_split(spec: CifarSpec, folder: Path, files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        path = folder / name
        d = _read_pickle(spec, path)
        x, y = d.get(b"data"), d.get(spec.label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 \
                or y is None or len(y) != len(x):
            raise DataError(f"{path} does not hold the official b'data' (N×3072 uint8) and "
                            f"{spec.label_key!r} entries; {_fix_hint(spec, path)}")
        images.append(x)
        labels.append(np.asarray(y, dtype=np.int64))
    x_all = np.concatenate(images) if len(images) > 1 else images[0]
    # The rows are channel-major (1024 red, 1024 green, 1024 blue), i.e. already C×H×W.
    return torch.from_numpy(x_all.reshape(-1, 3, 32, 32)), torch.from_numpy(np.concatenate(labels))


def _load_folder(spec: CifarSpec, folder: Path) -> ImageDataset:
    meta_path = folder / spec.meta_file
    meta = _read_pickle(spec, meta_path)
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{meta_path} has no {spec.names_key!r} list; {_fix_hint(spec, meta_path)}")
    classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    x_train, y_train = _load_split(spec, folder, spec.train_files)
    x_test, y_test = _load_split(spec, folder, spec.test_files)
    return ImageDataset(name=spec.key, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                        classes=classes, mean=spec.mean, std=spec.std, pad=4, flip=True)
