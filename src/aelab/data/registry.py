"""The registry of data sources and the one loader: what ``data.dataset`` (``--dataset``) may name.

``data.dataset`` is a registered name (:data:`DATASETS`: ``mnist``, ``fashion-mnist``, ``kmnist``,
``digits``, ``synthetic``, and any added with :func:`~aelab.data.source.register_source`) or a
path: a folder of images (:mod:`aelab.data.folder`) or a table (``.csv``, ``.npy``, ``.npz``;
:mod:`aelab.data.table`). Every source returns the same :class:`~aelab.data.dataset.Dataset`;
nothing downstream (the cache, the engine, the runs, the report) asks which kind it was. A new data
source is one file that defines its options class and a :class:`~aelab.data.source.Source`, plus
one line here (or a :func:`register_source` call from anywhere).

The public function is :func:`load`::

    from aelab.data import DataConfig, load
    ds = load(DataConfig(dataset="digits"))    # -> Dataset
    ds.x_train, ds.y_train, ds.x_test, ds.y_test  # (N, *sample_shape) arrays; labels (N,) or None
    ds.sample_shape                              # (C, H, W) for images, (D,) for tables
    ds.value_range                               # (0, 255) for 8-bit images; None when unknown
    ds.classes, ds.noun, ds.provenance           # class names; "digit"/"digits"; source and files

``load`` applies ``data.limit``/``data.test_limit`` but no scaling, noise or label exclusion (the
test split a latent tool reads is whole); :class:`aelab.data.cache.DataCache` adds those.
:func:`sample_shape` gives a config's sample shape (reading a folder or table only when it must)
and :func:`fit_config` makes a run's model take its input shape from its data. The functions that
take a run's config (``fit_config``, ``with_overrides``) read only its ``model``/``data``/``train``
parts and call its own methods: the data layer imports no config module above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from . import digits, folder, idxsets, shapes, synthetic, table
from .content import content_sha256
from .dataset import Dataset
from .ranges import fit_scaling
from .source import (
    PATH_SOURCES,
    SOURCES,
    DataOptions,
    Source,
    add_source,
    is_registered,
    source_for,
)

for _s in (*idxsets.SOURCES, digits.SOURCE, synthetic.SOURCE, shapes.SOURCE, folder.SOURCE, table.SOURCE):
    add_source(_s)

#: Registered data sets by name (the same dict as :data:`aelab.data.source.SOURCES`). A path (a
#: folder of images, a .csv/.npy/.npz table) needs no entry.
DATASETS: dict[str, Source] = SOURCES

TABLE_SUFFIXES = folder.TABLE_SUFFIXES

__all__ = ["DATASETS", "describe", "fingerprint", "fit_config", "is_registered", "load", "option_fields", "path_kind",
           "sample_shape", "with_overrides"]


def option_fields() -> dict[str, tuple[Any, str]]:
    """Every source option's name -> (its default, what it applies to: "a folder of images or a
    table (.csv, .npy, .npz)"), for the message that refuses one on another source."""
    seen: dict[str, tuple[Any, list[str]]] = {}
    for s in (*SOURCES.values(), *PATH_SOURCES):
        for name, f in s.Options.model_fields.items():
            if name == "kind":
                continue
            _, where = seen.setdefault(name, (f.default, []))
            what = s.what or s.name
            if what not in where:
                where.append(what)
    return {k: (d, w[0] if len(w) == 1 else f"{', '.join(w[:-1])} or {w[-1]}") for k, (d, w) in seen.items()}


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


def load(cfg: Any, opts: DataOptions | None = None) -> Dataset:
    """Read the data set ``cfg.dataset`` names (``cfg``: a :class:`~aelab.data.config.DataConfig`),
    with ``cfg.limit``/``cfg.test_limit`` applied.

    Raises :class:`~aelab.errors.DataError` (one line naming the file, and the row where there is
    one) for data that cannot be read, and :class:`~aelab.errors.ConfigError` for settings that do
    not apply to it.
    """
    opts = opts or DataOptions()
    name = cfg.dataset
    source = source_for(name)
    if not source.uses_files and (opts.files or opts.data_dir):
        flag = "--data-file" if opts.files else "--data-dir"
        if source.is_path:
            raise ConfigError(f"{flag} names files for the IDX data sets, but data.dataset is the path {name}; "
                              f"drop {flag}")
        raise ConfigError(f"{flag} names files for the IDX data sets (mnist, fashion-mnist, kmnist), but this run "
                          f"uses data.dataset = {name}, which reads no files; drop {flag}")
    if source.is_path:
        path_kind(name)  # a missing path or a file that is no table: one clear line
    ds = source.read(cfg, cfg.source, opts)
    if source.sized_by_limits:
        return ds
    return ds.limited(cfg.limit, cfg.test_limit)


def sample_shape(cfg: Any) -> tuple[int, ...]:
    """The shape of one sample of ``cfg``'s data (a DataConfig): (C, H, W) or (D,).

    Registered sets know theirs; a folder given ``channels`` and ``image_size`` too (the options'
    own ``sample_shape()``); any other path is read (once per process, see :func:`_read`).
    """
    source = source_for(cfg.dataset)
    if source.sample_shape is not None:
        return source.sample_shape
    known = cfg.source.sample_shape()
    if known is not None and (not source.is_path or path_kind(cfg.dataset)):  # a missing path: one line
        return known
    return _read(cfg).sample_shape


_READ_MEMO: dict = {}


def _read(cfg: Any) -> Dataset:
    """``cfg``'s data as read, kept for the next call with the same config and content."""
    key = (cfg.model_dump_json(), fingerprint(cfg))
    if key not in _READ_MEMO:
        _READ_MEMO.clear()  # one at a time: a folder of photos can be large
        _READ_MEMO[key] = load(cfg)
    return _READ_MEMO[key]


def fingerprint(cfg: Any) -> str | None:
    """The fingerprint of ``cfg``'s data (a DataConfig, or a ``data.dataset`` string): the SHA-256 of
    a path's content (:func:`aelab.data.content.content_sha256`), None for a registered name.
    Part of the config hash and of every cache key."""
    dataset = cfg if isinstance(cfg, str) else cfg.dataset
    if source_for(dataset).is_path:
        return content_sha256(dataset)
    return None


def fit_config(cfg: Any, scaling: bool = True) -> Any:
    """``cfg`` (a RunConfig) with its model's input shape taken from its data (see
    ``ModelConfig.fitted_to``) and, with ``scaling``, ``unit`` scaling of data that declares no range
    and lies outside [0, 1] turned into ``minmax`` where the last layer or the loss needs [0, 1]
    (:func:`aelab.data.ranges.fit_scaling`).

    The same config back when the shapes already agree (MNIST with the default model: nothing
    changes, not even the hash). A model that cannot take the data's shape is one
    :class:`~aelab.errors.ConfigError`.
    """
    shape = sample_shape(cfg.data)
    model = cfg.model.fitted_to(shape, what=f"data set {cfg.data.dataset}")
    if model is not cfg.model:
        cfg = cfg.model_copy(update={"model": model})
    if scaling and source_for(cfg.data.dataset).value_range is None and cfg.data.scaling == "unit":
        cfg = fit_scaling(cfg, _read(cfg.data))
    return cfg


def with_overrides(base: Any, overrides: dict) -> Any:
    """``base.with_overrides(overrides)`` (``base``: a RunConfig) with the model fitted to the data it
    names.

    The data overrides go first, so layers given with the overrides may be written for the data's
    shape (``--dataset digits --decoder 64:sigmoid``); layers written for the old shape
    (``--decoder 784:sigmoid``) are fitted as :func:`fit_config` fits them.
    """
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


def describe() -> list[tuple[str, str]]:
    """(name, one line) for each registered data set, for ``--help`` and the README."""
    return [(n, e.description) for n, e in DATASETS.items()]
