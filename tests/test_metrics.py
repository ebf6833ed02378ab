"""Tests for aelab.metrics: hand-computed values, skimage as the SSIM reference, evaluate()."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from aelab import metrics as M

FORMATS_KEYS = {"n_test", "bce", "mse", "psnr", "ssim", "code", "diversity"}
CODE_KEYS = {"units", "dead_units", "dead_fraction", "mean_activation", "zero_fraction"}
NOISY_KEYS = {"bce", "mse", "psnr", "ssim", "diversity", "input_psnr", "input_ssim"}


def _skimage_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> np.ndarray:
    """Reference: skimage on every image pair, in float64."""
    a = a.reshape(-1, 28, 28).double().numpy()
    b = b.reshape(-1, 28, 28).double().numpy()
    return np.array(
        [
            structural_similarity(
                p, q, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for p, q in zip(a, b)
        ]
    )


def _digits() -> torch.Tensor:
    """Real handwritten digits: sklearn's 8x8 digits upscaled 3x and padded to 28x28, in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits().images[:60] / 16.0
    up = np.kron(d, np.ones((1, 3, 3)))  # (60, 24, 24)
    up = np.pad(up, ((0, 0), (2, 2), (2, 2)))
    return torch.from_numpy(up).float().reshape(-1, 784)


def _blur(x: torch.Tensor) -> torch.Tensor:
    img = x.reshape(-1, 1, 28, 28)
    k = torch.ones(1, 1, 3, 3) / 9.0
    return torch.nn.functional.conv2d(img, k, padding=1).reshape(-1, 784)


# ------------------------------------------------------------------------------------- BCE


def test_bce_two_pixels_by_hand_with_clipped_prediction_above_one():
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    p = torch.tensor([[0.8, 1.5]], dtype=torch.float64)  # 1.5 (a relu output) clips to 1 - 1e-7
    # pixel 1: -log(0.8); pixel 2: -log(1 - (1 - 1e-7)) = -log(1e-7) = 7 ln 10
    expected = (-math.log(0.8) + 7 * math.log(10)) / 2  # = 8.170619...
    got = M.bce_per_image(y, p)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert M.bce(y, p) == pytest.approx(expected, rel=1e-9)


def test_bce_clips_zero_and_negative_predictions():
    y = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    p = torch.tensor([[-0.3, 0.5]], dtype=torch.float64)  # -0.3 clips to 1e-7
    expected = (7 * math.log(10) + math.log(2)) / 2
    assert M.bce(y, p) == pytest.approx(expected, rel=1e-9)


def test_bce_per_image_and_mean():
    y = torch.tensor([[0.5, 0.5], [1.0, 1.0]])
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    got = M.bce_per_image(y, p)
    assert got.tolist() == pytest.approx([math.log(2), math.log(2)], rel=1e-6)
    assert M.bce(y, p) == pytest.approx(math.log(2), rel=1e-6)


def test_bce_matches_the_textbook_formula_on_random_data():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(20, 784, generator=g, dtype=torch.float64)
    p = torch.rand(20, 784, generator=g, dtype=torch.float64) * 1.2 - 0.1
    q = p.clamp(1e-7, 1 - 1e-7)
    ref = -(y * torch.log(q) + (1 - y) * torch.log(1 - q)).mean(dim=1)
    torch.testing.assert_close(M.bce_per_image(y, p), ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ MSE / PSNR


def test_mse_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.5]])
    y = torch.tensor([[0.0, 0.0, 1.0, 0.5]])
    assert M.mse_per_image(x, y).tolist() == pytest.approx([0.3125])
    assert M.mse(x, y) == pytest.approx(0.3125)


def test_psnr_of_a_known_mse():
    x = torch.zeros(2, 784)
    y = torch.full((2, 784), 0.1)  # mse = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert M.psnr_per_image(x, y).tolist() == pytest.approx([20.0, 20.0], abs=1e-5)
    # data_range 2: 10 log10(4 / 0.01) = 26.0206 dB
    assert M.psnr(x, y, data_range=2.0) == pytest.approx(10 * math.log10(400.0), abs=1e-5)


def test_psnr_identical_images_is_finite():
    x = torch.rand(3, 784)
    got = M.psnr_per_image(x, x)
    assert torch.isfinite(got).all()
    assert got.tolist() == pytest.approx([100.0] * 3)  # mse floored at 1e-10


# ------------------------------------------------------------------------------------ SSIM


def test_ssim_identical_images_is_one():
    x = torch.cat([_digits()[:5], torch.rand(5, 784), torch.zeros(1, 784), torch.ones(1, 784)])
    got = M.ssim_per_image(x, x)
    assert got.shape == (12,)
    torch.testing.assert_close(got, torch.ones(12, dtype=torch.float64), rtol=0, atol=1e-6)


def test_ssim_of_constant_images_by_hand():
    # No variance anywhere: S = (2ab + C1) / (a^2 + b^2 + C1) with C1 = 1e-4.
    a = torch.full((1, 784), 0.2, dtype=torch.float64)
    b = torch.full((1, 784), 0.4, dtype=torch.float64)
    expected = (2 * 0.2 * 0.4 + 1e-4) / (0.2**2 + 0.4**2 + 1e-4)
    assert M.ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert M.ssim(a.float(), b.float()) == pytest.approx(expected, abs=1e-7)  # float64 inside


def test_ssim_matches_skimage_on_random_images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 784, generator=g)
    y = (x + 0.3 * torch.randn(40, 784, generator=g)).clamp(0, 1)
    z = torch.rand(40, 784, generator=g)
    for a, b in ((x, y), (x, z)):
        np.testing.assert_allclose(M.ssim_per_image(a, b).numpy(), _skimage_ssim(a, b), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["blur", "noise", "shift", "other_digit", "threshold", "dim"])
def test_ssim_matches_skimage_on_digits(kind):
    x = _digits()
    g = torch.Generator().manual_seed(2)
    y = {
        "blur": _blur(x),
        "noise": (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1),
        "shift": torch.roll(x.reshape(-1, 28, 28), shifts=(1, 2), dims=(1, 2)).reshape(-1, 784),
        "other_digit": torch.roll(x, 1, dims=0),
        "threshold": (x > 0.5).float(),
        "dim": 0.6 * x + 0.1,
    }[kind]
    got = M.ssim_per_image(x, y)
    ref = _skimage_ssim(x, y)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-4)
    # computed in float64 whatever the input dtype: agreement to rounding
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-10)


def test_ssim_float32_input_is_exact_on_nearly_white_images():
    # E[x^2] - E[x]^2 cancels worst near 1 (float32 would be off by ~3e-5 here).
    g = torch.Generator().manual_seed(3)
    x = torch.ones(20, 784)
    y = 1.0 - 1e-3 * torch.rand(20, 784, generator=g)
    w = torch.full((20, 784), 0.999)
    w[:, 400] = 1.0
    for a, b in ((x, y), (w, x)):
        np.testing.assert_allclose(M.ssim_per_image(a, b).numpy(), _skimage_ssim(a, b), rtol=0, atol=1e-8)


def test_ssim_data_range_matches_skimage():
    x = _digits()[:10] * 255.0
    y = _blur(x)
    np.testing.assert_allclose(
        M.ssim_per_image(x, y, data_range=255.0).numpy(), _skimage_ssim(x, y, data_range=255.0), atol=1e-4
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sparsity=st.floats(0.0, 0.95), noise=st.floats(0.0, 1.0))
def test_ssim_matches_skimage_property(seed, sparsity, noise):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 784, generator=g) * (torch.rand(4, 784, generator=g) > sparsity)
    y = (x + noise * torch.randn(4, 784, generator=g)).clamp(0, 1)
    np.testing.assert_allclose(M.ssim_per_image(x, y).numpy(), _skimage_ssim(x, y), rtol=0, atol=1e-4)


def test_ssim_is_symmetric_and_accepts_image_shaped_input():
    x, y = _digits()[:8], _blur(_digits()[:8])
    torch.testing.assert_close(M.ssim_per_image(x, y), M.ssim_per_image(y, x), rtol=0, atol=1e-7)
    torch.testing.assert_close(
        M.ssim_per_image(x.reshape(-1, 28, 28), y.reshape(-1, 28, 28)), M.ssim_per_image(x, y)
    )


def test_ssim_rejects_non_square_flat_images_and_mismatched_shapes():
    with pytest.raises(ValueError, match="square"):
        M.ssim_per_image(torch.zeros(2, 780), torch.zeros(2, 780))
    with pytest.raises(ValueError, match="same shape"):
        M.ssim_per_image(torch.zeros(2, 784), torch.zeros(3, 784))


def test_ssim_chunking_does_not_change_values():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(M._SSIM_CHUNK * 2 + 3, 784, generator=g)
    y = _blur(x)
    full = M.ssim_per_image(x, y)
    parts = torch.cat([M.ssim_per_image(x[i : i + 7], y[i : i + 7]) for i in range(0, x.shape[0], 7)])
    torch.testing.assert_close(full, parts)


# ---------------------------------------------------------------------------------- codes


def test_code_stats_on_a_hand_built_code_matrix():
    h = torch.tensor(
        [
            # relu never active | saturated sigmoid | alive | alive relu | flat within 1e-6 | alive (2e-6)
            [0.0, 1.0, 0.5, 2.0, 0.3, 0.0],
            [0.0, 1.0, 0.7, 0.0, 0.3 + 5e-7, 2e-6],
            [0.0, 1.0, 0.2, 5.0, 0.3, 0.0],
        ],
        dtype=torch.float64,
    )
    s = M.code_stats(h)
    assert s == {
        "units": 6,
        "dead_units": 3,
        "dead_fraction": pytest.approx(0.5),
        "mean_activation": pytest.approx((0 + 3 + 1.4 + 7 + 0.9 + 5e-7 + 2e-6) / 18),
        "zero_fraction": pytest.approx(6 / 18),  # col 0 (3) + col 3 (1) + col 5 (2)
    }
    assert type(s["units"]) is int and type(s["dead_units"]) is int
    assert all(type(s[k]) is float for k in ("dead_fraction", "mean_activation", "zero_fraction"))


def test_code_stats_all_alive_and_all_dead():
    alive = M.code_stats(torch.eye(4))
    assert alive["dead_units"] == 0 and alive["zero_fraction"] == pytest.approx(0.75)
    dead = M.code_stats(torch.full((10, 3), 0.5))
    assert dead["dead_units"] == 3 and dead["dead_fraction"] == 1.0 and dead["mean_activation"] == 0.5


# ------------------------------------------------------------------------------ diversity


def test_diversity_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [100.0, 100.0]])
    # first 3: pairwise distances 3, 4, 5 (mean 4); recon = x / 2 -> mean 2
    assert M.diversity(x, x / 2, n=3) == pytest.approx(0.5, abs=1e-12)


def test_diversity_is_zero_for_identical_reconstructions():
    x = _digits()
    recon = x[:1].expand_as(x)  # the same smudge for every digit
    assert M.diversity(x, recon) == 0.0


def test_diversity_is_one_when_recon_equals_x():
    x = _digits()
    assert M.diversity(x, x.clone()) == pytest.approx(1.0, abs=1e-12)


def test_diversity_uses_only_the_first_n_images():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(30, 784, generator=g)
    r = torch.rand(30, 784, generator=g)
    r2 = r.clone()
    r2[10:] = 0.0
    assert M.diversity(x, r, n=10) == M.diversity(x, r2, n=10)
    assert M.diversity(x, r, n=10) != M.diversity(x, r2, n=11)


def test_diversity_degenerate_cases():
    same = torch.ones(5, 784)
    assert math.isnan(M.diversity(same, same))
    with pytest.raises(ValueError, match="at least 2"):
        M.diversity(torch.rand(1, 784), torch.rand(1, 784))


# ------------------------------------------------------------------------------- evaluate


class _TinyAE(torch.nn.Module):
    def __init__(self, k: int = 16, out_act: str = "sigmoid"):
        super().__init__()
        g = torch.Generator().manual_seed(6)
        self.enc = torch.nn.Linear(784, k)
        self.dec = torch.nn.Linear(k, 784)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            self.enc.weight[:3] = 0.0  # three relu units that never fire
            self.enc.bias[:3] = -1.0
        self.out_act = out_act

    def encode(self, x):
        return torch.relu(self.enc(x))

    def decode(self, h):
        y = self.dec(h)
        return torch.sigmoid(y) if self.out_act == "sigmoid" else torch.relu(y)


def _data(n: int = 300):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, 784, generator=g) * (torch.rand(n, 784, generator=g) > 0.8)
    xn = (x + 0.5 * torch.randn(n, 784, generator=g)).clamp(0, 1)
    return x, xn


def test_evaluate_keys_types_and_json_match_docs_formats():
    model = _TinyAE()
    x, _ = _data()
    res = M.evaluate(model.encode, model.decode, x)
    assert set(res) == FORMATS_KEYS
    assert set(res["code"]) == CODE_KEYS
    assert type(res["n_test"]) is int and res["n_test"] == 300
    assert type(res["code"]["units"]) is int and type(res["code"]["dead_units"]) is int
    for k in ("bce", "mse", "psnr", "ssim", "diversity"):
        assert type(res[k]) is float
    assert res["code"]["units"] == 16 and res["code"]["dead_units"] == 3
    assert json.loads(json.dumps(res, allow_nan=False)) == res


def test_evaluate_values_equal_the_metric_functions():
    model = _TinyAE()
    x, _ = _data()
    res = M.evaluate(model.encode, model.decode, x, batch_size=64)
    with torch.no_grad():
        h = model.encode(x)
        r = model.decode(h)
    assert res["bce"] == pytest.approx(M.bce(x, r), rel=1e-6)
    assert res["mse"] == pytest.approx(M.mse(x, r), rel=1e-6)
    assert res["psnr"] == pytest.approx(M.psnr(x, r), rel=1e-6)
    assert res["ssim"] == pytest.approx(M.ssim(x, r), rel=1e-6)
    assert res["diversity"] == pytest.approx(M.diversity(x, r), rel=1e-6)
    assert res["code"] == pytest.approx(M.code_stats(h))


def test_evaluate_does_not_depend_on_batch_size():
    model = _TinyAE()
    x, xn = _data(257)
    a = M.evaluate(model.encode, model.decode, x, x_test_noisy=xn, batch_size=2000)
    b = M.evaluate(model.encode, model.decode, x, x_test_noisy=xn, batch_size=10)
    assert a["code"] == pytest.approx(b["code"], rel=1e-6)
    for block in (a, a["noisy"]):
        other = b if block is a else b["noisy"]
        for k in ("bce", "mse", "psnr", "ssim", "diversity"):
            assert block[k] == pytest.approx(other[k], rel=1e-6), k


def test_evaluate_relu_output_bce_uses_raw_output_others_use_clipped():
    x, _ = _data(50)
    encode = lambda b: b  # noqa: E731  identity code
    decode = lambda h: 2.0 * h  # noqa: E731  a relu-like output that exceeds 1
    res = M.evaluate(encode, decode, x)
    raw = 2.0 * x
    assert res["bce"] == pytest.approx(M.bce(x, raw), rel=1e-6)
    assert res["mse"] == pytest.approx(M.mse(x, raw.clamp(0, 1)), rel=1e-6)
    assert res["mse"] != pytest.approx(M.mse(x, raw), rel=1e-3)
    assert res["ssim"] == pytest.approx(M.ssim(x, raw.clamp(0, 1)), rel=1e-6)


def test_evaluate_perfect_autoencoder():
    x, _ = _data(100)
    res = M.evaluate(lambda b: b, lambda h: h, x)
    assert res["mse"] == 0.0
    assert res["psnr"] == pytest.approx(100.0)
    assert res["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert res["diversity"] == pytest.approx(1.0, abs=1e-12)
    assert res["bce"] == pytest.approx(M.bce(x, x))


def test_evaluate_noisy_block():
    x, xn = _data()
    # identity model: the reconstruction of the noisy input is the noisy input
    res = M.evaluate(lambda b: b, lambda h: h, x, x_test_noisy=xn)
    assert set(res) == FORMATS_KEYS | {"noisy"}
    assert set(res["noisy"]) == NOISY_KEYS
    assert all(type(v) is float for v in res["noisy"].values())
    n = res["noisy"]
    assert n["input_psnr"] == pytest.approx(M.psnr(x, xn), rel=1e-6)
    assert n["input_ssim"] == pytest.approx(M.ssim(x, xn), rel=1e-6)
    assert n["psnr"] == pytest.approx(n["input_psnr"], rel=1e-6)
    assert n["mse"] == pytest.approx(M.mse(x, xn), rel=1e-6)
    assert n["bce"] == pytest.approx(M.bce(x, xn), rel=1e-6)
    assert n["diversity"] == pytest.approx(M.diversity(x, xn), rel=1e-9)
    assert n["ssim"] < res["ssim"]
    json.dumps(res, allow_nan=False)


def test_what_depends_on_the_test_images_alone_is_computed_once_to_the_bit(monkeypatch):
    """The originals' spread, their SSIM moments and the noisy inputs' PSNR/SSIM are kept by the
    images' content: a second model on the same images reuses them and gets the numbers it would
    have computed; other images (one value changed) are computed afresh."""
    x, xn = _data(600)
    monkeypatch.setattr(M, "_MEMO", type(M._MEMO)())
    calls = {"spread": 0, "moments": 0, "input": 0}
    for name, key in (("_mean_offdiag_distance", "spread"), ("_ssim_moments", "moments"), ("_input_quality", "input")):
        real = getattr(M, name)
        monkeypatch.setattr(M, name, lambda *a, _r=real, _k=key, **k: calls.__setitem__(_k, calls[_k] + 1) or _r(*a, **k))

    def model(scale):
        return (lambda b: b[:, :16]), (lambda h: (h.repeat(1, 49) * scale).clamp(0, 1))

    first = M.evaluate(*model(0.9), x, x_test_noisy=xn, sample_shape=(1, 28, 28))
    # the spread: the originals' once, and the two reconstructions' (clean and noisy inputs)
    assert calls == {"spread": 3, "moments": 1, "input": 1}
    second = M.evaluate(*model(0.7), x, x_test_noisy=xn, sample_shape=(1, 28, 28))
    assert calls == {"spread": 5, "moments": 1, "input": 1}  # only the model's own numbers again
    monkeypatch.setattr(M, "_MEMO", type(M._MEMO)())
    assert M.evaluate(*model(0.7), x, x_test_noisy=xn, sample_shape=(1, 28, 28)) == second
    assert second["noisy"]["input_ssim"] == first["noisy"]["input_ssim"] and second["ssim"] != first["ssim"]
    x2 = x.clone()
    x2[0, 300] = 1.0 - x2[0, 300]
    M.evaluate(*model(0.7), x2, x_test_noisy=xn, sample_shape=(1, 28, 28))
    assert calls["moments"] == 3 and calls["input"] == 3


def test_evaluate_runs_in_inference_mode_and_leaves_grad_mode_alone():
    seen = []

    def encode(b):
        seen.append(torch.is_inference_mode_enabled())
        return b[:, :8]

    res = M.evaluate(encode, lambda h: h.repeat(1, 98), _data(20)[0], batch_size=8)
    assert seen == [True, True, True]
    assert res["code"]["units"] == 8
    assert not torch.is_inference_mode_enabled()


def test_evaluate_rejects_bad_shapes():
    x, _ = _data(10)
    with pytest.raises(ValueError, match="decode output"):
        M.evaluate(lambda b: b, lambda h: h[:, :100], x)
    with pytest.raises(ValueError, match="x_test_noisy"):
        M.evaluate(lambda b: b, lambda h: h, x, x_test_noisy=x[:5])


# ---------------------------------------------------------------------------------- docs


def test_metric_docs_cover_every_metric_as_one_paragraph():
    required = {"bce", "mse", "psnr", "ssim", "dead_units", "mean_activation", "zero_fraction", "diversity", "noisy"}
    assert required <= set(M.METRIC_DOCS)
    for key, text in M.METRIC_DOCS.items():
        assert isinstance(text, str) and len(text) > 80, key
        assert "\n" not in text, key
        assert re.match(r"[A-Z]", text) and text.rstrip().endswith("."), key


def test_module_docstring_says_what_belongs_here():
    assert M.__doc__ and "belongs" in M.__doc__
