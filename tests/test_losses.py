"""Losses against values computed by hand."""

from __future__ import annotations

import math

import torch

from aelab.losses import EPS, activity_l1, bce_clipped, bce_from_logits, mse, reconstruction_loss


def test_bce_clipped_by_hand_including_a_relu_output_above_one():
    y = torch.tensor([[1.0, 0.0, 0.5, 1.0]])
    p = torch.tensor([[0.8, 0.1, 0.5, 1.7]], requires_grad=True)  # 1.7: a relu output above 1
    expected = -(math.log(0.8) + math.log(0.9) + (0.5 * math.log(0.5) + 0.5 * math.log(0.5))
                 + (1.0 * math.log(1 - EPS))) / 4
    loss = bce_clipped(y, p)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    # clipped values get zero gradient (Keras' clip_by_value), the others −(y/p − (1−y)/(1−p))/4
    assert p.grad[0, 3].item() == 0.0
    assert math.isclose(p.grad[0, 0].item(), -(1 / 0.8) / 4, rel_tol=1e-5)
    assert math.isclose(p.grad[0, 1].item(), (1 / 0.9) / 4, rel_tol=1e-5)


def test_bce_clipped_relu_zero_output_is_finite_and_flat():
    y = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss = bce_clipped(y, p)
    assert math.isclose(loss.item(), -(math.log(EPS) + math.log(1 - EPS)) / 2, rel_tol=1e-5)
    loss.backward()
    assert torch.equal(p.grad, torch.zeros_like(p))


def test_bce_from_logits_by_hand():
    y = torch.tensor([[1.0, 0.0, 0.25]])
    z = torch.tensor([[2.0, -1.0, 30.0]])
    per = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)), 30.0 - 0.25 * 30.0 + math.log1p(math.exp(-30.0))]
    assert math.isclose(bce_from_logits(y, z).item(), sum(per) / 3, rel_tol=1e-6)
    # the logits path stays finite where probabilities would saturate
    assert math.isfinite(bce_from_logits(torch.zeros(1, 1), torch.tensor([[200.0]])).item())


def test_reconstruction_loss_takes_logits_when_available():
    y = torch.rand(3, 5)
    z = torch.randn(3, 5)
    assert torch.allclose(reconstruction_loss("bce", y, torch.sigmoid(z), z), bce_from_logits(y, z))
    assert torch.allclose(reconstruction_loss("bce", y, torch.sigmoid(z), None), bce_clipped(y, torch.sigmoid(z)), atol=1e-6)


def test_mse_and_activity_l1_by_hand():
    y = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    p = torch.tensor([[1.0, 1.0], [0.0, 0.5]])
    assert math.isclose(mse(y, p).item(), (1 + 0 + 0.25 + 0) / 4)
    h = torch.tensor([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]])
    # Keras: λ·Σ|h| / batch size = 0.01 · 6 / 2
    assert math.isclose(activity_l1(h, 0.01).item(), 0.03, rel_tol=1e-6)
