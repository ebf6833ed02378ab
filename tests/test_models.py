"""The contract every registered model family meets (run over the whole registry)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from safetensors.torch import load, save

from aelab.config import ModelConfig
from aelab.losses import reconstruction_loss
from aelab.models import FAMILIES, build_model
from aelab.models.base import ACTIVATION_MODULES

CASES = {
    "dense": [
        ModelConfig(),
        ModelConfig(encoder="128:relu,64:relu,32:relu", decoder="64:sigmoid,128:sigmoid,784:sigmoid"),
        ModelConfig(encoder="16:tanh", decoder="784:relu", activity_l1=0.01),
    ],
}


def test_every_family_has_contract_cases():
    assert set(CASES) == set(FAMILIES)


def _cases():
    for fam, cfgs in CASES.items():
        for i, c in enumerate(cfgs):
            yield pytest.param(c, id=f"{fam}-{i}")


@pytest.mark.parametrize("cfg", list(_cases()))
def test_shapes_and_split_encoder_decoder(cfg):
    m = build_model(cfg, torch.Generator().manual_seed(0))
    x = torch.rand(5, cfg.input_dim)
    out = m(x)
    assert out.recon.shape == (5, cfg.input_dim)
    assert out.code.shape == (5, cfg.code_dim)
    assert out.penalty.shape == ()
    # the encoder and decoder work alone, as the seed uses them
    assert torch.allclose(m.decoder(m.encoder(x)), out.recon, atol=1e-6)
    if cfg.decoder[-1].activation == "sigmoid":
        assert torch.allclose(torch.sigmoid(out.logits), out.recon, atol=1e-6)
    else:
        assert out.logits is None


@pytest.mark.parametrize("cfg", list(_cases()))
def test_save_load_round_trip(cfg):
    m = build_model(cfg, torch.Generator().manual_seed(0))
    blob = save({k: v.contiguous() for k, v in m.state_dict().items()})
    m2 = build_model(cfg, torch.Generator().manual_seed(1))
    m2.load_state_dict(load(blob))
    x = torch.rand(3, cfg.input_dim)
    assert torch.equal(m(x).recon, m2(x).recon)


@pytest.mark.parametrize("cfg", list(_cases()))
def test_train_step_changes_weights_eval_does_not(cfg):
    m = build_model(cfg, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.rand(8, cfg.input_dim)
    with torch.no_grad():
        m.eval()
        m(x)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    out = m(x)
    loss = reconstruction_loss("bce", x, out.recon, out.logits) + out.penalty
    loss.backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_keras_init_is_glorot_uniform_with_zero_bias():
    m = build_model(ModelConfig(), torch.Generator().manual_seed(0))
    lin = m.linears()[0]
    limit = math.sqrt(6 / (784 + 32))
    assert lin.weight.abs().max() <= limit and lin.weight.abs().max() > 0.9 * limit
    assert torch.count_nonzero(lin.bias) == 0
    torch_init = build_model(ModelConfig(init="torch"))
    assert torch.count_nonzero(torch_init.linears()[0].bias) > 0


def test_keras_leaky_relu_slope_is_0_2():
    assert ACTIVATION_MODULES["leaky_relu"]()(torch.tensor([-1.0])).item() == pytest.approx(-0.2)
