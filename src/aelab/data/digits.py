"""scikit-learn's bundled handwritten digits: 1,797 8×8 images, values 0–16, ten classes.

They ship inside scikit-learn (no download), so ``--dataset digits`` works offline: a second image
data set for demos, exams and tests. They come as one pool; the train/test split is seeded
(``data.test_fraction``, ``data.split_seed``) and stratified by digit.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from .dataset import Dataset, Nouns, split_indices
from .source import DataOptions, Source, SourceOptions

CLASSES = tuple(str(d) for d in range(10))


class PoolOptions(SourceOptions):
    """The split of data that comes as one pool: ``test_fraction`` of the samples held out for
    testing, drawn with ``split_seed`` (stratified by label)."""

    kind: str
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    split_seed: int = 0

    @field_validator("test_fraction", mode="before")
    @classmethod
    def _int_is_float(cls, v):
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class DigitsOptions(PoolOptions):
    kind: Literal["digits"] = "digits"


def load_digits(cfg, opts: DigitsOptions, data_opts: DataOptions) -> Dataset:
    """scikit-learn's ``load_digits`` as uint8 ``(N, 1, 8, 8)`` (the values are the integers 0–16),
    split as ``opts`` asks."""
    import sklearn  # deferred: scikit-learn takes ~0.5 s to import
    from sklearn.datasets import load_digits as sk_load_digits  # deferred: as above

    bunch = sk_load_digits()
    x = bunch.images.astype(np.uint8)[:, None]  # exact: the published values are integers 0..16
    y = bunch.target.astype(np.uint8)
    tr, te = split_indices(len(x), opts.test_fraction, opts.split_seed, y, "digits")
    prov = {"dataset": "digits", "kind": "digits", "source": f"scikit-learn {sklearn.__version__} (bundled)",
            "sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(), "samples": len(x),
            "test_fraction": opts.test_fraction, "split_seed": opts.split_seed}
    return Dataset("digits", "digits", x[tr], y[tr], x[te], y[te], (0, 16), CLASSES, prov, SOURCE.noun)


SOURCE = Source("digits", load_digits, DigitsOptions,
                "scikit-learn's 1,797 8×8 handwritten digits (bundled: works offline)", Nouns("digit", "digits"),
                CLASSES, (1, 8, 8), (0, 16), what="scikit-learn's digits")
