"""Your own encoder and decoder (aelab.models.custom): trained with aelab's objectives, resumed bit
for bit, opened again only with the same modules, and usable by everything a built-in run is."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import aelab
import aelab.export
from aelab.analysis.latent import analyse
from aelab.errors import ConfigError
from aelab.models import FAMILIES, custom
from aelab.runs import Stop

from conftest import same_run


class Enc(nn.Module):
    """A small convolutional encoder of 8×8 digits, as a user writes one."""

    def __init__(self, out: int = 6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, out)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class Dec(nn.Module):
    def __init__(self, code: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(code, 64)

    def forward(self, z):
        return self.fc(z).reshape(-1, 1, 8, 8)  # logits: aelab applies the sigmoid


def _pair(code=6, vae=False):
    torch.manual_seed(0)
    return Enc(2 * code if vae else code), Dec(code)


@pytest.fixture(autouse=True)
def _forget_custom_families():
    yield
    for name in custom.CUSTOM_FAMILIES:  # the shipped registry lists what builds from a config alone
        FAMILIES.pop(name, None)


def _cfg(family, epochs=2, **kw):
    # a config naming the family makes it known (FAMILIES lists only the shipped ones until then)
    base = {"model.family": family, "model.decoder_output": "logits", "data.dataset": "digits",
            "data.limit": 300, "data.test_limit": 100, "train.epochs": epochs, "train.batch_size": 32, **kw}
    return aelab.fit_config(aelab.RunConfig().with_overrides(base))


@pytest.mark.parametrize("family,vae", [("custom", False), ("custom_vae", True)])
def test_your_modules_train_with_aelabs_objective_and_open_again_only_with_the_same_modules(tmp_path, family, vae):
    enc, dec = _pair(vae=vae)
    run = aelab.train(_cfg(family), tmp_path / "r", modules=(enc, dec), figures=False)
    assert run.history["loss"][-1] < run.history["loss"][0]  # it learns
    assert set(run.history["terms"]) == ({"reconstruction", "kl"} if vae else {"reconstruction"})
    m = run.config.model
    assert (m.latent, m.encoder_class) == (6, f"{Enc.__module__}.Enc") and m.modules == custom.fingerprint(enc, dec)
    rec = json.loads((tmp_path / "r" / "run.json").read_text())
    assert rec["outside_code"] == {"encoder": f"{Enc.__module__}.Enc", "decoder": f"{Dec.__module__}.Dec"}
    assert torch.equal(enc.fc.weight, _pair(vae=vae)[0].fc.weight)  # the user's modules are not trained in place
    x = aelab.data.load(run.config.data).x_test[:5]
    assert run.encode(x).shape == (5, 6) and run.reconstruct(x).shape == x.shape
    assert ("samples" in run.metrics) == vae  # a VAE objective's prior samples are measured
    if not vae:  # and the run leaves Python as any other: ONNX Runtime's graphs agree with the modules
        paths = aelab.export.to_onnx(run)
        z = ort.InferenceSession(str(paths["encoder"])).run(None, {"x": x.astype(np.float32) / 16})[0]
        np.testing.assert_allclose(z, run.encode(x), rtol=1e-5, atol=1e-5)
        latent = analyse(tmp_path / "r", modules=_pair(), methods=["pca"], baselines=False)  # aelab latent's
        assert latent["code_dims"] == 6 and "map" in latent["figures"]

    again = aelab.open_run(tmp_path / "r", modules=_pair(vae=vae))  # other weights, same classes and shapes
    np.testing.assert_array_equal(again.encode(x), run.encode(x))
    FAMILIES.pop(family)  # a fresh process: nothing registered
    custom.PAIRS.clear()
    with pytest.raises(ConfigError, match=r"your own modules \(.*Enc, .*Dec\).*modules=\(encoder, decoder\)"):
        aelab.open_run(tmp_path / "r")
    with pytest.raises(ConfigError, match="not the modules"):
        aelab.open_run(tmp_path / "r", modules=(Enc(7), Dec(7)))
    with pytest.raises(ConfigError, match="your own modules"):  # aelab latent on it says what it needs
        analyse(tmp_path / "r")


def test_a_run_of_your_modules_resumes_bit_for_bit_after_a_stop(tmp_path):
    cfg = _cfg("custom_vae", epochs=3)
    whole = aelab.train(cfg, tmp_path / "whole", modules=_pair(vae=True), figures=False)
    stop = Stop()

    def after_one(ev):
        if type(ev).__name__ == "EpochEnded" and ev.epoch == 1:
            stop.set()

    with pytest.raises(aelab.runs.Interrupted):
        aelab.train(cfg, tmp_path / "cut", modules=_pair(vae=True), figures=False, on_event=after_one, stop=stop)
    aelab.train(cfg, tmp_path / "cut", modules=_pair(vae=True), figures=False)
    same_run(whole.run_dir, tmp_path / "cut")


def test_modules_that_do_not_fit_are_one_line(tmp_path):
    cfg = _cfg("custom")
    with pytest.raises(ConfigError, match="the decoder gives 10 values per sample but a sample has 64"):
        aelab.train(cfg, tmp_path / "a", modules=(Enc(), nn.Linear(6, 10)))
    with pytest.raises(ConfigError, match="encoder .*cannot take samples of shape"):
        aelab.train(cfg, tmp_path / "b", modules=(nn.Linear(5, 6), Dec()))
    with pytest.raises(ConfigError, match="must be a torch.nn.Module"):
        aelab.train(cfg, tmp_path / "c", modules=("enc", Dec()))
    with pytest.raises(ConfigError, match="set model.family to 'custom'"):
        aelab.train(aelab.fit_config(aelab.RunConfig().with_overrides({"data.dataset": "digits"})), tmp_path / "d",
                    modules=_pair())
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing written
