"""A table of samples: ``.csv`` (a header row), ``.npy`` or ``.npz``; it trains dense models.

- ``.csv``: one sample per row, every column numeric; ``data.label_column`` (optional) names the
  column that holds the labels (numbers or class names), which is then not a feature.
- ``.npy``: one array ``(N, D)``; no labels.
- ``.npz``: ``x`` ``(N, D)``, optional ``y`` ``(N,)``, optional ``x_test``/``y_test`` (the split
  as given; otherwise a seeded ``data.test_fraction`` split).

An array of rank 3 or 4 (``(N, H, W)``, ``(N, C, H, W)``) is read as images instead. Values must
be finite numbers; uint8 arrays declare the range (0, 255), anything else none (``unit`` scaling
then keeps the values as they are). Each failure is one :class:`~aelab.errors.DataError` naming
the file, and the row and column where there is one. Archives are read without pickle.
"""

from __future__ import annotations

import csv
import math
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from .content import content_sha256
from .dataset import IMAGES, SAMPLES, Dataset, split_indices
from .digits import PoolOptions
from .folder import TABLE_SUFFIXES
from .source import DataOptions, Source


class TableOptions(PoolOptions):
    """A table: ``label_column`` names a .csv column that holds the labels (it is then not a
    feature); a table without x_test is split by ``test_fraction``/``split_seed``."""

    kind: Literal["table"] = "table"
    label_column: str | None = None


def load_table(cfg, opts: TableOptions, data_opts: DataOptions) -> Dataset:
    path = Path(cfg.dataset).expanduser()
    suffix = path.suffix.lower()
    if suffix != ".csv" and opts.label_column is not None:
        raise ConfigError(f"--label-column applies to a .csv table; {path} is {suffix} (an .npz gives labels as its "
                          "array y); drop it")
    classes: tuple[str, ...] = ()
    x_test = y_test = None
    if suffix == ".csv":
        x, y, classes = _read_csv(path, opts.label_column)
    elif suffix == ".npy":
        x, y = _npy(path), None
    else:
        x, y, x_test, y_test = _npz(path)
    x = _samples(x, path, "x")
    if x_test is not None:
        x_test = _samples(x_test, path, "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test has samples of shape {list(x_test.shape[1:])} but x has "
                            f"{list(x.shape[1:])}; give both the same features")
        split = "x / x_test as given"
        xtr, ytr, xte, yte = x, y, x_test, y_test
    else:
        tr, te = split_indices(len(x), opts.test_fraction, opts.split_seed, y, str(path))
        xtr, xte = x[tr], x[te]
        ytr, yte = (None, None) if y is None else (y[tr], y[te])
        split = f"seeded {opts.test_fraction:g} test fraction (seed {opts.split_seed})"
    vr = (0, 255) if x.dtype == np.uint8 else None
    kind = "images" if x.ndim == 4 else "table"
    prov = {"dataset": str(cfg.dataset), "kind": kind, "source": suffix[1:], "path": str(path.resolve()),
            "sha256": content_sha256(cfg.dataset), "samples": int(len(xtr) + len(xte)), "split": split}
    if opts.label_column is not None:
        prov["label_column"] = opts.label_column
    return Dataset(str(cfg.dataset), kind, xtr, ytr, xte, yte, vr, classes, prov, IMAGES if kind == "images" else SAMPLES)


def _samples(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Check a feature array: numeric, finite, at least one sample; rank 3 becomes (N, 1, H, W)."""
    if x.dtype.kind not in "uif" or x.dtype.kind == "b":
        raise DataError(f"{path}: array {key} holds {x.dtype} values, not numbers; save it as a numeric array")
    if x.ndim <= 1:
        raise DataError(f"{path}: array {key} has shape {list(x.shape)}, "
                        f"{'a single number' if x.ndim == 0 else 'one number per sample'}; give it shape "
                        "(samples, features)")
    if x.ndim > 4 or (x.ndim == 4 and x.shape[1] not in (1, 3)):
        raise DataError(f"{path}: array {key} has shape {list(x.shape)}; give (samples, features), (samples, H, W) or "
                        "(samples, C, H, W) with C = 1 or 3")
    if len(x) == 0 or x[0].size == 0:
        raise DataError(f"{path}: array {key} is empty (shape {list(x.shape)}); it needs samples and features")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise DataError(f"{path}: array {key} has a NaN or infinite value at sample {int(where[0])}"
                            f"{', feature ' + str(int(where[1])) if x.ndim == 2 else ''}; fill or drop it")
        x = x.astype(np.float32) if x.dtype != np.float32 else x
    elif x.dtype != np.uint8:
        x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, path: Path, key: str, n: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: array {key} has shape {list(y.shape)}, but there are {n} samples; give one label "
                        "per sample, shape (samples,)")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        raise DataError(f"{path}: array {key} holds {y.dtype} values; labels must be whole numbers")
    return y.astype(np.int64)


def _npy(path: Path) -> np.ndarray:
    # np.load is given an open file, never the path: when a damaged archive makes it fail, numpy
    # would otherwise leave the file it opened itself unclosed
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                raise DataError(f"{path}: holds an archive, not one array; name it .npz")
            return arr
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npy file ({_one_line(exc)}); save it with numpy.save") from None


def _npz(path: Path):
    got = {}
    try:
        with open(path, "rb") as fh:
            archive = np.load(fh, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: holds a single array, not an .npz archive; name it .npy")
            with archive:
                names = set(archive.files)
                if "x" not in names:
                    have = ", ".join(sorted(names)) or "nothing"
                    raise DataError(f"{path}: has no array x (it holds {have}); save the samples as x (and "
                                    "optionally y, x_test, y_test)")
                if ("y_test" in names) and "x_test" not in names:
                    raise DataError(f"{path}: has y_test but no x_test; save the test samples as x_test")
                if ("x_test" in names) and (("y" in names) != ("y_test" in names)):
                    raise DataError(f"{path}: labels for one split only (y and y_test go together); save both "
                                    "or neither")
                for k in ("x", "y", "x_test", "y_test"):
                    if k in names:
                        try:
                            got[k] = archive[k]
                        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
                            raise DataError(f"{path}: array {k} is damaged or pickled ({_one_line(exc)}); save it "
                                            "again with numpy.savez") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({_one_line(exc)}); save it with numpy.savez") from None
    x = got["x"]
    y = _labels(got["y"], path, "y", len(x)) if "y" in got else None
    xt = got.get("x_test")
    yt = _labels(got["y_test"], path, "y_test", len(xt)) if "y_test" in got else None
    return x, y, xt, yt


def _read_csv(path: Path, label_column: str | None):
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; save the table as CSV (UTF-8)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({_one_line(exc)}); save it as CSV") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror}); check its permissions") from None
    rows = [r for r in rows if any(c.strip() for c in r)]  # blank lines are not samples
    if not rows:
        raise DataError(f"{path}: empty; a CSV table needs a header row and at least one row of numbers")
    header = [h.strip() for h in rows[0]]
    if all(_number(h) is not None for h in header if h):
        raise DataError(f"{path}: the first row holds numbers, not column names; add a header row")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(f"{path}: the header names column {dup!r} twice; give every column its own name")
    label_idx = None
    if label_column is not None:
        if label_column not in header:
            raise DataError(f"{path}: no column {label_column!r} for --label-column (columns: {', '.join(header)}); "
                            "check its name")
        label_idx = header.index(label_column)
    feat_idx = [i for i in range(len(header)) if i != label_idx]
    if not feat_idx:
        raise DataError(f"{path}: no feature columns besides the label column {label_column!r}")
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: a header row but no samples; add rows of numbers")
    x = np.empty((len(body), len(feat_idx)), dtype=np.float64)
    raw_labels = []
    for r, row in enumerate(body):
        line = r + 2  # 1-based, after the header: what an editor shows
        if len(row) != len(header):
            raise DataError(f"{path}: row {line} has {len(row)} values but the header names {len(header)} columns; "
                            "give every row one value per column")
        for j, i in enumerate(feat_idx):
            v = _number(row[i])
            if v is None:
                cell = row[i].strip()
                what = "is empty" if not cell else f"holds {cell!r}, not a number"
                raise DataError(f"{path}: row {line}, column {header[i]!r} {what}; every feature must be a number "
                                f"(name a label column with --label-column)")
            if not math.isfinite(v):
                raise DataError(f"{path}: row {line}, column {header[i]!r} is {row[i].strip()}; fill or drop the row "
                                "(NaN and infinite values cannot be trained on)")
            x[r, j] = v
        if label_idx is not None:
            cell = row[label_idx].strip()
            if not cell:
                raise DataError(f"{path}: row {line}, label column {label_column!r} is empty; give every row a label")
            raw_labels.append(cell)
    y, classes = None, ()
    if label_idx is not None:
        nums = [_number(c) for c in raw_labels]
        if all(v is not None and math.isfinite(v) and v == int(v) for v in nums):
            y = np.array([int(v) for v in nums], dtype=np.int64)
        else:  # class names: sorted, numbered from 0
            classes = tuple(sorted(set(raw_labels)))
            index = {c: i for i, c in enumerate(classes)}
            y = np.array([index[c] for c in raw_labels], dtype=np.int64)
    return x.astype(np.float32), y, classes


def _number(cell: str) -> float | None:
    try:
        return float(cell.strip())
    except ValueError:
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _claims(dataset: str) -> bool:
    p = Path(dataset).expanduser()
    return p.suffix.lower() in TABLE_SUFFIXES and not p.is_dir()


SOURCE = Source("table", load_table, TableOptions, "a table (.csv with a header row, .npy, .npz): its own path",
                SAMPLES, what="a table (.csv, .npy, .npz)", claims=_claims)
