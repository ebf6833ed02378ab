"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
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


# -- the other families' terms, by hand -------------------------------------------------------------------
from aelab.losses import (bce_elementwise, contractive_autograd, contractive_dense, kl_normal_elementwise,  # noqa: E402
                          kl_sparsity, reduce_per_sample, torch_bce_elementwise)


def test_kl_of_a_normal_by_hand():
    mu = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    kl = kl_normal_elementwise(mu, logvar)
    # −½(1 + log σ² − μ² − σ²): N(0,1) → 0; μ=1, σ²=4 → −½(1 + ln4 − 1 − 4) = 2 − ½ln4; μ=2 → 2; μ=−1 → ½
    expected = torch.tensor([[0.0, 2.0 - 0.5 * math.log(4.0)], [2.0, 0.5]])
    assert torch.allclose(kl, expected, atol=1e-6)
    # keras.io: sum over latents, mean over the batch; pytorch/examples: sum over everything
    assert math.isclose(reduce_per_sample(kl, "sum_mean").item(), (expected.sum() / 2).item(), rel_tol=1e-6)
    assert math.isclose(reduce_per_sample(kl, "sum").item(), expected.sum().item(), rel_tol=1e-6)


def test_per_pixel_bce_sums_like_the_vae_references():
    y = torch.tensor([[1.0, 0.0, 0.5]])
    z = torch.tensor([[0.0, 2.0, -1.0]])
    p = torch.sigmoid(z)
    by_hand = [-math.log(0.5), -math.log(1 - p[0, 1].item()),
               -(0.5 * math.log(p[0, 2].item()) + 0.5 * math.log(1 - p[0, 2].item()))]
    assert torch.allclose(bce_elementwise(y, p, z), torch.tensor([by_hand]), atol=1e-6)
    assert math.isclose(reduce_per_sample(bce_elementwise(y, p, z), "sum_mean").item(), sum(by_hand), rel_tol=1e-6)
    # PyTorch's BCE clamps each log at −100 where Keras clips p to 1e-7
    zero = torch.tensor([[0.0]])
    assert math.isclose(torch_bce_elementwise(torch.tensor([[1.0]]), zero).item(), 100.0)
    assert math.isclose(bce_elementwise(torch.tensor([[1.0]]), zero, None).item(), -math.log(EPS), rel_tol=1e-5)


def test_contractive_closed_form_by_hand_and_against_autograd():
    torch.manual_seed(0)
    w = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])  # (K=3, D=2)
    b = torch.tensor([0.1, -0.2, 0.0])
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    h = torch.sigmoid(x @ w.T + b)
    by_hand = sum(sum((h[n, j] * (1 - h[n, j])) ** 2 * (w[j] ** 2).sum() for j in range(3)) for n in range(2)) / 2
    assert math.isclose(contractive_dense(h, w, "sigmoid").item(), by_hand.item(), rel_tol=1e-6)
    auto = contractive_autograd(lambda v: torch.sigmoid(v @ w.T + b), x)
    assert math.isclose(auto.item(), by_hand.item(), rel_tol=1e-5)
    # differentiable: it can be trained on
    wr = w.clone().requires_grad_()
    contractive_autograd(lambda v: torch.tanh(v @ wr.T), x).backward()
    assert wr.grad is not None and torch.isfinite(wr.grad).all()


def test_kl_sparsity_by_hand():
    h = torch.tensor([[0.1, 0.5], [0.3, 0.5]])  # ρ̂ = (0.2, 0.5)
    rho = 0.05
    kl = lambda r: rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r))  # noqa: E731
    assert math.isclose(kl_sparsity(h, rho).item(), kl(0.2) + kl(0.5), rel_tol=1e-6)
    assert kl_sparsity(torch.full((4, 3), rho), rho).item() == pytest.approx(0.0, abs=1e-7)
    assert math.isfinite(kl_sparsity(torch.zeros(4, 2), rho).item())  # a dead unit: large but finite


def test_torch_bce_fast_forward_keeps_pytorchs_gradient_bits():
    """The vectorised forward of PyTorch's BCE (losses._TorchBCE): the gradient is autograd's to the
    bit, the values PyTorch's to an ulp, saturated probabilities (0 and 1) clamp the log at −100."""
    import torch.nn.functional as F

    from aelab.losses import _TorchBCE, torch_bce_elementwise

    g = torch.Generator().manual_seed(5)
    z = torch.randn(32, 50, generator=g) * 12  # sigmoid saturates to exactly 0 and 1 for some
    y = torch.rand(32, 50, generator=g)
    grads, vals = [], []
    for fn in (lambda p: torch_bce_elementwise(y, p), lambda p: F.binary_cross_entropy(p, y, reduction="none")):
        zz = z.clone().requires_grad_()
        v = fn(torch.sigmoid(zz))
        v.sum().backward()
        grads.append(zz.grad)
        vals.append(v.detach())
    p = torch.sigmoid(z)
    assert bool(((p == 0) | (p == 1)).any())
    assert torch.equal(grads[0], grads[1])
    assert torch.allclose(vals[0], vals[1], rtol=3e-7, atol=1e-6)
    assert float(vals[0].max()) <= 100.0 + 1e-4  # the clamp: −log(0) would be inf
    # a hand-computed value: y = 0.25, p = 0.5 → −(0.25·log 0.5 + 0.75·log 0.5) = log 2
    one = _TorchBCE.apply(torch.tensor([0.5]), torch.tensor([0.25]))
    assert abs(float(one) - 0.6931471805599453) < 1e-7
