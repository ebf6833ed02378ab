"""The data layer: a registry of data sets, verified sources, readers, and array transforms.

Only the public API is re-exported here. :func:`load` (``aelab.data.load(data_cfg, opts) ->
Dataset``) reads any data set a :class:`~aelab.config.DataConfig` names — a registered name
(:data:`DATASETS`) or a path — into a :class:`Dataset`: ``x_train``/``y_train``/``x_test``/
``y_test`` (labels or None), ``sample_shape`` ((C, H, W) or (D,)), ``value_range``, ``classes`` and
``provenance``; see :mod:`aelab.data.registry`. :func:`fit_config` gives a run's model the data's
input shape; :class:`DataCache` (:mod:`aelab.data.cache`) scales and caches what training reads.
Where the IDX sets come from: :mod:`aelab.data.sources`; the IDX format: :mod:`aelab.data.idx`;
images: :mod:`aelab.data.folder`; tables: :mod:`aelab.data.table`; scikit-learn's digits:
:mod:`aelab.data.digits`; scaling and noise: :mod:`aelab.data.transforms`.
"""

from .idx import read_idx, write_idx
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
from .transforms import add_noise, add_noise_numpy, as_flat, as_images, scale

__all__ = [
    "DATASETS",
    "DataCache",
    "DataOptions",
    "Dataset",
    "IDX_SETS",
    "IdxSet",
    "fetch_idx_set",
    "fit_config",
    "idx_info",
    "load",
    "load_idx_set",
    "sample_shape",
    "MNIST_FILES",
    "SHA256",
    "Mnist",
    "add_noise",
    "add_noise_numpy",
    "as_flat",
    "as_images",
    "default_cache_dir",
    "fetch_mnist",
    "load_mnist",
    "mnist_info",
    "read_idx",
    "scale",
    "write_idx",
]


def __getattr__(name: str):
    # the cache imports torch lazily but is re-exported lazily too: `aelab data info` stays light
    if name in ("DataCache", "DataOptions"):
        from . import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
