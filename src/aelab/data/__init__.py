"""The data layer: data sources as plug-ins, their verified files and readers, and what training reads.

Only the public API is re-exported here. :func:`load` (``aelab.data.load(data_cfg, opts) ->
Dataset``) reads any data set a :class:`DataConfig` names — a registered name (:data:`DATASETS`)
or a path — into a :class:`Dataset`: ``x_train``/``y_train``/``x_test``/``y_test`` (labels or
None), ``sample_shape`` ((C, H, W) or (D,)), ``value_range``, ``classes``, ``noun`` and
``provenance``. Each kind of source is a plug-in with its own options class
(:mod:`aelab.data.source`); :func:`register_source` adds one from any code, :func:`nouns` says
what a data set's samples are called without reading it, and :func:`fingerprint` gives a path's
content hash (computed once per content). :func:`fit_config` gives a run's model the data's input
shape; :class:`DataCache` (:mod:`aelab.data.cache`) scales and caches what training reads, and
:mod:`aelab.data.prepare` holds the scaling, the noise and :class:`TrainData`.
Where the IDX sets come from: :mod:`aelab.data.sources`; the IDX format: :mod:`aelab.data.idx`;
images: :mod:`aelab.data.folder`; tables: :mod:`aelab.data.table`; scikit-learn's digits:
:mod:`aelab.data.digits`.
"""

from .cache import DataCache, data_key
from .config import DataConfig
from .dataset import Dataset, Nouns
from .idx import read_idx, write_idx
from .prepare import Scaler, TrainData, add_noise, as_flat, as_images, scale
from .registry import (
    DATASETS,
    fingerprint,
    fit_config,
    load,
    sample_shape,
    with_overrides,
)
from .source import (
    SOURCES,
    DataOptions,
    PlainOptions,
    Source,
    SourceOptions,
    add_sources,
    added_sources,
    classes,
    is_registered,
    nouns,
    register_source,
    unregister_source,
)
from .sources import (
    IDX_SETS,
    MNIST_FILES,
    SHA256,
    IdxSet,
    Mnist,
    default_cache_dir,
    fetch_idx_set,
    fetch_mnist,
    idx_info,
    load_idx_set,
    load_mnist,
    mnist_info,
)

__all__ = [
    "DATASETS",
    "IDX_SETS",
    "MNIST_FILES",
    "SHA256",
    "SOURCES",
    "DataCache",
    "DataConfig",
    "DataOptions",
    "Dataset",
    "IdxSet",
    "Mnist",
    "Nouns",
    "PlainOptions",
    "Source",
    "SourceOptions",
    "TrainData",
    "add_noise",
    "add_sources",
    "added_sources",
    "as_flat",
    "as_images",
    "classes",
    "data_key",
    "default_cache_dir",
    "fetch_idx_set",
    "fetch_mnist",
    "fingerprint",
    "fit_config",
    "idx_info",
    "is_registered",
    "load",
    "load_idx_set",
    "load_mnist",
    "mnist_info",
    "nouns",
    "read_idx",
    "register_source",
    "sample_shape",
    "Scaler",
    "scale",
    "unregister_source",
    "with_overrides",
    "write_idx",
]
