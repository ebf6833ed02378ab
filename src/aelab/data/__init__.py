"""The data layer: MNIST from verified sources, the IDX format, and array transforms.

Only the public API is re-exported here; see :mod:`aelab.data.sources` (where MNIST comes from),
:mod:`aelab.data.idx` (the file format) and :mod:`aelab.data.transforms` (scaling and noise).
"""

from .idx import read_idx, write_idx
from .sources import (
    MNIST_FILES,
    SHA256,
    Mnist,
    default_cache_dir,
    fetch_mnist,
    load_mnist,
    mnist_info,
)
from .transforms import add_noise, add_noise_numpy, as_flat, as_images, scale

__all__ = [
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
