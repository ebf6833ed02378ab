"""Configs: validation errors name the field, overrides keep types, JSON round-trips, hashes are stable."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aelab.config import (
    LayerSpec,
    RunConfig,
    apply_overrides,
    config_hash,
    parse_layers,
    parse_override,
)
from aelab.errors import ConfigError


def test_defaults_are_the_seed_lab_undercomplete():
    c = RunConfig()
    assert [str(l) for l in c.model.encoder] == ["32:relu"]
    assert [str(l) for l in c.model.decoder] == ["784:sigmoid"]
    assert (c.train.batch_size, c.train.epochs, c.train.lr, c.train.eps) == (64, 20, 1e-3, 1e-7)


@pytest.mark.parametrize("bad, field", [
    ({"model": {"encoderr": "32:relu"}}, "model.encoderr: unknown key"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"epochs": "3"}}, "train.epochs"),
    ({"train": {"batch_size": -1}}, "train.batch_size"),
    ({"model": {"activity_l1": -0.1}}, "model.activity_l1"),
    ({"data": {"noise_factor": -0.5}}, "data.noise_factor"),
    ({"model": {"decoder": ["700:sigmoid"]}}, "784"),
    ({"model": {"encoder": ["0:relu"]}}, "encoder"),
    ({"model": {"encoder": ["32:swish"]}}, "unknown activation 'swish'"),
    ({"data": {"limit": 10}, "train": {"batch_size": 64}}, "batch_size 64 is larger than the data set"),
    ({"data": {"scaling": "zscore"}}, "data.scaling"),
    ({"model": {"family": "conv"}}, "unknown family 'conv'"),
])
def test_bad_configs_raise_one_line_naming_the_field(bad, field):
    with pytest.raises(ConfigError) as ei:
        RunConfig.from_dict(bad)
    msg = str(ei.value)
    assert field in msg
    assert "\n" not in msg


def test_round_trip_and_hash():
    c = RunConfig.from_dict({"model": {"encoder": "128:relu,32:relu", "decoder": "128:relu,784:sigmoid"}})
    again = RunConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c
    assert config_hash(again) == config_hash(c)
    assert config_hash(c.model_copy(update={"name": "other"})) == config_hash(c)  # the name is not identity
    assert config_hash(c.with_overrides({"train.seed": 1})) != config_hash(c)


def test_overrides_must_name_existing_keys_and_keep_types():
    c = RunConfig()
    assert c.with_overrides({"model.activity_l1": 0.01}).model.activity_l1 == 0.01
    assert c.with_overrides({"model.activity_l1": 1}).model.activity_l1 == 1.0  # an int is a fine float
    with pytest.raises(ConfigError, match="unknown key 'model.foo'"):
        c.with_overrides({"model.foo": 1})
    with pytest.raises(ConfigError, match="train.epochs"):
        c.with_overrides({"train.epochs": 2.5})
    assert parse_override("train.shuffle=false") == ("train.shuffle", False)
    assert parse_override("model.encoder=['16:tanh']") == ("model.encoder", ["16:tanh"])


def test_layer_parsing():
    assert parse_layers("128:relu, 32:linear") == (LayerSpec(size=128, activation="relu"), LayerSpec(size=32, activation="linear"))
    for bad in ("", "32", "relu:32", "32:"):
        with pytest.raises(ConfigError):
            parse_layers(bad)


def test_toml_errors(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[train]\nepochs = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.from_toml(tmp_path / "missing.toml")
    p.write_text('[model]\nencoder = ["16:relu"]\n[train]\nepochs = 3\n')
    c = RunConfig.from_toml(p)
    assert c.train.epochs == 3 and c.model.code_dim == 16


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
                    st.lists(st.text(max_size=6), max_size=3))
_keys = st.sampled_from(["model.encoder", "model.decoder", "model.activity_l1", "model.init", "model.input_dim",
                         "data.noise_factor", "data.limit", "data.scaling", "train.epochs", "train.batch_size",
                         "train.lr", "train.beta1", "train.shuffle", "train.loss", "nope", "model.nope"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=4))
def test_random_configs_either_validate_or_raise_config_error(overrides):
    """Property: any input gives a valid config or a one-line ConfigError — never another exception."""
    try:
        c = RunConfig.from_dict(apply_overrides(RunConfig().to_dict(), overrides))
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
    else:
        assert c.model.decoder[-1].size == c.model.input_dim
        assert c.train.epochs >= 1 and c.model.activity_l1 >= 0 and c.data.noise_factor >= 0


# -- config.json files written before data sources had their own options ---------------------------------
#: (hash, overrides of the non-data parts, the data table exactly as earlier versions wrote it): the hashes
#: were computed by the version whose DataConfig held every source's options flat
OLD_DATA_TABLES = [
    ('31500aa76355857f', {},
     {"dataset": "mnist", "scaling": "unit", "scaler_fit": "train", "noise_factor": 0.0, "noise_mode": "once", "validate_on": "clean", "limit": None, "test_limit": None, "channels": None, "image_size": None, "test_fraction": 0.2, "split_seed": 0, "label_column": None, "exclude_labels": []}),
    ('2164254f1bb004fd', {},
     {"dataset": "digits", "scaling": "unit", "scaler_fit": "train", "noise_factor": 0.0, "noise_mode": "once", "validate_on": "clean", "limit": None, "test_limit": None, "channels": None, "image_size": None, "test_fraction": 0.3, "split_seed": 1, "label_column": None, "exclude_labels": []}),
    ('7f55a26ba4610c06', {},
     {"dataset": "fashion-mnist", "scaling": "unit", "scaler_fit": "train", "noise_factor": 0.5, "noise_mode": "per_epoch", "validate_on": "clean", "limit": 100, "test_limit": None, "channels": None, "image_size": None, "test_fraction": 0.2, "split_seed": 0, "label_column": None, "exclude_labels": []}),
    ('583832daf29b249f', {'model.family': 'vae'},
     {"dataset": "synthetic", "scaling": "unit", "scaler_fit": "train", "noise_factor": 0.0, "noise_mode": "once", "validate_on": "clean", "limit": 600, "test_limit": None, "channels": None, "image_size": None, "test_fraction": 0.2, "split_seed": 0, "label_column": None, "exclude_labels": [1, 3]}),
    ('adec68461004d9c7', {},
     {"dataset": "imgs", "scaling": "unit", "scaler_fit": "train", "noise_factor": 0.0, "noise_mode": "once", "validate_on": "clean", "limit": None, "test_limit": None, "channels": 1, "image_size": [16, 12], "test_fraction": 0.2, "split_seed": 0, "label_column": None, "exclude_labels": []}),
    ('cc165918913d4018', {'train.loss': 'mse'},
     {"dataset": "t.csv", "scaling": "minmax", "scaler_fit": "train", "noise_factor": 0.0, "noise_mode": "once", "validate_on": "clean", "limit": None, "test_limit": None, "channels": None, "image_size": None, "test_fraction": 0.2, "split_seed": 0, "label_column": "kind", "exclude_labels": []}),
]


@pytest.mark.parametrize("expected, overrides, data", OLD_DATA_TABLES)
def test_old_flat_config_json_keeps_its_hash(expected, overrides, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the path data sets are relative, so their hash is the same anywhere
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir()
    (tmp_path / "imgs" / "a" / "0.png").write_bytes(b"x")  # config_hash hashes bytes; it reads no image
    (tmp_path / "imgs" / "b" / "0.png").write_bytes(b"y")
    (tmp_path / "t.csv").write_text("f1,f2,kind\n0.5,1.5,cat\n2.5,3.5,dog\n")
    d = RunConfig().with_overrides(overrides).to_dict()
    d["data"] = data
    cfg = RunConfig.from_dict(json.loads(json.dumps(d)))
    assert cfg.hash() == expected
    assert RunConfig.from_dict(cfg.to_dict()).hash() == expected  # and so does what this version writes
    # the source's options are validated by its own class; the rest are dropped, being at their defaults
    own = {k for k in type(cfg.data.source).model_fields if k != "kind"}
    assert own == {k for k in cfg.to_dict()["data"] if k not in type(cfg.data).model_fields}


def test_data_options_nest_or_stay_flat_and_are_checked_against_their_source():
    flat = RunConfig.from_dict({"data": {"dataset": "digits", "split_seed": 3}})
    nested = RunConfig.from_dict({"data": {"dataset": "digits", "source": {"kind": "digits", "split_seed": 3}}})
    assert flat == nested and flat.data.source.split_seed == 3 and flat.to_dict()["data"]["split_seed"] == 3
    # a source changed by an override keeps the options both read, and drops the others at their defaults
    folder = flat.with_overrides({"data.dataset": "some/folder"})
    assert folder.data.source.kind == "folder" and folder.data.source.split_seed == 3
    assert RunConfig().with_overrides({"data.dataset": "digits"}).with_overrides({"data.dataset": "mnist"}) == RunConfig()
    for bad, msg in [
        ({"dataset": "mnist", "channels": 3}, r"data.channels applies to a folder of images, but data.dataset mnist "),
        ({"dataset": "mnist", "split_seed": 1}, r"data.split_seed applies to scikit-learn's digits, a folder of images or a table"),
        ({"dataset": "t.csv", "image_size": 8}, r"data.image_size applies to the shapes set or a folder of images, but data.dataset t.csv is a table"),
        ({"dataset": "digits", "test_fraction": 1.5}, r"data.test_fraction: got 1.5"),
        ({"dataset": "digits", "source": {"kind": "digits", "colour": 1}}, r"data.colour: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=r"^invalid config: " + msg):
            RunConfig.from_dict({"data": bad})

