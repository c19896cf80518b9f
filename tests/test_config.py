"""Config: every shipped preset resolves, unknown keys and wrong types fail with a suggestion, overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

import pytest
import torch
import yaml

import nasforge.config as config_module
from nasforge.config import (DataConfig, LoopConfig, RunConfig, TrainConfig, build_config, config_diff, from_dict,
                             load_preset, parse_overrides, preset_dict, preset_names, to_dict)
from nasforge.errors import ConfigError
from nasforge.strategies import STRATEGIES, SearchContext


def _preset_kinds() -> list[str]:
    return sorted(p.name[: -len(".yaml")] for p in resources.files("nasforge.presets").iterdir()
                  if p.name.endswith(".yaml"))


def _search_cls(kind: str) -> type | None:
    return None if kind == "train" else STRATEGIES.get(kind).Config


def _all_presets() -> list[tuple[str, str]]:
    return [(kind, name) for kind in _preset_kinds() for name in preset_names(kind)]


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def _darts(**search: Any) -> dict[str, Any]:
    return {"search": search}


DartsConfig = STRATEGIES.get("darts").Config


# -- shipped presets ------------------------------------------------------------------------------------------

def test_every_preset_file_belongs_to_a_method():
    kinds = _preset_kinds()
    assert "train" in kinds and "darts" in kinds
    for kind in kinds:
        assert kind == "train" or kind in STRATEGIES, f"presets/{kind}.yaml has no registered search method"
        assert preset_names(kind), f"presets/{kind}.yaml holds no presets"


@pytest.mark.parametrize("kind", _preset_kinds())
def test_preset_files_have_no_duplicate_names(kind):
    # yaml.safe_load keeps the last of two equal keys silently; a copy-pasted preset would vanish
    text = resources.files("nasforge.presets").joinpath(f"{kind}.yaml").read_text()
    root = yaml.compose(text)
    names = [k.value for k, _ in root.value]
    assert len(names) == len(set(names)), f"duplicate preset names in {kind}.yaml: {names}"


@pytest.mark.parametrize("kind, name", _all_presets(), ids=[f"{k}:{n}" for k, n in _all_presets()])
def test_every_preset_resolves(kind, name):
    search_cls = _search_cls(kind)
    cfg = load_preset(kind, name, search_cls)
    assert isinstance(cfg, RunConfig)
    if search_cls is None:
        assert cfg.search is None
    else:
        assert isinstance(cfg.search, search_cls)
    resolved = _leaves(to_dict(cfg))
    for key, value in _leaves(preset_dict(kind, name)).items():  # every preset value took effect
        assert resolved[key] == value, key
        assert type(resolved[key]) is type(value) or isinstance(value, int), key
    # the resolved config survives the round trip through a plain dict (what a run folder stores)
    assert build_config(to_dict(cfg), search_cls) == cfg


@pytest.mark.parametrize("kind, name", [(k, n) for k, n in _all_presets() if k != "train"],
                         ids=[f"{k}:{n}" for k, n in _all_presets() if k != "train"])
def test_every_search_preset_builds_its_strategy(kind, name):
    cfg = load_preset(kind, name, _search_cls(kind))
    ctx = SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=1, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(0))
    strategy = STRATEGIES.get(kind)(cfg.search, ctx)
    stages = getattr(cfg.search, "stage_layers", None)  # P-DARTS: epochs per stage x stages
    expected = len(stages) * cfg.search.epochs_per_stage if stages else getattr(cfg.search, "epochs", None)
    if getattr(strategy, "reranks", False):  # NAO-V2: the final re-ranking is one more epoch, without steps
        expected += 1
    assert expected is None or strategy.epochs == expected


def test_darts_presets_hold_the_paper_settings():
    paper = load_preset("darts", "paper", DartsConfig)
    assert (paper.search.layers, paper.search.channels, paper.search.epochs, paper.data.batch_size) == (8, 16, 50, 64)
    assert load_preset("darts", "paper-second-order", DartsConfig).search.order == "second"
    train = load_preset("train", "paper", None)
    assert (train.train.layers, train.train.channels, train.train.epochs, train.data.cutout) == (20, 36, 600, 16)
    assert isinstance(train.train.weight_decay, float) and train.train.weight_decay == 3e-4


def test_unknown_presets():
    with pytest.raises(ConfigError, match=r"no preset 'huge' for darts; choose one of: paper, "):
        load_preset("darts", "huge", DartsConfig)
    with pytest.raises(ConfigError, match=r"no presets for 'enas'"):
        load_preset("enas", "tiny", None)


def test_train_presets_take_no_search_settings():
    with pytest.raises(ConfigError, match=r"this command takes no search\.\* settings"):
        load_preset("train", "tiny", None, {"search": {"epochs": 1}})


# -- strictness ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, match", [
    ({"sed": 1}, r"unknown config key 'sed'; did you mean seed\?"),
    ({"dat": {}}, r"unknown config key 'dat'; did you mean data\?"),
    ({"zzz": 1}, r"unknown config key 'zzz'; valid keys: method, seed, device, deterministic, data, loop, search, "
                 r"train"),
    ({"data": {"batchsize": 8}}, r"unknown config key 'data\.batchsize'; did you mean data\.batch_size\?"),
    ({"loop": {"valid_evry": 2}}, r"unknown config key 'loop\.valid_evry'; did you mean loop\.valid_every\?"),
    ({"train": {"drop_pth": 0.1}}, r"unknown config key 'train\.drop_pth'; did you mean train\.drop_path\?"),
    (_darts(epoch=3), r"unknown config key 'search\.epoch'; did you mean search\.epochs\?"),
    (_darts(arch_learning_rate=3e-4), r"unknown config key 'search\.arch_learning_rate'"),
])
def test_unknown_keys(raw, match):
    with pytest.raises(ConfigError, match=match):
        build_config(raw, DartsConfig)


@pytest.mark.parametrize("raw, match", [
    ({"seed": "2"}, r"seed: expected int, got '2' \(str\)"),
    ({"seed": 2.0}, r"seed: expected int, got 2\.0 \(float\)"),
    ({"seed": 2.5}, r"seed: expected int, got 2\.5 \(float\)"),
    ({"seed": True}, r"seed: expected int, got True \(bool\)"),
    ({"seed": None}, r"seed: expected int, got None"),
    ({"data": {"batch_size": 3.0}}, r"data\.batch_size: expected int, got 3\.0 \(float\)"),
    ({"deterministic": 1}, r"deterministic: expected true or false, got 1 \(int\)"),
    ({"deterministic": "yes"}, r"deterministic: expected true or false, got 'yes' \(str\)"),
    ({"data": {"flip": "no"}}, r"data\.flip: expected bool or NoneType, got 'no' \(str\)"),
    ({"data": {"data_dir": 5}}, r"data\.data_dir: expected str or NoneType, got 5 \(int\)"),
    ({"device": 0}, r"device: expected str, got 0 \(int\)"),
    ({"train": {"lr": "fast"}}, r"train\.lr: expected float, got 'fast' \(str\)"),
    ({"train": {"lr": True}}, r"train\.lr: expected float, got True \(bool\)"),
    (_darts(ops="sep_conv_3x3"), r"search\.ops: expected a list, got 'sep_conv_3x3' \(str\); write e\.g\. "
                                 r"search\.ops=\[a,b\]"),
    (_darts(ops=["sep_conv_3x3", 3]), r"search\.ops\[1\]: expected str, got 3 \(int\)"),
    (_darts(layers=[3]), r"search\.layers: expected int, got \[3\]"),
    ({"data": 5}, r"data: expected a mapping of keys, got 5"),
    ({"loop": 0}, r"loop: expected a mapping of keys, got 0"),
    ({"loop": []}, r"loop: expected a mapping of keys, got \[\]"),
    ({"search": "darts"}, r"search: expected a mapping of keys, got 'darts'"),
])
def test_wrong_types(raw, match):
    with pytest.raises(ConfigError, match=match):
        build_config(raw, DartsConfig)


def test_lossless_conversions_and_nullable_fields():
    cfg = build_config({"data": {"data_dir": None, "flip": None}, "train": {"lr": 1},
                        "search": {"w_lr": 2, "arch_lr": "1e-3"}}, DartsConfig)
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float and type(cfg.search.w_lr) is float
    assert cfg.search.arch_lr == 1e-3  # YAML 1.1 reads "1e-3" as a string
    assert cfg.data.data_dir is None and cfg.data.flip is None
    assert build_config({"data": {"flip": False}}, DartsConfig).data.flip is False


def test_defaults_and_empty_sections():
    cfg = build_config({"data": None, "loop": {}, "search": None}, DartsConfig)
    assert cfg.data == DataConfig() and cfg.loop == LoopConfig() and cfg.train == TrainConfig()
    assert cfg.search == DartsConfig()
    assert build_config({}, None).search is None


@dataclass
class _Nested:
    sizes: Sequence[int] = (1, 2)
    names: tuple[str, ...] = ()
    anything: Any = None
    inner: LoopConfig = field(default_factory=LoopConfig)


def test_from_dict_on_any_dataclass():
    got = from_dict(_Nested, {"sizes": [3], "names": ["a"], "anything": {"x": 1}, "inner": {"valid_every": 2}})
    assert got.sizes == [3] and got.names == ["a"] and got.anything == {"x": 1} and got.inner.valid_every == 2
    with pytest.raises(ConfigError, match=r"sizes: expected a list, got 3 \(int\)"):
        from_dict(_Nested, {"sizes": 3})
    with pytest.raises(ConfigError, match=r"sizes\[0\]: expected int, got 'x'"):
        from_dict(_Nested, {"sizes": ["x"]})
    with pytest.raises(ConfigError, match=r"names\[0\]: expected str, got 1"):
        from_dict(_Nested, {"names": [1]})
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.valid_evry'; did you mean inner\.valid_every"):
        from_dict(_Nested, {"inner": {"valid_evry": 1}})


def test_public_names_exist():
    for name in config_module.__all__:
        assert hasattr(config_module, name), name


# -- overrides ------------------------------------------------------------------------------------------------

def test_parse_overrides():
    got = parse_overrides(["search.epochs=3", "search.order=second", "data.dataset=npz:/tmp/a=b.npz",
                           "search.ops=[sep_conv_3x3, skip_connect]", "loop.progress=false", "deterministic=True",
                           "data.data_dir=null", "data.flip=~", "train.lr=0.1", "seed=7", " method = darts",
                           "a.b.c=[1,2]", "device="])
    assert got == {
        "search": {"epochs": 3, "order": "second", "ops": ["sep_conv_3x3", "skip_connect"]},
        "data": {"dataset": "npz:/tmp/a=b.npz", "data_dir": None, "flip": None},
        "loop": {"progress": False}, "deterministic": True, "train": {"lr": 0.1}, "seed": 7, "method": "darts",
        "a": {"b": {"c": [1, 2]}}, "device": "",
    }
    assert parse_overrides([]) == {}
    assert parse_overrides(["x=[1, 2"]) == {"x": "[1, 2"}  # not YAML: kept as the text, then type-checked
    assert parse_overrides(["x=1", "x=2"]) == {"x": 2}  # the last one wins


def test_yaml_boolean_words_stay_words_for_text_fields():
    """``--set search.cache_dir=off`` means the text "off" (YAML 1.1 would read false); a flag still reads it
    as false."""
    cls = STRATEGIES.get("knas")
    cfg = load_preset("knas", "tiny", cls.Config, parse_overrides(["search.cache_dir=off", "search.replace=yes",
                                                                     "loop.progress=off"]))
    assert cfg.search.cache_dir == "off" and type(cfg.search.cache_dir) is str
    assert cfg.search.replace is True and cfg.loop.progress is False
    yaml.safe_dump(config_module.to_dict(cfg))  # plain values all the way


def test_parse_overrides_errors():
    with pytest.raises(ConfigError, match=r"--set 'noequals': expected key=value, e\.g\. --set search\.epochs=3"):
        parse_overrides(["noequals"])
    with pytest.raises(ConfigError, match=r"--set 'seed\.x=1': seed is a value, not a section"):
        parse_overrides(["seed=1", "seed.x=1"])


def test_overrides_beat_presets_and_keep_the_rest():
    base = load_preset("darts", "tiny", DartsConfig)
    cfg = load_preset("darts", "tiny", DartsConfig,
                      parse_overrides(["search.epochs=1", "data.batch_size=8", "search.arch_lr=1e-3", "seed=5"]))
    assert (cfg.search.epochs, cfg.data.batch_size, cfg.search.arch_lr, cfg.seed) == (1, 8, 1e-3, 5)
    assert cfg.search.layers == base.search.layers == 3 and cfg.search.w_lr == base.search.w_lr == 0.05
    assert cfg.data.dataset == base.data.dataset == "digits"
    assert config_diff(to_dict(base), to_dict(cfg)) == ["data.batch_size", "search.arch_lr", "search.epochs", "seed"]
    with pytest.raises(ConfigError, match=r"unknown config key 'search\.epoch'; did you mean search\.epochs"):
        load_preset("darts", "tiny", DartsConfig, parse_overrides(["search.epoch=1"]))
    with pytest.raises(ConfigError, match=r"search\.epochs: expected int, got 'many'"):
        load_preset("darts", "tiny", DartsConfig, parse_overrides(["search.epochs=many"]))
    with pytest.raises(ConfigError, match=r"data: expected a mapping of keys, got 3"):
        load_preset("darts", "tiny", DartsConfig, parse_overrides(["data=3"]))


def test_config_diff():
    a = {"seed": 1, "data": {"batch_size": 64, "cutout": 0}, "search": {"ops": ["a", "b"]}}
    b = {"seed": 1, "data": {"batch_size": 32, "cutout": 0}, "search": {"ops": ["a"]}, "new": 3}
    assert config_diff(a, a) == []
    assert config_diff(a, b) == ["data.batch_size", "new", "search.ops"]
    assert config_diff(b, a) == config_diff(a, b)
    assert config_diff({"x": {"y": 1}}, {"x": 2}) == ["x"]
    cfg = to_dict(load_preset("darts", "tiny", DartsConfig))
    other = to_dict(load_preset("darts", "tiny-second-order", DartsConfig))
    assert config_diff(cfg, other) == ["search.epochs", "search.order"]


def test_to_dict_is_plain_data():
    cfg = load_preset("darts", "tiny", DartsConfig)
    d = to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert set(d) == {f.name for f in dataclasses.fields(RunConfig)}
    assert isinstance(d["search"]["ops"], list)
