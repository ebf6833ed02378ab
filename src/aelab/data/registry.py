"""The registry of data sets: what ``data.dataset`` (``--dataset``) may name, and the one loader.

``data.dataset`` is a registered name (:data:`DATASETS`: ``mnist``, ``fashion-mnist``, ``kmnist``,
``digits``, ``synthetic``) or a path: a folder of images (:mod:`aelab.data.folder`) or a table
(``.csv``, ``.npy``, ``.npz``; :mod:`aelab.data.table`). Every kind returns the same
:class:`Dataset`; nothing downstream (the cache, the engine, the runs, the report) asks which kind
it was. A new data set is one file that returns a :class:`Dataset` plus one entry here.

The public function is :func:`load`::

    from aelab.config import DataConfig
    from aelab.data import load
    ds = load(DataConfig(dataset="digits"))    # -> Dataset
    ds.x_train, ds.y_train, ds.x_test, ds.y_test  # (N, *sample_shape) arrays; labels (N,) or None
    ds.sample_shape                              # (C, H, W) for images, (D,) for tables
    ds.value_range                               # (0, 255) for 8-bit images; None when unknown
    ds.classes, ds.provenance                    # class names; source, files and their hashes

``load`` applies ``data.limit``/``data.test_limit`` but no scaling, noise or label exclusion (the
test split a latent tool reads is whole); :class:`aelab.data.cache.DataCache` adds those.
:func:`sample_shape` gives a config's sample shape (reading a folder or table only when it must)
and :func:`fit_config` makes a run's model take its input shape from its data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from ..config import DataConfig, RunConfig
    from .cache import DataOptions


@dataclass(frozen=True)
class Dataset:
    """A data set as read, before scaling: two splits, their labels, and what the samples are.

    ``x_train``/``x_test``: ``(N, *sample_shape)`` numeric arrays (uint8 pixels for images).
    ``y_train``/``y_test``: ``(N,)`` integer labels, or None for unlabelled data.
    ``value_range``: the nominal ``(low, high)`` of the values (``(0, 255)`` for 8-bit images,
    ``(0, 16)`` for scikit-learn's digits), or None when the data declares none (a float table);
    ``unit`` scaling divides by ``high``.
    ``provenance``: JSON-ready: ``dataset``, ``kind``, ``source`` and the files (or their hashes).
    """

    name: str
    kind: str  # "idx", "digits", "synthetic", "images", "table"
    x_train: np.ndarray = field(repr=False)
    y_train: Optional[np.ndarray] = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: Optional[np.ndarray] = field(repr=False)
    value_range: Optional[tuple[float, float]] = None
    classes: tuple[str, ...] = ()
    provenance: dict = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.sample_shape) == 3

    def limited(self, limit: Optional[int], test_limit: Optional[int]) -> "Dataset":
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
        return Dataset(self.name, self.kind, xtr, ytr, xte, yte, self.value_range, self.classes, self.provenance)


@dataclass(frozen=True)
class Entry:
    """A registered data set: its loader, its sample shape (known without reading it) and a line."""

    load: Callable[["DataConfig", "DataOptions"], Dataset]
    sample_shape: tuple[int, ...]
    description: str
    #: whether --data-dir / --data-file mean something for it (the IDX sets' cache and local copies)
    uses_files: bool = False


def _idx_entry(name: str) -> Entry:
    from .sources import IDX_SETS

    def load_idx(cfg, opts) -> Dataset:
        from .sources import load_idx_set

        s = IDX_SETS[name]
        mn = load_idx_set(s, data_dir=opts.data_dir, files=opts.files, offline=opts.offline, progress=opts.progress)
        prov = {"dataset": name, "kind": "idx", "source": mn.source, "cache_dir": str(mn.cache_dir),
                "files": dict(mn.origins)}
        if name != "mnist":  # MNIST's run.json keeps the fields it always had
            prov["sha256"] = dict(mn.sha256)
        # (N, 28, 28) → (N, 1, 28, 28): a view, the samples' shape says "one channel"
        return Dataset(name, "idx", mn.x_train[:, None], mn.y_train, mn.x_test[:, None], mn.y_test, (0, 255),
                       s.classes, prov)

    s = IDX_SETS[name]
    return Entry(load_idx, (1, 28, 28), f"{s.title}: 60,000 + 10,000 28×28 grayscale images, 10 classes "
                                        f"({s.homepage})", uses_files=True)


def _digits(cfg, opts) -> Dataset:
    from .digits import load_digits

    return load_digits(cfg)


def _synthetic(cfg, opts) -> Dataset:
    from .synthetic import synthetic_digits

    n_tr = cfg.limit or 6000
    n_te = cfg.test_limit or max(1, n_tr // 6)
    xtr, ytr, xte, yte = synthetic_digits(n_tr, n_te)
    return Dataset("synthetic", "synthetic", xtr[:, None], ytr, xte[:, None], yte, (0, 255),
                   tuple(str(d) for d in range(10)), {"dataset": "synthetic", "source": "built in"})


#: Registered data sets by name. A path (a folder of images, a .csv/.npy/.npz table) needs no entry.
DATASETS: dict[str, Entry] = {
    "mnist": _idx_entry("mnist"),
    "fashion-mnist": _idx_entry("fashion-mnist"),
    "kmnist": _idx_entry("kmnist"),
    "digits": Entry(_digits, (1, 8, 8), "scikit-learn's 1,797 8×8 handwritten digits (bundled: works offline)"),
    "synthetic": Entry(_synthetic, (1, 28, 28), "28×28 stroke 'digits' drawn from a fixed seed, for tests"),
}

TABLE_SUFFIXES = (".csv", ".npy", ".npz")


def is_registered(dataset: str) -> bool:
    return dataset in DATASETS


def path_kind(dataset: str) -> str:
    """"images" (a folder) or "table" (a .csv/.npy/.npz file) for a path; a clear error otherwise."""
    p = Path(dataset).expanduser()
    try:
        if p.is_dir():
            return "images"
        exists = p.exists()
    except OSError as exc:
        raise DataError(f"data set {dataset}: cannot access it ({exc.strerror}); check its permissions") from None
    if not exists:
        raise DataError(f"data set {dataset!r} is neither a registered name ({', '.join(DATASETS)}) nor an existing "
                        "file or folder; check the spelling or the path")
    if p.suffix.lower() in TABLE_SUFFIXES:
        return "table"
    raise DataError(f"{dataset}: a data set file must be a table (.csv, .npy or .npz); for images give the folder "
                    "that holds them")


def load(cfg: "DataConfig", opts: "Optional[DataOptions]" = None) -> Dataset:
    """Read the data set ``cfg.dataset`` names, with ``cfg.limit``/``cfg.test_limit`` applied.

    Raises :class:`~aelab.errors.DataError` (one line naming the file, and the row where there is
    one) for data that cannot be read, and :class:`~aelab.errors.ConfigError` for settings that do
    not apply to it.
    """
    from .cache import DataOptions

    opts = opts or DataOptions()
    name = cfg.dataset
    if name in DATASETS:
        entry = DATASETS[name]
        if not entry.uses_files and (opts.files or opts.data_dir):
            flag = "--data-file" if opts.files else "--data-dir"
            raise ConfigError(f"{flag} names files for the IDX data sets (mnist, fashion-mnist, kmnist), but this run "
                              f"uses data.dataset = {name}, which reads no files; drop {flag}")
        _refuse_path_options(cfg, name)
        ds = entry.load(cfg, opts)
    else:
        if opts.files or opts.data_dir:
            flag = "--data-file" if opts.files else "--data-dir"
            raise ConfigError(f"{flag} names files for the IDX data sets, but data.dataset is the path {name}; "
                              f"drop {flag}")
        kind = path_kind(name)
        if kind == "images":
            from .folder import load_folder

            ds = load_folder(cfg)
        else:
            from .table import load_table

            ds = load_table(cfg)
    if name == "synthetic":
        return ds  # sized by the limits already
    return ds.limited(cfg.limit, cfg.test_limit)


def _refuse_path_options(cfg: "DataConfig", name: str) -> None:
    """Settings that only a folder or a table reads are an error on a registered set, not ignored."""
    if cfg.channels is not None or cfg.image_size is not None:
        flag = "--channels" if cfg.channels is not None else "--image-size"
        raise ConfigError(f"{flag} (data.{'channels' if flag == '--channels' else 'image_size'}) applies to a folder "
                          f"of images, but data.dataset is {name}, whose images are as published; drop it")
    if cfg.label_column is not None:
        raise ConfigError(f"--label-column (data.label_column) applies to a .csv table, but data.dataset is {name}; "
                          "drop it")


def sample_shape(cfg: "DataConfig") -> tuple[int, ...]:
    """The shape of one sample of ``cfg``'s data: (C, H, W) or (D,).

    Registered sets know theirs; a folder given ``channels`` and ``image_size`` too; any other path
    is read (once per process, see :func:`_read_path`).
    """
    if cfg.dataset in DATASETS:
        return DATASETS[cfg.dataset].sample_shape
    if cfg.channels is not None and cfg.image_size is not None and path_kind(cfg.dataset) == "images":
        return (cfg.channels, *cfg.image_size)
    return _read_path(cfg).sample_shape


_PATH_MEMO: dict = {}


def _read_path(cfg: "DataConfig") -> Dataset:
    key = (cfg.model_dump_json(), content_sha256(cfg.dataset))
    if key not in _PATH_MEMO:
        _PATH_MEMO.clear()  # one at a time: a folder of photos can be large
        _PATH_MEMO[key] = load(cfg)
    return _PATH_MEMO[key]


def fit_config(cfg: "RunConfig", scaling: bool = True) -> "RunConfig":
    """``cfg`` with its model's input shape taken from its data (see ``ModelConfig.fitted_to``) and,
    with ``scaling``, ``unit`` scaling of data that declares no range and lies outside [0, 1] turned
    into ``minmax`` where the last layer or the loss needs [0, 1] (:func:`aelab.data.ranges.fit_scaling`).

    The same config back when the shapes already agree (MNIST with the default model: nothing
    changes, not even the hash). A model that cannot take the data's shape is one
    :class:`~aelab.errors.ConfigError`.
    """
    shape = sample_shape(cfg.data)
    model = cfg.model.fitted_to(shape, what=f"data set {cfg.data.dataset}")
    if model is not cfg.model:
        cfg = cfg.model_copy(update={"model": model})
    if scaling and cfg.data.dataset not in DATASETS and cfg.data.scaling == "unit":
        from .ranges import fit_scaling

        cfg = fit_scaling(cfg, _read_path(cfg.data))
    return cfg


def with_overrides(base: "RunConfig", overrides: dict) -> "RunConfig":
    """``base.with_overrides(overrides)`` with the model fitted to the data it names.

    The data overrides go first, so layers given with the overrides may be written for the data's
    shape (``--dataset digits --decoder 64:sigmoid``); layers written for the old shape
    (``--decoder 784:sigmoid``) are fitted as :func:`fit_config` fits them.
    """
    from ..errors import ConfigError

    data_ov = {k: v for k, v in overrides.items() if k.startswith("data.")}
    rest = {k: v for k, v in overrides.items() if not k.startswith("data.")}
    # the scaling is fitted last, to the model and loss the remaining overrides give
    first = fit_config(base.with_overrides(data_ov) if data_ov else base, scaling=False)
    if not rest:
        return fit_config(first)
    try:
        return fit_config(first.with_overrides(rest))
    except ConfigError as err:
        try:
            return fit_config(base.with_overrides(overrides))
        except ConfigError:
            raise err from None


# -- fingerprints --------------------------------------------------------------------------------
_SHA_MEMO: dict = {}


def content_sha256(dataset: str) -> Optional[str]:
    """SHA-256 over a path data set's content (each file's relative name and bytes, in sorted order);
    None for a registered name (their files are pinned by their own hashes). Part of the config hash
    and of every cache key, so another folder, or the same folder with one image changed, is
    another data set. Hashed once per (names, sizes, modification times) listing."""
    if dataset in DATASETS:
        return None
    p = Path(dataset).expanduser()
    try:
        if p.is_dir():
            files = sorted(f for f in _walk(p))
            listing = tuple((str(f.relative_to(p)), *_stat(f)) for f in files)
        elif p.is_file():
            files = [p]
            listing = ((p.name, *_stat(p)),)
        else:
            return f"missing:{dataset}"
    except OSError:
        return f"unreadable:{dataset}"
    key = (str(p.resolve()), listing)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        for f, (rel, *_rest) in zip(files, listing):
            h.update(rel.encode("utf-8") + b"\0")
            try:
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                h.update(b"<unreadable>")
            h.update(b"\0")
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _stat(f: Path) -> tuple[int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns


def _walk(root: Path):
    """Regular files under ``root``, hidden ones (``.DS_Store``, ``.git``) skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith("."):
                yield Path(dirpath) / fn


def describe() -> list[tuple[str, str]]:
    """(name, one line) for each registered data set, for ``--help`` and the README."""
    return [(n, e.description) for n, e in DATASETS.items()]


def split_indices(n: int, test_fraction: float, seed: int, labels: Optional[np.ndarray], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test indices for data that comes as one pool (scikit-learn's ``train_test_split``,
    stratified by label when every class has at least two samples)."""
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
