"""The IDX file format (the container MNIST ships in): strict reading and writing.

This module knows bytes and arrays only — no MNIST file names, hashes or sources (those live in
:mod:`aelab.data.sources`). An IDX file is::

    0x00 0x00 <dtype code> <ndim>   magic
    ndim x big-endian uint32        dimensions
    prod(dims) x itemsize bytes     data, big-endian, C order

Reading is strict because a damaged download must never be mistaken for data: any malformed
input (bad magic, unknown dtype, bad rank, truncation, trailing bytes, broken gzip) raises
:class:`aelab.errors.DataError` and nothing else. gzip content is accepted transparently.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from .. import _atomic
from ..errors import DataError

#: IDX dtype codes (from the format's specification) and their big-endian numpy types.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"
MAX_NDIM = 4

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]


def is_gzip(data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` starts with the gzip magic bytes."""
    return bytes(data[:2]) == GZIP_MAGIC


def gunzip(data: bytes | bytearray | memoryview, name: str) -> bytearray:
    """Decompress gzip ``data``; a damaged stream raises :class:`DataError` naming ``name``."""
    try:
        # bytearray so the caller's np.frombuffer view is writable without another copy.
        return bytearray(gzip.decompress(data))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: broken gzip data ({_one_line(exc)}); obtain the file again") from None


def maybe_gunzip(data: bytes | bytearray | memoryview, name: str) -> bytes | bytearray | memoryview:
    """``data`` decompressed if it is gzip (by content); a ``.gz`` name on raw data is an error,
    since it means the file is not what it claims to be."""
    if is_gzip(data):
        return gunzip(data, name)
    if name.endswith(".gz"):
        raise DataError(
            f"{name}: named .gz but its content is not gzip; rename it without .gz if it is a raw "
            "IDX file, or obtain the file again"
        )
    return data


def read_idx(path_or_bytes: Source, name: str | None = None) -> np.ndarray:
    """Parse an IDX file (a path, or its content as bytes) into a numpy array.

    gzip content (detected by its magic, not its name) is decompressed first; a name ending in
    ``.gz`` whose content is not gzip is an error, since it means the file is not what it claims.
    ``name`` is what error messages call the input (default: the path, or ``"<bytes>"``).
    The result is writable and in native byte order; for uint8 data (MNIST) it is a zero-copy
    view of the bytes read from disk.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data: bytes | bytearray | memoryview = path_or_bytes
        label = name or "<bytes>"
    else:
        path = Path(path_or_bytes)
        label = name or str(path)
        data = read_file(path, label)
    return parse_idx(maybe_gunzip(data, label), label)


def read_file(path: Path, label: str | None = None) -> bytearray:
    """Read a whole file into a bytearray; a missing or unreadable file is a :class:`DataError`."""
    label = label or str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            # readinto a preallocated bytearray: one copy from the OS, and a writable buffer
            # that np.frombuffer can view without copying 47 MB again.
            buf = bytearray(size)
            got = fh.readinto(buf)
            del buf[got:]  # the file shrank while we read it: the parser reports the truncation
            return buf
    except FileNotFoundError:
        raise DataError(f"{label}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{label}: is a directory, not a file; point at the file itself") from None
    except OSError as exc:
        raise DataError(f"{label}: cannot read it ({_one_line(exc)}); check its permissions") from None


def parse_idx(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Parse raw (uncompressed) IDX bytes; see :func:`read_idx`."""
    n = len(data)
    if n < 4:
        raise DataError(
            f"{name}: not an IDX file ({n} bytes, shorter than the 4-byte header); obtain the file again"
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name}: not an IDX file (magic starts with {bytes(data[:2]).hex()}, expected 0000); "
            "point at an IDX file (or its .gz)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02X} (known: {known}); obtain the file again")
    if not 1 <= ndim <= MAX_NDIM:
        raise DataError(f"{name}: IDX rank {ndim} is not in 1..{MAX_NDIM}; obtain the file again")
    header = 4 + 4 * ndim
    if n < header:
        raise DataError(
            f"{name}: truncated IDX header: expected {header} bytes, got {n}; obtain the file again"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if 0 in dims:
        # An empty IDX file is never data anyone wants, and numpy refuses shapes such as
        # (2**24, 2**24, 0) outright, so a zero dimension is rejected here, by name.
        raise DataError(f"{name}: IDX shape {dims} has an empty dimension; obtain the file again")
    dtype = IDX_DTYPES[code]
    count = 1
    for d in dims:
        count *= d  # Python ints: a hostile header cannot overflow this
    expected = header + count * dtype.itemsize
    if n < expected:
        raise DataError(
            f"{name}: truncated IDX file of shape {dims}: expected {expected} bytes, got {n}; "
            "obtain the file again"
        )
    if n > expected:
        raise DataError(
            f"{name}: {n - expected} trailing bytes after the IDX data of shape {dims}: expected "
            f"{expected} bytes, got {n}; obtain the file again"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))  # native order; this copy is writable
    elif not arr.flags.writeable:
        arr = arr.copy()  # immutable input (bytes): callers may scale in place
    return arr


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (raw, uncompressed).

    Raises ``ValueError`` for a dtype the format cannot hold, a rank outside 1..4, or a
    dimension that is 0 or too large for uint32 (the reader refuses empty files) — these are
    programming errors, not user data errors.
    """
    arr = np.asarray(array)
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _CODE_OF_KIND:
        raise ValueError(f"IDX cannot hold dtype {arr.dtype} (supported: uint8, int8, int16, int32, float32, float64)")
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise ValueError(f"IDX holds arrays of rank 1..{MAX_NDIM}, not {arr.ndim}")
    if not all(0 < d < 2**32 for d in arr.shape):
        raise ValueError(f"IDX dimensions must be in 1..2**32-1, got shape {arr.shape}")
    code = _CODE_OF_KIND[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    return header + body


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically; a name ending in ``.gz`` writes it gzipped.

    The gzip stream carries no timestamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    data = encode_idx(array)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    _atomic.write_bytes(path, data)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
