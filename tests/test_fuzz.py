"""Property-based tests of the parsers users feed by hand: genotype text/JSON/NB201/NAO strings, ``--set``
overrides, ``.npz`` datasets. Every input is either accepted as valid or refused with the library's one error
class for it — never another exception, never a hang, never a file written.

The CI profile (the default) tries ~100 examples per property; ``HYPOTHESIS_PROFILE=soak`` tries 5,000
(``python -m pytest tests/test_fuzz.py --hypothesis-show-statistics`` prints how many were refused).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from nasforge.config import build_config, field_range
from nasforge.data.npz import load_npz
from nasforge.errors import ConfigError, DataError, GenotypeError
from nasforge.genotypes import (CellArch, Edge, Genotype, from_darts_pairs, from_darts_text, from_nb201_text,
                                load_genotype, to_darts_text, to_nb201_text)
from nasforge.genotypes.nao_seq import NAO_SMALL_OPS, from_nao_seq, from_nao_text, to_nao_seq, to_nao_text
from nasforge.genotypes.nb201_text import NB201_OPS, nb201_genotype
from nasforge.ops import DARTS_OPS
from nasforge.strategies import STRATEGIES

settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soak", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REAL_OPS = [op for op in DARTS_OPS if op != "none"]


# -- genotype generators ---------------------------------------------------------------------------------------
@st.composite
def darts_pairs(draw: st.DrawFn, nodes: int) -> list[tuple[str, int]]:
    return [(draw(st.sampled_from(REAL_OPS)), draw(st.integers(0, 1 + j))) for j in range(nodes) for _ in range(2)]


@st.composite
def darts_genotypes(draw: st.DrawFn) -> Genotype:
    nodes = draw(st.integers(1, 5))
    concat = list(range(2, 2 + nodes))
    return from_darts_pairs(draw(darts_pairs(nodes)), concat, draw(darts_pairs(nodes)), concat)


@st.composite
def unshared_cells(draw: st.DrawFn, reduction: bool, name: str) -> CellArch:
    """GOLD-NAS-like: any number of ops on any number of inputs per node (at least one)."""
    nodes = draw(st.integers(1, 4))
    edges = []
    for j in range(2, 2 + nodes):
        srcs = draw(st.lists(st.integers(0, j - 1), min_size=1, max_size=j, unique=True))
        for s in srcs:
            for op in draw(st.lists(st.sampled_from(REAL_OPS), min_size=1, max_size=3, unique=True)):
                edges.append(Edge(s, j, op))
    return CellArch(edges=tuple(edges), concat=tuple(range(2, 2 + nodes)), reduction=reduction, name=name)


@st.composite
def unshared_genotypes(draw: st.DrawFn) -> Genotype:
    n = draw(st.integers(1, 5))
    cells = tuple(draw(unshared_cells(reduction=draw(st.booleans()), name=f"cell {i}")) for i in range(n))
    return Genotype(cells=cells, sharing="none", space="gold-nas")


nb201_genotypes = st.lists(st.sampled_from(NB201_OPS), min_size=6, max_size=6).map(nb201_genotype)


@st.composite
def nao_sequences(draw: st.DrawFn) -> list[int]:
    seq = []
    for _cell in range(2):
        for b in range(5):
            for _slot in range(2):
                seq += [draw(st.integers(0, b + 1)), draw(st.integers(0, len(NAO_SMALL_OPS) - 1))]
    return seq


any_genotype = st.one_of(darts_genotypes(), unshared_genotypes(), nb201_genotypes, nao_sequences().map(from_nao_seq))


# -- round trips -----------------------------------------------------------------------------------------------
@given(darts_genotypes())
def test_darts_genotypes_round_trip_through_text_and_json(g):
    assert from_darts_text(to_darts_text(g)) == g
    assert load_genotype(str(g)) == g
    assert load_genotype(g.to_json()) == g and Genotype.from_dict(g.to_dict()).hash() == g.hash()


@given(unshared_genotypes())
def test_unshared_genotypes_round_trip_through_json(g):
    assert load_genotype(g.to_json()) == g and load_genotype(g.to_json(indent=None)) == g


@given(nb201_genotypes)
def test_nb201_genotypes_round_trip_through_their_string(g):
    assert from_nb201_text(to_nb201_text(g)) == g and load_genotype(str(g)) == g


@given(nao_sequences())
def test_nao_sequences_round_trip(seq):
    g = from_nao_seq(seq)
    assert from_nao_seq(to_nao_seq(g)) == g and from_nao_text(to_nao_text(g)) == g and load_genotype(str(g)) == g


# -- mutations: valid or GenotypeError, nothing else ----------------------------------------------------------
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True)
                           | st.text(max_size=12), lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=8)


def _paths(node: typing.Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a JSON document (keys of dicts, indices of lists)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    g = draw(any_genotype)
    doc = copy.deepcopy(g.to_dict())
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["retype", "drop", "op", "index", "duplicate"]))
        last = path[-1]
        if kind == "drop":
            del parent[last]
        elif kind == "op":
            parent[last] = draw(st.text(max_size=20))
        elif kind == "index":
            parent[last] = draw(st.integers(-5, 10**9))
        elif kind == "duplicate" and isinstance(parent, list):
            parent.extend([parent[last]] * draw(st.integers(1, 2000)))
        else:
            parent[last] = draw(JSON_VALUES)
    text = json.dumps(doc)
    if draw(st.booleans()):
        text = text[:draw(st.integers(0, len(text)))]
    return text


def _accepted_or_refused(text: str) -> None:
    try:
        g = load_genotype(text)
    except GenotypeError as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    assert isinstance(g, Genotype)
    event("accepted")


@given(mutated_json())
@example('{"cells": [{"edges": [[0, 2, "sep_conv_3x3"]], "concat": [2]}], "sharing": "by_type", "space": 1}')
@example('{"normal": [["sep_conv_3x3", true], ["skip_connect", 1]], "reduce": [["max_pool_3x3", 0], '
         '["skip_connect", 1]]}')
@example('{"normal": "x", "reduce": []}')
@example('{"cells": [{"edges": [[0, 2, "sep_conv_3x3"]], "concat": [2], "n_inputs": 1e400}]}')
def test_mutated_genotype_json_is_accepted_or_refused_cleanly(text):
    _accepted_or_refused(text)


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = str(draw(st.one_of(darts_genotypes(), nb201_genotypes, nao_sequences().map(from_nao_seq))))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = draw(st.text(alphabet="()[],'\"|~+ 0123456789abcxyz_=-", max_size=4))
        text = {"insert": text[:i] + piece + text[i:], "delete": text[:i] + text[i + 1:],
                "replace": text[:i] + piece + text[i + len(piece):], "truncate": text[:i]}[op]
    return text


@given(mutated_text())
@example("Genotype(normal=[('sep_conv_3x3', 0)] * 10**9, normal_concat=[2], reduce=[], reduce_concat=[2])")
@example("Genotype(" + "(" * 500 + ")" * 500 + ")")
@example("|nor_conv_3x3~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|none~9|")
@example("NAO(normal=[0, 0, 1, 1], reduce=[0, 0])")
@example("~Genotype(normal=[('max_pool_3x3', 0), ('max_pool_3x3', 0)], normal_concat=[2], reduce=[], "
         "reduce_concat=[2])")  # found by the fuzzer: "~user" expansion of an unknown user raised RuntimeError
def test_mutated_genotype_text_is_accepted_or_refused_cleanly(text):
    _accepted_or_refused(text)


@example("~\x00")  # expanduser of a NUL: found by this test in CI
@given(st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_refused_cleanly(text):
    _accepted_or_refused(text)


# -- --set overrides: wrong types and out-of-range values name the field --------------------------------------
def _config_fields() -> list[tuple[str, str, type, str]]:
    """(method, section, config class, field) for every field of every method's search config and the shared
    data/loop/train sections."""
    from nasforge.config import DataConfig, LoopConfig, TrainConfig

    out = []
    for method in STRATEGIES.names():
        for f in dataclasses.fields(STRATEGIES.get(method).Config):
            out.append((method, "search", STRATEGIES.get(method).Config, f.name))
    for section, cls in (("data", DataConfig), ("loop", LoopConfig), ("train", TrainConfig)):
        out += [("darts", section, cls, f.name) for f in dataclasses.fields(cls)]
    return out


FIELDS = _config_fields()


def _build(method: str, section: str, name: str, value: typing.Any) -> None:
    build_config({"method": method, section: {name: value}}, STRATEGIES.get(method).Config)


@st.composite
def wrong_typed(draw: st.DrawFn) -> tuple:
    method, section, cls, name = draw(st.sampled_from(FIELDS))
    tp = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(tp)
    if tp is bool:
        value = draw(st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=2))
    elif tp is int:
        value = draw(st.text(min_size=1, max_size=5).filter(lambda s: not s.strip().lstrip("-").isdigit())
                     | st.floats(allow_nan=False).filter(lambda x: x != int(x) if abs(x) < 1e300 else True)
                     | st.lists(st.integers(), max_size=2) | st.booleans())
    elif tp is float:
        value = draw(st.text(alphabet="abcxyz!", min_size=1, max_size=5) | st.lists(st.floats(), max_size=2)
                     | st.booleans() | st.dictionaries(st.text(max_size=2), st.integers(), min_size=1, max_size=2))
    elif tp is str:
        value = draw(st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.booleans())
    elif origin is list:
        value = draw(st.integers() | st.text(max_size=3) | st.booleans())
    else:  # unions like str | None take most values; skip them here
        value = None
        tp = None
    return method, section, name, value, tp


@given(wrong_typed())
def test_wrong_types_are_refused_naming_the_field(case):
    method, section, name, value, tp = case
    if tp is None:
        return
    with pytest.raises(ConfigError, match=rf"{section}\.{name}"):
        _build(method, section, name, value)


RANGED = [(m, s, c, n, field_range(c, n)) for m, s, c, n in FIELDS if field_range(c, n) is not None]


def _bounds(rng: typing.Any) -> tuple[float | None, float | None]:
    return (rng.ge if rng.ge is not None else rng.gt), (rng.le if rng.le is not None else rng.lt)


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple:
    method, section, cls, name, rng = draw(st.sampled_from(RANGED))
    tp = typing.get_type_hints(cls)[name]
    if rng.choices is not None:
        value = draw(st.text(max_size=10).filter(lambda v: v not in rng.choices))
    else:
        low, high = _bounds(rng)
        options = []
        if low is not None:
            below = (low - 1, low) if rng.gt is not None or tp is int else (low - 1, low - 1e-9)
            options.append(st.integers(-10**6, int(below[0])) if tp is int or typing.get_origin(tp) is list
                           else st.floats(-1e9, below[1]))
        if high is not None:
            options.append(st.integers(int(high) + 1, 10**6) if tp is int
                           else st.floats(high if rng.lt is not None else high + 1e-9, 1e9))
        if tp is float:
            options.append(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        value = draw(st.one_of(options))
    if typing.get_origin(tp) is list:
        value = [value]
    return method, section, name, value


@given(out_of_range())
@example(("darts", "data", "train_portion", 1.0))
@example(("gold-nas", "search", "c0", 1.0))
@example(("pdarts", "search", "dropout_rates", [1.0]))
def test_out_of_range_values_are_refused_naming_the_field(case):
    method, section, name, value = case
    with pytest.raises(ConfigError, match=rf"{section}\.{name}"):
        _build(method, section, name, value)


@st.composite
def in_range(draw: st.DrawFn) -> tuple:
    method, section, cls, name, rng = draw(st.sampled_from(RANGED))
    tp = typing.get_type_hints(cls)[name]
    item = tp if typing.get_origin(tp) is not list else typing.get_args(tp)[0]
    if rng.choices is not None:
        value = draw(st.sampled_from(rng.choices))
    else:
        low, high = _bounds(rng)
        if item is int:
            lo = int(low) + (1 if rng.gt is not None and low == int(low) else 0) if low is not None else -10**6
            hi = int(high) - (1 if rng.lt is not None and high == int(high) else 0) if high is not None else 10**6
            value = draw(st.integers(lo, hi))
        else:
            value = draw(st.floats(low if low is not None else -1e6, high if high is not None else 1e6,
                                   exclude_min=rng.gt is not None, exclude_max=rng.lt is not None))
    if typing.get_origin(tp) is list:
        value = [value]
    return method, section, name, value


@given(in_range())
def test_values_inside_the_range_build(case):
    method, section, name, value = case
    try:
        _build(method, section, name, value)
    except ConfigError as exc:  # only a cross-field rule may still refuse, and it names this field
        assert name in str(exc), str(exc)
        event("cross-field rule")


# -- npz datasets: malformed arrays are DataError in one line -------------------------------------------------
DTYPES = st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.int8, np.uint16])


@st.composite
def npz_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    def images(n: int) -> np.ndarray:
        ndim = draw(st.sampled_from([1, 2, 3, 4, 4, 4, 5]))
        shape = [n] + [draw(st.integers(1, 6)) for _ in range(ndim - 1)]
        arr = np.asarray(draw(st.lists(st.integers(0, 255), min_size=int(np.prod(shape)),
                                       max_size=int(np.prod(shape)))), dtype=np.int64).reshape(shape)
        dtype = draw(DTYPES)
        arr = arr.astype(dtype)
        if np.issubdtype(dtype, np.floating) and arr.size and draw(st.booleans()):
            arr.flat[0] = np.nan
        return arr

    def labels(n: int) -> np.ndarray:
        m = n + draw(st.sampled_from([0, 0, 0, -1, 1]))
        y = np.asarray(draw(st.lists(st.integers(-2, 12), min_size=max(m, 0), max_size=max(m, 0))))
        return y.astype(draw(st.sampled_from([np.int64, np.int64, np.float32, np.uint8])))

    n_train, n_test = draw(st.integers(0, 5)), draw(st.integers(0, 4))
    arrays = {"x_train": images(n_train), "y_train": labels(n_train), "x_test": images(n_test),
              "y_test": labels(n_test)}
    for key in draw(st.lists(st.sampled_from(sorted(arrays)), max_size=1)):
        del arrays[key]
    if draw(st.booleans()):
        arrays["classes"] = np.asarray(draw(st.lists(st.text(max_size=3), max_size=12)), dtype=str)
    return arrays


@given(npz_arrays())
def test_malformed_npz_datasets_are_refused_in_one_line(tmp_path_factory, arrays):
    folder = tmp_path_factory.mktemp("npz")
    path = folder / "data.npz"
    np.savez(path, **arrays)
    try:
        data = load_npz(path)
    except DataError as exc:
        assert "\n" not in str(exc)
        event("refused")
    else:
        assert data.x_train.dtype.is_floating_point is False and len(data.y_train) == len(arrays["y_train"])
        event("accepted")
    assert sorted(p.name for p in folder.iterdir()) == ["data.npz"]  # nothing else written


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04broken", b"\x93NUMPY" + b"\0" * 40])
def test_truncated_npz_files_are_refused(tmp_path: Path, content: bytes):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(DataError):
        load_npz(path)
