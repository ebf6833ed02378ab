"""Binarised data (``data.binarize``): each epoch's Bernoulli sample (dynamic), one fixed sample (static) or
rounding (threshold); the test split binarised once, the same for every run; reproducible and resumable bit
for bit; configs that do not use it keep their hashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aelab.config import RunConfig, config_hash
from aelab.data.cache import DataCache
from aelab.data.registry import with_overrides
from aelab.data.prepare import TrainData, bernoulli, binarize_fixed
from aelab.engine.loop import Interrupted, _EpochRows
from aelab.errors import ConfigError
from aelab.runs import train_runs
from aelab.streams import STREAM_BINARIZE, generator

from conftest import StopAfter, same_run

GREY = torch.linspace(0.0, 1.0, 50 * 64, dtype=torch.float32).reshape(50, 64)


def _data(seed: int = 7) -> TrainData:
    return TrainData(GREY.clone(), GREY[:5].clone(), seed=seed, binarize="dynamic")


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def test_a_dynamic_epoch_is_exactly_binary_and_inputs_are_targets():
    d = _data()
    x = d.train_inputs(3)
    assert x.dtype == torch.float32 and x.shape == GREY.shape and _is_binary(x)
    assert d.train_targets(3) is x  # one draw: the inputs are the targets
    assert x.flatten()[0] == 0 and x.flatten()[-1] == 1  # p = 0 is never 1, p = 1 always is
    assert d.x_train is not x and torch.equal(d.x_train, GREY)  # the grey values stay


def test_the_mean_over_many_epochs_is_the_grey_value():
    d = _data()
    total = torch.zeros_like(GREY, dtype=torch.float64)
    epochs = 400
    for e in range(epochs):
        total += d.train_inputs(e)
    mean = total / epochs
    # each value's mean has a standard deviation of at most 0.5 / √400 = 0.025
    assert float((mean - GREY).abs().max()) < 0.125
    assert abs(float(mean.mean() - GREY.double().mean())) < 0.003  # 3,200 values: sd ≤ 0.0005
    # epochs differ from one another (a new sample each epoch), and the bits are the stream's own
    assert not torch.equal(d.train_inputs(0), d.train_inputs(1))
    u = torch.rand(GREY.shape, generator=generator(7, STREAM_BINARIZE, 5))
    assert torch.equal(d.train_inputs(5), (u < GREY).float())


def test_same_seed_same_bits_other_seed_other_bits():
    assert torch.equal(_data(7).train_inputs(2), _data(7).train_inputs(2))
    assert not torch.equal(_data(7).train_inputs(2), _data(8).train_inputs(2))
    g1, g2 = generator(1, STREAM_BINARIZE, 0), generator(1, STREAM_BINARIZE, 0)
    assert torch.equal(bernoulli(GREY, g1), bernoulli(GREY, g2))


def test_static_and_threshold_are_fixed_and_the_default_is_untouched():
    assert torch.equal(binarize_fixed(GREY, "none", "train"), GREY)
    thr = binarize_fixed(GREY, "threshold", "train")
    assert torch.equal(thr, (GREY >= 0.5).float())
    st = binarize_fixed(GREY, "static", "train")
    assert _is_binary(st) and torch.equal(st, binarize_fixed(GREY, "static", "train"))
    assert not torch.equal(st, binarize_fixed(GREY, "static", "test"))  # the test split has its own stream
    plain = TrainData(GREY, GREY[:5])
    assert plain.train_inputs(0) is GREY and plain.train_targets(0) is GREY


def _cfg(**over) -> RunConfig:
    d = {"data.dataset": "digits", "data.binarize": "dynamic", "train.epochs": 2, "train.batch_size": 64,
         "model.encoder": ["16:relu"], "model.decoder": ["64:sigmoid"]}
    d.update(over)
    return with_overrides(RunConfig(), d)


def test_the_cache_binarises_the_test_split_once_for_every_run():
    cache = DataCache()
    a = cache.train_data(_cfg(**{"train.seed": 1}), torch.device("cpu"))
    b = cache.train_data(_cfg(**{"train.seed": 2}), torch.device("cpu"))
    grey = cache.train_data(_cfg(**{"data.binarize": "none"}), torch.device("cpu"))
    assert _is_binary(a.x_val) and torch.equal(a.x_val, b.x_val)  # whatever the run's seed
    assert torch.equal(a.x_train, grey.x_train) and not _is_binary(grey.x_train)  # dynamic: grey kept
    assert not torch.equal(a.train_inputs(0), b.train_inputs(0))  # each run's own training samples
    static = cache.train_data(_cfg(**{"data.binarize": "static"}), torch.device("cpu"))
    assert _is_binary(static.x_train) and static.train_inputs(4) is static.x_train
    assert torch.equal(static.x_val, a.x_val)
    thr = cache.train_data(_cfg(**{"data.binarize": "threshold"}), torch.device("cpu"))
    assert torch.equal(thr.x_train, (grey.x_train >= 0.5).float())


def test_the_loop_trains_on_the_epochs_binary_sample():
    d = _data()
    rows = _EpochRows([d], d.x_train, seed=3, shuffle=True, epochs=2)
    try:
        (x_in,), y, _, order = rows.get(1)
    finally:
        rows.close()
    assert order is None and _is_binary(y) and torch.equal(x_in, y)
    assert torch.equal(y.sum(0), d.train_targets(1).sum(0))  # the epoch's sample, shuffled


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_resumed_mid_epoch_is_the_uninterrupted_run(tmp_path, family):
    over = {"model.family": family} if family == "ae" else {
        "model.family": "vae", "model.latent": 4, "model.decoder": ["16:relu", "64:sigmoid"]}
    cfg = _cfg(**over)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train_runs([cfg], [ref], device="cpu", progress=False)
    with pytest.raises(Interrupted):
        train_runs([cfg], [cut], device="cpu", progress=False, stop=StopAfter(30))  # mid epoch 2 (23 steps each)
    train_runs([cfg], [cut], device="cpu", progress=False)
    same_run(ref, cut)


def test_default_hashes_are_unchanged_and_binarising_changes_them():
    base = RunConfig()
    assert config_hash(base.with_overrides({"data.binarize": "none"})) == config_hash(base)
    assert "binarize" not in base.data.hash_fields()
    hashes = {config_hash(base.with_overrides({"data.binarize": m})) for m in ("dynamic", "static", "threshold")}
    assert len(hashes) == 3 and config_hash(base) not in hashes


@pytest.mark.parametrize("over, words", [
    ({"data.binarize": "dynamic", "data.scaling": "standard"}, "use scaling = \"unit\""),
    ({"data.binarize": "static", "data.noise_factor": 0.3}, "drop one"),
    ({"data.binarize": "sometimes"}, "binarize"),
])
def test_bad_settings_are_one_line_errors(over, words):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides(over)
    msg = str(err.value)
    assert words in msg and "\n" not in msg.strip()


def test_data_outside_the_unit_range_is_refused(tmp_path):
    table = tmp_path / "t.npy"
    np.save(table, np.linspace(-2.0, 3.0, 40 * 4, dtype=np.float32).reshape(40, 4))
    cfg = RunConfig().with_overrides({"data.dataset": str(table), "data.binarize": "dynamic"})  # unit scaling
    with pytest.raises(ConfigError, match=r"needs values in \[0, 1\]"):
        DataCache().tensors(cfg.data, torch.device("cpu"))


def test_the_cli_flag_sets_it():
    from aelab.cli import _flag_overrides, build_parser

    args = build_parser().parse_args(["train", "--binarize", "dynamic"])
    assert _flag_overrides(args)["data.binarize"] == "dynamic"
    aelab = Path(sys.executable).parent / "aelab"
    bad = subprocess.run([str(aelab), "train", "--binarize", "often"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--binarize" in bad.stderr and "dynamic" in bad.stderr
