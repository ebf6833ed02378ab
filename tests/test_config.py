"""Configs: validation errors name the field, overrides keep types, JSON round-trips, hashes are stable."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from aelab.config import LayerSpec, RunConfig, apply_overrides, config_hash, parse_layers, parse_override
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
