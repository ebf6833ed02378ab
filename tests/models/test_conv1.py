"""The one-output-channel convolution kernels (models/conv1.py, engine/_kernels.c's conv1_*)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aelab import kernels as ckernels
from aelab.models import conv1
from aelab.models.layers import KerasConv2d, KerasConvTranspose2d

pytestmark = pytest.mark.skipif(ckernels.load() is None, reason=f"no C kernels: {ckernels.why_not()}")


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _grads(fn, x, w, b, g):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = fn(x, w, b)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


@pytest.mark.parametrize("n,c,h,w,k,pad", [(3, 16, 28, 28, 3, 1), (2, 32, 7, 9, 3, 0), (1, 16, 6, 5, 5, 2),
                                           (2, 48, 4, 4, 3, 2), (5, 16, 14, 14, 1, 0)])
def test_matches_the_convolution_in_double_precision(n, c, h, w, k, pad):
    g0 = torch.Generator().manual_seed(n * 100 + c + k)
    x = _cl(torch.randn(n, c, h, w, generator=g0))
    wt = torch.randn(1, c, k, k, generator=g0)
    b = torch.randn(1, generator=g0)
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    g = torch.randn(n, 1, oh, ow, generator=g0)
    assert conv1.applies(x, wt, c, 1, (1, 1), (1, 1), 1, (pad, pad))
    mine = _grads(lambda x_, w_, b_: conv1.conv1(x_, w_, b_, pad), x, wt, b, g)
    ref = _grads(lambda x_, w_, b_: F.conv2d(x_, w_, b_, 1, pad), x.double(), wt.double(), b.double(), g.double())
    for a, r, name in zip(mine, ref, ("y", "gx", "gw", "gb")):
        assert a.shape == r.shape, name
        assert a.dtype == torch.float32
        # float32 sums of up to n·oh·ow terms against the float64 reference: a few ulp of the magnitudes summed
        tol = 1e-5 * float(r.abs().max()) + 1e-5
        assert float((a.double() - r).abs().max()) <= tol, name


def test_the_thread_count_changes_no_bit():
    g0 = torch.Generator().manual_seed(7)
    x = _cl(torch.randn(9, 32, 12, 12, generator=g0))
    w = torch.randn(1, 32, 3, 3, generator=g0)
    b = torch.randn(1, generator=g0)
    g = torch.randn(9, 1, 12, 12, generator=g0)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _grads(lambda x_, w_, b_: conv1.conv1(x_, w_, b_, 1), x, w, b, g)
        torch.set_num_threads(2)
        two = _grads(lambda x_, w_, b_: conv1.conv1(x_, w_, b_, 1), x, w, b, g)
    finally:
        torch.set_num_threads(old)
    for a, b_ in zip(one, two):
        assert torch.equal(a, b_)


def _close(a: torch.Tensor, r: torch.Tensor, rel: float = 2e-5) -> bool:
    """Equal to float32 rounding of sums: within ``rel`` of the largest magnitude (a gradient entry
    near zero is a difference of large terms, so an elementwise relative test would not fit)."""
    return a.shape == r.shape and float((a - r).abs().max()) <= rel * float(r.abs().max()) + 1e-6


def _layer_pair(monkeypatch, layer, x):
    """The layer's output and gradients with the C kernels, then with PyTorch's convolution."""
    out = []
    for flag in ("1", "0"):
        monkeypatch.setenv("AELAB_CONV1", flag)
        layer.zero_grad(set_to_none=True)
        xi = x.detach().clone().requires_grad_()
        y = layer(xi)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(11)))
        out.append((y.detach(), xi.grad, layer.weight.grad.clone(), layer.bias.grad.clone()))
    return out


def test_keras_conv_layer_same_padding(monkeypatch):
    torch.manual_seed(0)
    layer = KerasConv2d(16, 1, 3, keras_padding="same")
    x = torch.rand(4, 16, 28, 28)
    fast, ref = _layer_pair(monkeypatch, layer, x)
    assert fast[0].shape == (4, 1, 28, 28)
    for a, r in zip(fast, ref):
        assert _close(a, r)


def test_keras_transposed_conv_stride_one_is_the_flipped_convolution(monkeypatch):
    torch.manual_seed(1)
    layer = KerasConvTranspose2d(32, 1, 3, stride=1, keras_padding="same")
    x = torch.rand(3, 32, 28, 28)
    fast, ref = _layer_pair(monkeypatch, layer, x)
    assert fast[0].shape == ref[0].shape == (3, 1, 28, 28)
    for a, r in zip(fast, ref):
        assert _close(a, r)
    # "valid": no crop, padding k − 1 (the full transposed output)
    layer = KerasConvTranspose2d(16, 1, 3, stride=1, keras_padding="valid")
    fast, ref = _layer_pair(monkeypatch, layer, torch.rand(2, 16, 5, 6))
    assert fast[0].shape == ref[0].shape == (2, 1, 7, 8)
    for a, r in zip(fast, ref):
        assert _close(a, r)


def test_not_used_where_it_does_not_apply():
    x = _cl(torch.rand(2, 8, 10, 10))
    assert not conv1.applies(x, torch.rand(1, 8, 3, 3), 8, 1, (1, 1), (1, 1), 1, (1, 1))  # 8 channels
    x = _cl(torch.rand(2, 16, 10, 10))
    assert not conv1.applies(x, torch.rand(2, 16, 3, 3), 16, 2, (1, 1), (1, 1), 1, (1, 1))  # 2 outputs
    assert not conv1.applies(x, torch.rand(1, 16, 3, 3), 16, 1, (2, 2), (1, 1), 1, (1, 1))  # stride 2
    assert not conv1.applies(x, torch.rand(1, 16, 3, 3), 16, 1, (1, 1), (1, 1), 1, (1, 0))  # uneven padding
    assert not conv1.applies(x.double(), torch.rand(1, 16, 3, 3).double(), 16, 1, (1, 1), (1, 1), 1, (1, 1))


def test_second_derivative_goes_through_pytorch(monkeypatch):
    """A penalty on the input gradient (as a contractive term would take) differentiates again."""
    torch.manual_seed(2)
    layer = KerasConv2d(16, 1, 3, keras_padding="same")
    x0 = torch.rand(2, 16, 6, 6)
    res = []
    for flag in ("1", "0"):
        monkeypatch.setenv("AELAB_CONV1", flag)
        layer.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_()
        y = torch.sigmoid(layer(x))
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        gx.square().sum().backward()
        res.append(layer.weight.grad.clone())
    assert _close(res[0], res[1])
    assert float(res[0].abs().max()) > 0


def test_a_conv_autoencoder_trains_the_same_with_and_without(monkeypatch):
    from aelab.engine.steppers import ModelSpec, PlainStepper
    from aelab.presets import load_preset

    cfg = load_preset("keras-blog-conv")
    spec = ModelSpec(cfg.model, "bce", init_seed=3)
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(4)).view(64, -1)
    losses = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("AELAB_CONV1", flag)
        st = PlainStepper(spec, 1e-3, 0.9, 0.999, 1e-7, "cpu", num_threads=1)
        loss, pen = torch.zeros(1), torch.zeros(1)
        hist = []
        for i in range(6):
            st.train_step([x], x, slice((i % 2) * 32, (i % 2) * 32 + 32), loss, pen)
            hist.append(float(loss[0]))
        losses[flag] = hist
    assert losses["1"][-1] < losses["1"][0]
    for a, b in zip(losses["1"], losses["0"]):
        assert abs(a - b) <= 1e-5 * abs(b)
