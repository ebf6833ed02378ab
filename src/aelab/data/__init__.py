"""The data layer: a registry of data sets, verified sources, readers, and array transforms.

Only the public API is re-exported here. :func:`load` (``aelab.data.load(data_cfg, opts) ->
Dataset``) reads any data set a :class:`~aelab.config.DataConfig` names — a registered name
(:data:`DATASETS`) or a path — into a :class:`Dataset`: ``x_train``/``y_train``/``x_test``/
``y_test`` (labels or None), ``sample_shape`` ((C, H, W) or (D,)), ``value_range``, ``classes`` and
``provenance``; see :mod:`aelab.data.registry`. :func:`fit_config` gives a run's model the data's
input shape; :class:`DataCache` (:mod:`aelab.data.cache`) scales and caches what training reads.
Where the IDX sets come from: :mod:`aelab.data.sources`; the IDX format: :mod:`aelab.data.idx`;
images: :mod:`aelab.data.folder`; tables: :mod:`aelab.data.table`; scikit-learn's digits:
:mod:`aelab.data.digits`; scaling, noise and the training arrays: :mod:`aelab.data.prepare`.
"""

from .idx import read_idx, write_idx
from .prepare import TrainData, add_noise, as_flat, as_images, scale
from .registry import DATASETS, Dataset, fit_config, load, sample_shape
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
    "DataCache",
    "DataOptions",
    "Dataset",
    "IdxSet",
    "Mnist",
    "TrainData",
    "add_noise",
    "as_flat",
    "as_images",
    "default_cache_dir",
    "fetch_idx_set",
    "fetch_mnist",
    "fit_config",
    "idx_info",
    "load",
    "load_idx_set",
    "load_mnist",
    "mnist_info",
    "read_idx",
    "sample_shape",
    "scale",
    "write_idx",
]


def __getattr__(name: str):
    # the cache imports torch lazily but is re-exported lazily too: `aelab data info` stays light
    if name in ("DataCache", "DataOptions"):
        from . import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
