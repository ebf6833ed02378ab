"""The fused C kernels against PyTorch: bit for bit where the contract says so, else to rounding."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from aelab import kernels as ckernels
from aelab.losses import EPS

needs_c = pytest.mark.skipif(ckernels.load() is None, reason=f"no C kernels: {ckernels.status()}")


def _data(M=3, B=5, D=784, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(M, B, D, generator=g) * 0.8 + 0.3).relu()
    a[0, 0, :6] = torch.tensor([0.0, 1e-8, 1.0, 2.0, EPS, 1.0 - 1e-8])  # clipped on both sides, and the edges
    y = torch.rand(B, D, generator=g)
    y[0, :3] = 0.0
    return a, y


def _torch_clipped(a, y, relu_out):
    p = a.clamp(EPS, 1.0 - EPS)
    yy = y.expand_as(p)
    one = torch.ones(()).expand_as(p)
    g = torch.ops.aten.binary_cross_entropy_backward(one, p, yy, None, 0).div_(a[0].numel())
    g.mul_(torch.eq(a, p))
    if relu_out:
        g = torch.ops.aten.threshold_backward(g, a, 0)
    loss = -(yy * torch.log(p) + (1 - yy) * torch.log(1 - p)).mean((1, 2))
    return g, loss


@needs_c
@pytest.mark.parametrize("relu_out", [True, False])
def test_clipped_bce_gradient_is_pytorchs_bit_for_bit(relu_out):
    a, y = _data()
    dz, loss = torch.empty_like(a), torch.empty(a.shape[0])
    ckernels.out_clipped_bce(a, y, EPS, 1.0 - EPS, relu_out, dz, loss)
    g, ref_loss = _torch_clipped(a, y, relu_out)
    assert torch.equal(dz, g)
    torch.testing.assert_close(loss, ref_loss, rtol=2e-6, atol=0)
    assert (dz[0, 0, [0, 1, 3]] == 0).all()  # clipped below (relu'd zero too) and above: no gradient


@needs_c
def test_clipped_bce_per_model_targets_and_loss_only():
    a, y = _data(M=2)
    y2 = torch.stack([y, 1 - y])
    loss = torch.empty(2)
    ckernels.out_clipped_bce(a, y2, EPS, 1.0 - EPS, True, None, loss)
    p = a.clamp(EPS, 1 - EPS)
    ref = -(y2 * p.log() + (1 - y2) * (1 - p).log()).mean((1, 2))
    torch.testing.assert_close(loss, ref, rtol=2e-6, atol=0)


@needs_c
def test_clipped_bce_nan_propagates_like_pytorch():
    a, y = _data(M=1)
    a[0, 1, 5] = float("nan")
    dz, loss = torch.empty_like(a), torch.empty(1)
    ckernels.out_clipped_bce(a, y, EPS, 1.0 - EPS, False, dz, loss)
    g, _ = _torch_clipped(a, y, False)
    assert math.isnan(float(loss[0]))
    assert torch.equal(dz.isnan(), g.isnan()) and torch.equal(dz.nan_to_num(), g.nan_to_num())


@needs_c
@pytest.mark.parametrize("D", [784, 37])  # 37: no full chunk, only the scalar tail
def test_logits_loss_matches_pytorch_and_gradient_is_autograds(D):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 6, D, generator=g) * 6  # saturating values too
    z[0, 0, :4] = torch.tensor([0.0, 90.0, -90.0, 1e-3])
    y = torch.rand(6, D, generator=g)
    dz, loss = torch.empty_like(z), torch.empty(2)
    sig = torch.sigmoid(z)
    ckernels.out_logits(z, y, loss, sig, dz)
    ref = torch.stack([F.binary_cross_entropy_with_logits(z[m], y) for m in range(2)])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=0)
    assert torch.equal(dz, (sig - y) / z[0].numel())  # the same float operations
    if D == 784:  # whole vectors only: PyTorch's sigmoid rounds alike per model and stacked
        for m in range(2):
            zz = z[m].clone().requires_grad_()
            F.binary_cross_entropy_with_logits(zz, y).backward()
            assert torch.equal(dz[m], zz.grad)
    only = torch.empty(2)
    ckernels.out_logits(z, y, only)
    assert torch.equal(only, loss)


def _adam_inputs(n=1000, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g), torch.randn(n, generator=g) * 1e-2,
            torch.randn(n, generator=g) * 1e-3, torch.rand(n, generator=g) * 1e-4)


def test_keras_adam_matches_the_formula_written_out():
    p, g, m, v = _adam_inputs(n=20_000)
    alpha, b1, b2, eps = 1e-3 * math.sqrt(1 - 0.999**3) / (1 - 0.9**3), 0.9, 0.999, 1e-7
    m_ref = m + (g - m) * (1 - b1)
    v_ref = v + (g * g - v) * (1 - b2)
    p_ref = p - (m_ref * alpha) / (v_ref.double().sqrt().float() + eps)  # IEEE (correctly rounded) sqrt
    ckernels.keras_adam_(p, g, m, v, alpha, b1, b2, eps)
    assert torch.equal(m, m_ref) and torch.equal(v, v_ref) and torch.equal(p, p_ref)


@needs_c
def test_keras_adam_c_and_fallback_agree_bit_for_bit(monkeypatch):
    a = _adam_inputs(n=50_003)  # not a multiple of the vector width
    b = [t.clone() for t in a]
    ckernels.keras_adam_(*a, 1e-3, 0.9, 0.999, 1e-7)
    monkeypatch.setattr(ckernels, "_lib", None)  # as if no compiler: the PyTorch formula
    ckernels.keras_adam_(*b, 1e-3, 0.9, 0.999, 1e-7)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("use_c", [True, False])
def test_gather_rows(monkeypatch, use_c):
    if not use_c:
        monkeypatch.setattr(ckernels, "_lib", None)
    elif ckernels.load() is None:
        pytest.skip("no C kernels")
    src = torch.randn(50, 7)
    idx = torch.randperm(50)[:20]
    assert torch.equal(ckernels.gather_rows(src, idx), src[idx])
    out = torch.full((20, 7), float("nan"))
    assert ckernels.gather_rows(src, idx, out=out) is out and torch.equal(out, src[idx])
    with pytest.raises(ValueError, match=r"out must be a contiguous torch.float32 tensor of shape \(20, 7\)"):
        ckernels.gather_rows(src, idx, out=torch.empty(20, 6))
    if use_c:
        with pytest.raises(IndexError, match="out of range"):
            ckernels.gather_rows(src, torch.tensor([3, 50]))


def test_disabled_by_environment_and_training_still_works(tmp_path):
    code = (
        "from aelab import kernels as ckernels; assert ckernels.load() is None; print(ckernels.status())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "AELAB_KERNELS": "0"}, check=True).stdout
    assert "disabled by AELAB_KERNELS=0" in out


def test_missing_compiler_is_reported_not_raised(tmp_path):
    code = "from aelab import kernels as ckernels; print(ckernels.load() is None, ckernels.status())"
    env = {**__import__("os").environ, "CC": "no-such-compiler-xyz", "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("True") and "no C compiler" in out


@needs_c
def test_library_is_cached_and_rebuilt_atomically(tmp_path):
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = "from aelab import kernels as ckernels; print(ckernels.status())"
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
        assert out.strip() == "fused C kernels"
    files = list((tmp_path / "aelab" / "kernels").iterdir())
    assert len(files) == 1 and files[0].suffix == ".so"  # one build, no temp files left


def test_unusable_cache_falls_back_with_the_reason(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should go")
    code = ("from aelab import kernels as ckernels; import torch; print(ckernels.load() is None); print(ckernels.status());"
            "p, g, m, v = (torch.ones(5) for _ in range(4)); ckernels.keras_adam_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7);"
            "print(bool(torch.isfinite(p).all()))")
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(blocker)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    lines = out.split("\n")
    assert lines[0] == "True" and lines[1].startswith("PyTorch kernels only (") and lines[2] == "True"


@needs_c
@pytest.mark.parametrize("with_penalty", [False, True])
def test_hidden_backward_is_pytorchs_per_model_activation(with_penalty):
    g = torch.Generator().manual_seed(3)
    acts = ["relu", "sigmoid", "linear"]
    z = torch.randn(3, 64, 32, generator=g)
    h = torch.stack([z[0].relu(), z[1].sigmoid(), z[2]])
    da = torch.randn(3, 64, 32, generator=g) * 1e-3
    lam = torch.tensor([0.01, 0.0, 1e-4])
    coef = lam / 64
    ref = da.clone()
    if with_penalty:
        ref += torch.sign(h) * coef.view(3, 1, 1)
    ref = torch.stack([torch.ops.aten.threshold_backward(ref[0], h[0], 0),
                       torch.ops.aten.sigmoid_backward(ref[1], h[1]), ref[2]])
    pen, loss = torch.zeros(3), torch.ones(3)
    out = ckernels.hidden_bwd(da.clone(), h, ckernels.act_codes(acts), *((coef, lam, pen, loss) if with_penalty else ()))
    assert torch.equal(out, ref)
    if with_penalty:
        want = lam * h.abs().sum((1, 2)) / 64
        torch.testing.assert_close(pen, want, rtol=1e-6, atol=0)
        torch.testing.assert_close(loss, 1 + want, rtol=1e-6, atol=0)
