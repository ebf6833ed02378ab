"""The names of what ships with aelab — model families, data sets, activations, studies — readable without
importing any of them.

The command line's parser names them in its help and choices, and it must be built without
PyTorch, NumPy or pydantic (``aelab --help`` in a tenth of a second, not 2–3 s): the registries
themselves (:data:`aelab.models.FAMILIES`, :data:`aelab.data.SOURCES`) live in packages that load
those on import. So the shipped names are repeated here, and ``tests/test_cli.py`` checks them
against the registries: a family or data set added to aelab but not here fails that test. (A
family or source registered from code at run time is known to its registry only; the CLI takes
it all the same, ``--family``/``--dataset`` are not restricted to these names.)
Studies are listed from the shipped TOML files themselves.
"""

from __future__ import annotations

from importlib import resources

#: the model families aelab ships (``aelab.models.FAMILIES``), the default first
FAMILIES = ("ae", "vae", "contractive", "kl_sparse", "tied", "vqvae", "iwae", "tcvae", "cvae")
#: the registered data sets aelab ships (``aelab.data.SOURCES``, besides paths), the default first
DATASETS = ("mnist", "fashion-mnist", "kmnist", "digits", "synthetic", "shapes")
#: of those, the IDX sets ``aelab data fetch`` downloads into the cache
IDX_SETS = ("mnist", "fashion-mnist", "kmnist")
#: the activations a layer takes (``aelab.models.layers.ACTIVATION_MODULES``)
ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "elu", "selu", "softplus", "leaky_relu")


def studies() -> list[str]:
    """The shipped studies' names (``aelab/studies/*.toml``), sorted."""
    return sorted(p.name[:-5] for p in resources.files("aelab.studies").iterdir() if p.name.endswith(".toml"))


__all__ = ["ACTIVATIONS", "DATASETS", "FAMILIES", "IDX_SETS", "studies"]
