"""A small synthetic stand-in for MNIST: 28×28 uint8 "digits" for tests and offline demos.

Ten prototype shapes (unions of random line strokes, drawn from a fixed seed) are shifted by up
to two pixels and given a random stroke intensity per image. Deterministic, instant, and
structured enough that an autoencoder's loss falls and its reconstructions differ per class.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .dataset import SAMPLES, Dataset
from .source import DataOptions, Source, SourceOptions


def _prototypes(rng: np.random.Generator) -> np.ndarray:
    protos = np.zeros((10, 28, 28), dtype=np.float32)
    yy, xx = np.mgrid[0:28, 0:28]
    for c in range(10):
        for _ in range(3):
            (x0, y0), (x1, y1) = rng.uniform(6, 22, size=(2, 2))
            # distance from each pixel to the segment, turned into a soft stroke
            px, py = xx - x0, yy - y0
            dx, dy = x1 - x0, y1 - y0
            t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
            d = np.hypot(px - t * dx, py - t * dy)
            protos[c] = np.maximum(protos[c], np.clip(1.5 - d / 1.2, 0, 1))
    return protos


def synthetic_digits(n_train: int, n_test: int, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: uint8 images (N, 28, 28) and uint8 labels (N,)."""
    rng = np.random.default_rng(seed)
    protos = _prototypes(rng)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        shifts = rng.integers(-2, 3, size=(n, 2))
        gain = rng.uniform(0.6, 1.0, size=(n, 1, 1)).astype(np.float32)
        x = protos[y]
        out = np.empty_like(x)
        for sx in range(-2, 3):
            for sy in range(-2, 3):
                sel = (shifts[:, 0] == sx) & (shifts[:, 1] == sy)
                if sel.any():
                    out[sel] = np.roll(x[sel], (sy, sx), axis=(1, 2))
        return np.round(out * gain * 255).astype(np.uint8), y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return xtr, ytr, xte, yte


class SyntheticOptions(SourceOptions):
    """No options: its size comes from ``data.limit`` and ``data.test_limit``."""

    kind: Literal["synthetic"] = "synthetic"


def _read(cfg, opts: SyntheticOptions, data_opts: DataOptions) -> Dataset:
    n_tr = cfg.limit or 6000
    n_te = cfg.test_limit or max(1, n_tr // 6)
    xtr, ytr, xte, yte = synthetic_digits(n_tr, n_te)
    return Dataset("synthetic", "synthetic", xtr[:, None], ytr, xte[:, None], yte, (0, 255),
                   tuple(str(d) for d in range(10)), {"dataset": "synthetic", "source": "built in"}, SOURCE.noun)


SOURCE = Source("synthetic", _read, SyntheticOptions, "28×28 stroke 'digits' drawn from a fixed seed, for tests",
                SAMPLES, tuple(str(d) for d in range(10)), (1, 28, 28), (0, 255), what="the synthetic set",
                sized_by_limits=True)
