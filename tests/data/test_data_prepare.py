"""aelab.data.prepare: scaling (checked by hand and against scikit-learn), reshaping and
noise (checked by hand against the same random draws)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aelab.data import add_noise, as_flat, as_images, scale
from aelab.data import prepare


def two_pixel_images(values) -> np.ndarray:
    """(N, 28, 28) uint8 images whose first two pixels are ``values`` and the rest 0."""
    x = np.zeros((len(values), 28, 28), dtype=np.uint8)
    x.reshape(len(values), -1)[:, :2] = values
    return x


# --- scale ------------------------------------------------------------------------------------

def test_unit_scaling_by_hand():
    train = two_pixel_images([[0, 255], [51, 102]])
    test = two_pixel_images([[255, 0]])
    a, b = scale(train, test, "unit")
    assert a.dtype == b.dtype == np.float32 and a.shape == (2, 784) and b.shape == (1, 784)
    assert a[:, :2].tolist() == [[0.0, 1.0], [np.float32(0.2), np.float32(0.4)]]
    assert b[0, :2].tolist() == [1.0, 0.0]
    # Identical to the Keras tutorial's x.astype("float32") / 255.
    np.testing.assert_array_equal(a, train.reshape(2, -1).astype("float32") / 255.0)


def test_minmax_fitted_on_train_by_hand():
    # pixel 0: train min 10, max 20 -> (x - 10) / 10; pixel 1: constant 5 -> range 1 -> x - 5;
    # every other pixel is constantly 0 -> x - 0.
    train = two_pixel_images([[10, 5], [20, 5], [15, 5]])
    test = two_pixel_images([[30, 7], [0, 5]])
    a, b = scale(train, test, "minmax", fit="train")
    assert a.dtype == b.dtype == np.float32
    assert a[:, :2].tolist() == [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]
    assert b[:, :2].tolist() == [[2.0, 2.0], [-1.0, 0.0]]  # test values may leave [0, 1]
    assert not a[:, 2:].any() and not b[:, 2:].any()


def test_minmax_per_split_by_hand():
    train = two_pixel_images([[10, 5], [20, 5]])
    test = two_pixel_images([[30, 7], [0, 5]])
    a, b = scale(train, test, "minmax", fit="per_split")
    assert a[:, :2].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert b[:, :2].tolist() == [[1.0, 1.0], [0.0, 0.0]]  # the test split's own min and max


@pytest.mark.parametrize("fit", ["train", "per_split"])
def test_minmax_matches_sklearn_bit_for_bit(fit, monkeypatch):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    monkeypatch.setattr(prepare, "_BLOCK_ROWS", 7)  # cross block boundaries, ragged last block
    rng = np.random.default_rng(1)
    # Ragged value ranges per pixel (some constant) so the division and the zero-range rule matter.
    train = (rng.integers(0, 256, (300, 28, 28)) * rng.random((28, 28))).astype(np.uint8)
    train[:, 0, :] = 7
    test = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    a, b = scale(train, test, "minmax", fit=fit)
    scaler = preprocessing.MinMaxScaler()
    want_a = scaler.fit_transform(train.reshape(300, -1))
    want_b = (scaler if fit == "train" else preprocessing.MinMaxScaler().fit(test.reshape(120, -1))).transform(
        test.reshape(120, -1)
    )
    np.testing.assert_array_equal(a, want_a.astype(np.float32))
    np.testing.assert_array_equal(b, want_b.astype(np.float32))


def test_scale_accepts_flat_input_and_rejects_mismatches():
    a, _ = scale(np.zeros((2, 784), np.uint8), np.zeros((1, 784), np.uint8), "minmax")
    assert a.shape == (2, 784)
    with pytest.raises(ValueError, match="features"):
        scale(np.zeros((2, 784), np.uint8), np.zeros((1, 100), np.uint8))
    with pytest.raises(ValueError, match="method"):
        scale(np.zeros((2, 784), np.uint8), np.zeros((1, 784), np.uint8), "zscore")
    with pytest.raises(ValueError, match="fit"):
        scale(np.zeros((2, 784), np.uint8), np.zeros((1, 784), np.uint8), "minmax", fit="test")
    with pytest.raises(ValueError, match="empty"):
        scale(np.zeros((0, 784), np.uint8), np.zeros((1, 784), np.uint8), "minmax")


# --- reshaping --------------------------------------------------------------------------------

def test_as_images_and_as_flat_numpy_and_torch():
    flat = np.arange(2 * 784, dtype=np.float32).reshape(2, 784)
    img = as_images(flat)
    assert img.shape == (2, 1, 28, 28) and img[1, 0, 0, 5] == 784 + 5
    np.testing.assert_array_equal(as_flat(img), flat)
    t = torch.from_numpy(flat)
    assert as_images(t).shape == (2, 1, 28, 28)
    assert torch.equal(as_flat(as_images(t)), t)
    assert as_images(np.zeros((3, 28, 28))).shape == (3, 1, 28, 28)
    assert as_images(np.zeros((0, 784))).shape == (0, 1, 28, 28)


@pytest.mark.parametrize("shape", [(2, 100), (784,), (2, 785)])
def test_as_images_rejects_non_mnist_sizes(shape):
    with pytest.raises(ValueError, match="784 pixels"):
        as_images(np.zeros(shape))


# --- noise ------------------------------------------------------------------------------------

def test_add_noise_by_hand():
    x = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    got = add_noise(x, 0.5, torch.Generator().manual_seed(3))
    expected = [min(max(xi + 0.5 * ni, 0.0), 1.0) for xi, ni in zip(x[0].tolist(), noise[0].tolist())]
    assert got[0].tolist() == pytest.approx(expected, abs=1e-7)
    assert got.dtype == x.dtype and got.shape == x.shape
    assert x.tolist() == [[0.0, 0.5, 1.0, 0.25]]  # the input is untouched


def test_add_noise_clips_and_is_reproducible():
    x = torch.full((64, 784), 0.5)
    a = add_noise(x, 10.0, torch.Generator().manual_seed(0))
    assert a.min() == 0.0 and a.max() == 1.0  # a big factor saturates both ends
    assert torch.equal(a, add_noise(x, 10.0, torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(add_noise(x, 0.5, g), add_noise(x, 0.5, g))  # per-epoch redraws differ
    assert torch.equal(add_noise(x, 0.0, torch.Generator()), x)


def test_add_noise_refuses_integer_tensors():
    with pytest.raises(ValueError, match="floating"):
        add_noise(torch.zeros(3, dtype=torch.uint8), 0.1, torch.Generator())


def test_add_noise_draws_on_the_cpu_whatever_the_device():
    """The noise is drawn as float32 on the CPU and moved: the same run draws the same noise anywhere."""
    x = torch.full((4, 5), 0.5, dtype=torch.float64)
    got = add_noise(x, 0.1, torch.Generator().manual_seed(1))
    expected = (x + 0.1 * torch.randn((4, 5), generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert torch.equal(got, expected)
