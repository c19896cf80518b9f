"""Typed configuration: dataclass defaults owned by each component, YAML presets, dotted overrides.

A run's config is a tree: top-level run settings, ``data``, ``loop``, ``search`` (the method's own config
class, e.g. :class:`~nasforge.strategies.darts.DartsConfig`) and ``train`` (:class:`TrainConfig`). Presets
are YAML files shipped in ``nasforge/presets/<method>.yaml`` (and ``train.yaml``), each holding named presets
(``paper``, ``tiny``, ...). ``--set search.epochs=3`` overrides any field. Unknown keys and wrong types are
errors with a suggestion, never silently accepted.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from importlib import resources
from typing import Any, Mapping, Sequence

import yaml

from .errors import ConfigError

__all__ = ["Range", "option", "check_ranges", "describe_fields", "DataConfig", "LoopConfig", "TrainConfig", "RunConfig", "load_preset", "build_config",
           "parse_overrides", "merge_dicts", "to_dict", "run_dict", "from_dict", "preset_names", "config_diff"]


# -- valid ranges, declared next to each field -------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """The values a config field accepts: bounds (``ge``/``gt``/``le``/``lt``), a set of ``choices``, and for
    floats finiteness. A list-valued field applies its range to every item. ``hint`` suggests a sensible value."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    hint: str | None = None

    def describe(self) -> str:
        """Human-readable, e.g. ``>= 1``, ``in [0, 1)``, ``one of: first, second``."""
        if self.choices is not None:
            return "one of: " + ", ".join(str(c) for c in self.choices)
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return "any finite value"

    def ok(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # type checks are done elsewhere; ranges speak only of numbers
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))

    def check(self, value: Any, key: str) -> None:
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            if v is not None and not self.ok(v):
                shown = f"{key}={value!r}" if v is value else f"{key} item {v!r}"
                hint = f" (e.g. {self.hint})" if self.hint else ""
                raise ConfigError(f"{shown} is out of range: must be {self.describe()}{hint}")


def option(default: Any = MISSING, *, factory: Any = MISSING, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, choices: Sequence[Any] | None = None,
           hint: str | None = None) -> Any:
    """A dataclass field with its valid range: ``epochs: int = option(50, ge=1)``. ``build_config`` checks it,
    ``nasforge presets METHOD`` shows it. Cross-field rules go in the dataclass's ``validate()`` method."""
    rng = Range(ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices is not None else None, hint=hint)
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"range": rng})
    return field(default=default, metadata={"range": rng})


def field_range(cls_or_obj: Any, name: str) -> Range | None:
    """The declared range of field ``name`` (None where the field declares none)."""
    for f in dataclasses.fields(cls_or_obj):
        if f.name == name:
            return f.metadata.get("range")
    return None


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted key, type, default, valid range)`` for every field of dataclass ``cls`` and its nested ones."""
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, str, str]] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{f.name}.")
            continue
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        rng = f.metadata.get("range")
        shown = yaml.safe_dump(default, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
        shown = shown if len(shown) <= 32 else shown[:31] + "…"
        rows.append((f"{prefix}{f.name}", _type_name(tp), shown, rng.describe() if rng else "any"))
    return rows


def check_ranges(obj: Any, prefix: str = "") -> None:
    """Check every declared range of dataclass ``obj`` (and nested ones), then its ``validate()`` if any."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif "range" in f.metadata:
            f.metadata["range"].check(value, f"{prefix}{f.name}")
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(prefix) else f"{prefix}{msg}") from None


@dataclass
class DataConfig:
    """Dataset and batching. ``dataset`` is digits, cifar10, cifar100 or npz:PATH."""

    dataset: str = "digits"
    data_dir: str | None = None  # else $NASFORGE_DATA, else ~/.cache/nasforge/data
    download: bool = True
    # search: share of the training set used for weights (the rest: architecture)
    train_portion: float = option(0.5, gt=0, lt=1, hint="0.5")
    batch_size: int = option(64, ge=1, hint="64")
    eval_batch_size: int = option(256, ge=1)
    n_train: int = option(0, ge=0)  # use only the first n training images (0 = all); for tiny presets and tests
    n_test: int = option(0, ge=0)  # use only the first n test images (0 = all)
    cutout: int = option(0, ge=0)  # cutout square side in pixels (0 = off)
    pad: int = option(-1, ge=-1)  # pad-and-crop padding (-1 = the dataset's default, 4 for CIFAR)
    flip: bool | None = None  # random horizontal flip (None = the dataset's default)


@dataclass
class LoopConfig:
    """Search-loop bookkeeping."""

    # evaluate the supernet on the architecture split every n epochs (0 = only at the end)
    valid_every: int = option(1, ge=0)
    valid_batches: int = option(0, ge=0)  # cap the evaluation at n batches (0 = the whole split)
    progress: bool = True
    # under torchrun: BN batch statistics over all ranks (a step equals one process's step on the global batch;
    # two small all-reduces per BN) or per rank as plain DDP (cheaper on slow links; running statistics are
    # averaged over the ranks at each epoch end). No effect in one process.
    sync_bn: bool = True


@dataclass
class TrainConfig:
    """Retraining a derived network from scratch (the evaluation recipe, METHODS.md §1.5)."""

    network: str = option("cifar", choices=("cifar", "imagenet"))  # cifar or imagenet macro-structure
    epochs: int = option(600, ge=1, hint="600")
    layers: int = option(20, ge=1)
    channels: int = option(36, ge=1)
    lr: float = option(0.025, gt=0, hint="0.025")
    lr_min: float = option(0.0, ge=0)
    # cosine, exponential (x lr_gamma per epoch) or linear
    lr_schedule: str = option("cosine", choices=("cosine", "exponential", "linear"))
    lr_gamma: float = option(0.97, gt=0, le=1)
    momentum: float = option(0.9, ge=0, lt=1)
    weight_decay: float = option(3e-4, ge=0)
    auxiliary: bool = True
    aux_weight: float = option(0.4, ge=0)
    drop_path: float = option(0.2, ge=0, lt=1)  # maximum drop-path rate, ramped linearly over the epochs
    grad_clip: float = option(5.0, ge=0)
    label_smoothing: float = option(0.0, ge=0, lt=1)
    dropout: float = option(0.0, ge=0, lt=1)  # before the classifier (NAO networks: 0.4 in its recipe)


@dataclass
class RunConfig:
    """A whole run. ``search`` holds the method's own config dataclass."""

    method: str = "darts"
    seed: int = option(2, ge=0)
    device: str = "cpu"
    deterministic: bool = True  # deterministic kernels (bit-exact resume on CPU)
    data: DataConfig = field(default_factory=DataConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    search: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)


# -- (de)serialisation ---------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def run_dict(cfg: RunConfig, kind: str) -> dict[str, Any]:
    """The resolved config of a ``search`` or ``train`` run, without the section the other kind uses."""
    d = to_dict(cfg)
    d.pop("train" if kind == "search" else "search", None)
    if kind == "train":
        d.pop("method", None)
    return d


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _BoolWord(str):
    """A YAML 1.1 boolean word from ``--set`` (``off``, ``yes`` ...): the word itself for a text field (so
    ``--set search.cache_dir=off`` means "off"), its truth value for everything else."""

    flag: bool


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where lossless (int -> float), else raise ConfigError."""
    if isinstance(value, _BoolWord):
        value = str(value) if tp is str else value.flag
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _check_value(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(t) for t in typing.get_args(tp))}, got "
                          f"{value!r} ({type(value).__name__})")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin in (list, Sequence, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r} ({type(value).__name__}); write e.g. "
                              f"{key}=[a,b]")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [_check_value(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r} ({type(value).__name__})")
    if tp in (int, float, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _unknown_key(key: str, known: Sequence[str], prefix: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(known)}"
    return ConfigError(f"unknown config key '{prefix}{key}'{hint}")


def from_dict(cls: type, data: Mapping[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly: unknown keys and wrong types raise ConfigError."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(key, names, prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_value(value, tp, f"{prefix}{key}")
    return cls(**kwargs)


def merge_dicts(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


# -- presets ---------------------------------------------------------------------------------------------
def _preset_file(kind: str) -> dict[str, Any]:
    try:
        text = resources.files("nasforge.presets").joinpath(f"{kind}.yaml").read_text()
    except FileNotFoundError:
        raise ConfigError(f"no presets for {kind!r}") from None
    return yaml.safe_load(text) or {}


def preset_names(kind: str) -> list[str]:
    return list(_preset_file(kind))


def preset_dict(kind: str, name: str) -> dict[str, Any]:
    """The raw YAML mapping of preset ``name`` in ``presets/<kind>.yaml``."""
    presets = _preset_file(kind)
    if name not in presets:
        raise ConfigError(f"no preset {name!r} for {kind}; choose one of: {', '.join(presets)}")
    return presets[name] or {}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["search.epochs=3", "data.dataset=cifar10"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set search.epochs=3")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            word = _BoolWord(raw.strip())
            word.flag = value
            value = word
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is a value, not a section")
        node[parts[-1]] = value
    return out


def load_preset(kind: str, name: str, search_cls: type | None, overrides: Mapping[str, Any] | None = None
                ) -> RunConfig:
    """Resolve preset ``name`` of ``kind`` (a method or ``train``) with ``overrides`` into a RunConfig."""
    raw = merge_dicts(preset_dict(kind, name), overrides or {})
    return build_config(raw, search_cls)


def build_config(raw: Mapping[str, Any], search_cls: type | None) -> RunConfig:
    raw = dict(raw)
    search_raw = raw.pop("search", None)
    cfg: RunConfig = from_dict(RunConfig, {k: v for k, v in raw.items()}, "")
    if search_cls is not None:
        cfg.search = from_dict(search_cls, search_raw, "search.")
    elif search_raw:
        raise ConfigError("this command takes no search.* settings")
    check_ranges(cfg)
    return cfg


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out
