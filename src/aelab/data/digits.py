"""scikit-learn's bundled handwritten digits: 1,797 8×8 images, values 0–16, ten classes.

They ship inside scikit-learn (no download), so ``--dataset digits`` works offline: a second image
data set for demos, exams and tests. They come as one pool; the train/test split is seeded
(``data.test_fraction``, ``data.split_seed``) and stratified by digit.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .registry import Dataset, split_indices


def load_digits(cfg) -> Dataset:
    """``(x, y)`` of scikit-learn's ``load_digits`` as uint8 ``(N, 1, 8, 8)`` (the values are the
    integers 0–16), split as ``cfg`` asks."""
    import sklearn
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # exact: the published values are integers 0..16
    y = bunch.target.astype(np.uint8)
    tr, te = split_indices(len(x), cfg.test_fraction, cfg.split_seed, y, "digits")
    prov = {"dataset": "digits", "kind": "digits", "source": f"scikit-learn {sklearn.__version__} (bundled)",
            "sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(), "samples": int(len(x)),
            "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed}
    return Dataset("digits", "digits", x[tr], y[tr], x[te], y[te], (0, 16), tuple(str(d) for d in range(10)), prov)
