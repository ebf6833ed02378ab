"""Arrays held in memory as a data source: what a scikit-learn ``fit(X)`` trains on.

The training API reads its data through a registered source named in ``data.dataset``. For arrays
that live only in this process (an estimator's ``X``) :func:`array_source` registers one while it is
in use and removes it after, so no other code sees it. Its name carries the arrays' SHA-256
(``arrays-<64 hex digits>``): the content is hashed once, when the source is made, and since the
name is part of the config, the config hash — the run's identity — covers the content as a path's
fingerprint does (other arrays are another run; the same arrays reuse a finished run).

A source made here holds its arrays in a picklable reader, so it travels to a spawned worker as
every registered source does (:func:`aelab.data.source.added_sources`). The samples are checked
once here: numeric, finite, at least one sample with at least one value; ``(N, H, W)`` images get
a channel axis (``(N, 1, H, W)``, the shape the data layer gives images). Values are kept as
float32 and declare no range, so ``unit`` scaling keeps them as they are and
:func:`aelab.data.fit_config` applies aelab's own rule for data outside [0, 1]
(:mod:`aelab.data.ranges`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .dataset import SAMPLES, Dataset
from .source import SOURCES, register_source, unregister_source

#: the prefix of an array source's name; the rest is the arrays' SHA-256
PREFIX = "arrays-"

_LOCK = threading.Lock()
_USERS: dict[str, int] = {}  # name -> how many array_source blocks use it now (threads share sources)


def samples(x, what: str = "X") -> np.ndarray:
    """``x`` as the samples an array source holds: a C-contiguous float32 array ``(N, D)``,
    ``(N, 1, H, W)`` (from ``(N, H, W)``) or ``(N, C, H, W)``; one :class:`DataError` line otherwise."""
    x = np.asarray(x)
    if x.dtype.kind not in "uif" or x.dtype.kind == "b":
        raise DataError(f"{what} holds {x.dtype} values, not numbers; give a numeric array")
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{what} has shape {list(x.shape)}; give (samples, features), (samples, H, W) or "
                        "(samples, C, H, W)")
    if len(x) == 0 or x[0].size == 0:
        raise DataError(f"{what} is empty (shape {list(x.shape)}); it needs samples with at least one value each")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        where = np.argwhere(bad)[0]
        at = f"sample {int(where[0])}" + (f", feature {int(where[1])}" if x.ndim == 2 else "")
        raise DataError(f"{what} has a NaN or infinite value at {at}; fill or drop it (e.g. "
                        "sklearn.impute.SimpleImputer before it)")
    return x[:, None] if x.ndim == 3 else x


def sha256_of(*arrays: np.ndarray) -> str:
    """The SHA-256 of arrays as a source holds them: each one's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ArrayReader:
    """The reader of one array source: gives its arrays (the test split is the training split when
    none was given). A dataclass, not a closure, so the source pickles with its arrays."""

    name: str
    x_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)

    def __call__(self, cfg) -> Dataset:
        kind = "images" if self.x_train.ndim == 4 else "table"
        prov = {"dataset": self.name, "kind": kind, "source": "arrays in memory",
                "sha256": self.name[len(PREFIX):], "samples": int(len(self.x_train)),
                "split": "x_test as given" if self.x_test is not self.x_train else "the training arrays, also as test split"}
        return Dataset(self.name, "arrays", self.x_train, None, self.x_test, None, None, (), prov, SAMPLES)


@contextmanager
def array_source(x_train, x_test=None) -> Iterator[str]:
    """Register ``x_train`` (and ``x_test``; default: ``x_train`` again) as a data source for the
    duration of the block and yield its name, ``arrays-<sha256>``, for ``data.dataset``.

    The arrays are checked and converted by :func:`samples` first (one :class:`DataError` line for
    an array that cannot be trained on). The same arrays in two blocks at once (threads) share one
    source; it is removed when the last block ends.
    """
    xtr = samples(x_train, "X")
    xte = xtr if x_test is None else samples(x_test, "X_test")
    if xte.shape[1:] != xtr.shape[1:]:
        raise DataError(f"X_test has samples of shape {list(xte.shape[1:])} but X has {list(xtr.shape[1:])}; "
                        "give both the same features")
    name = PREFIX + (sha256_of(xtr) if xte is xtr else sha256_of(xtr, xte))
    with _LOCK:
        if _USERS.get(name, 0) == 0 and name not in SOURCES:
            register_source(name, ArrayReader(name, xtr, xte), sample_shape=tuple(int(d) for d in xtr.shape[1:]),
                            description="arrays held in memory (registered while an estimator fits)")
        _USERS[name] = _USERS.get(name, 0) + 1
    try:
        yield name
    finally:
        with _LOCK:
            _USERS[name] -= 1
            if _USERS[name] == 0:
                del _USERS[name]
                unregister_source(name)


__all__ = ["ArrayReader", "PREFIX", "array_source", "samples", "sha256_of"]
