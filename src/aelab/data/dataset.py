"""What every data source returns: a :class:`Dataset` (two splits, labels, what the samples are).

Also the one seeded train/test split (:func:`split_indices`) that the sources which come as one
pool (scikit-learn's digits, a folder without train/ and test/, a table without x_test) share.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError


class Nouns(NamedTuple):
    """What one sample of a data set is called, for prose: ``Nouns("digit", "digits")``."""

    singular: str
    plural: str

    def count(self, n: int) -> str:
        """``"1 digit"``, ``"3 digits"``."""
        return f"{n} {self.singular if n == 1 else self.plural}"


SAMPLES = Nouns("sample", "samples")
IMAGES = Nouns("image", "images")


@dataclass(frozen=True)
class Dataset:
    """A data set as read, before scaling: two splits, their labels, and what the samples are.

    ``x_train``/``x_test``: ``(N, *sample_shape)`` numeric arrays (uint8 pixels for images).
    ``y_train``/``y_test``: ``(N,)`` integer labels, or None for unlabelled data.
    ``value_range``: the nominal ``(low, high)`` of the values (``(0, 255)`` for 8-bit images,
    ``(0, 16)`` for scikit-learn's digits), or None when the data declares none (a float table);
    ``unit`` scaling divides by ``high``.
    ``classes``: the name of each label (``classes[y]``), or ``()``.
    ``provenance``: JSON-ready: ``dataset``, ``kind``, ``source`` and the files (or their hashes).
    ``noun``: what one sample is called (``digit``/``digits``, ``image``/``images``), for prose.
    """

    name: str
    kind: str  # "idx", "digits", "synthetic", "images", "table", or a registered source's kind
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray | None = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray | None = field(repr=False)
    value_range: tuple[float, float] | None = None
    classes: tuple[str, ...] = ()
    provenance: dict = field(default_factory=dict)
    noun: Nouns = SAMPLES

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    def limited(self, limit: int | None, test_limit: int | None) -> Dataset:
        """The first ``limit`` training samples and ``test_limit`` (default ``limit // 6``, at least 1)
        test samples, as ``data.limit``/``data.test_limit`` ask."""
        xtr, ytr, xte, yte = self.x_train, self.y_train, self.x_test, self.y_test
        if limit is not None:
            xtr, ytr = xtr[:limit], (None if ytr is None else ytr[:limit])
            n_te = test_limit or max(1, limit // 6)
        else:
            n_te = test_limit
        if n_te is not None:
            xte, yte = xte[:n_te], (None if yte is None else yte[:n_te])
        return replace(self, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)


def split_indices(n: int, test_fraction: float, seed: int, labels: np.ndarray | None, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices for data that comes as one pool (scikit-learn's ``train_test_split``,
    stratified by label when every class has at least two samples)."""
    # deferred: scikit-learn takes ~0.5 s to import
    from sklearn.model_selection import train_test_split

    if n < 2:
        raise DataError(f"{where}: {n} sample{'s' if n != 1 else ''}; a train/test split needs at least 2")
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 1:
        raise DataError(f"{where}: {n} samples with test fraction {test_fraction:g} leave "
                        f"{'no test' if n_test < 1 else 'no training'} samples; change --test-fraction or add data")
    idx = np.arange(n)
    stratify: Any = None
    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() >= 2 and n_test >= len(counts) and n - n_test >= len(counts):
            stratify = labels
    tr, te = train_test_split(idx, test_size=n_test, random_state=seed, shuffle=True, stratify=stratify)
    return np.sort(tr), np.sort(te)
