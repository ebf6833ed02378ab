"""Autoencoder families and their registry.

``FAMILIES`` maps a family name to its :class:`~aelab.models.family.Family`, the one object each
family file defines as ``FAMILY``: its config, builder, loss terms and diagnostics with their
docs, what its code is, whether the fast path takes it, what the report may say about it. A new
family is one new file plus one entry here, or :func:`register_family` from outside the package;
the engine, the run directories, the study runner and the report never look at names.
"""

from __future__ import annotations

from typing import Any, Union

from ..errors import ConfigError
from . import ae, contractive, cvae, iwae, kl_sparse, tcvae, tied, vae, vqvae
from .base import ACTIVATION_MODULES, AEOutput, Autoencoder, ModelConfig, make_activation
from .dense import DenseAutoencoder
from .family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (ae.FAMILY, vae.FAMILY, contractive.FAMILY, kl_sparse.FAMILY,
                                                    tied.FAMILY, vqvae.FAMILY, iwae.FAMILY,
                                                    tcvae.FAMILY, cvae.FAMILY)}


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (a family defined outside aelab, or in a test); a name taken
    by another family is one :class:`~aelab.errors.ConfigError` line. Registering the same object again
    changes nothing. Configs built afterwards accept ``model.family = family.name``."""
    if not isinstance(family, Family):
        raise ConfigError(f"register_family takes an aelab.models.Family, not {type(family).__name__}")
    have = FAMILIES.get(family.name)
    if have is not None and have is not family:
        raise ConfigError(f"a model family named {family.name!r} is registered already; give the new one another name")
    FAMILIES[family.name] = family
    return family


def family_of(name_or_cfg: Union[str, Any]) -> Family:
    """The :class:`Family` of a family name or of a model config (anything with a ``family`` field);
    an unknown name is one :class:`~aelab.errors.ConfigError` line listing the known ones."""
    name = name_or_cfg if isinstance(name_or_cfg, str) else getattr(name_or_cfg, "family", None)
    fam = FAMILIES.get(name) if isinstance(name, str) else None
    if fam is None:
        raise ConfigError(f"unknown model family {name!r}; families: {', '.join(FAMILIES)}")
    return fam


def build_model(cfg, generator=None) -> Autoencoder:
    """Build the autoencoder described by ``cfg`` (a family's Config), initialised from ``generator``."""
    return family_of(cfg).build(cfg, generator)


__all__ = ["AEOutput", "Autoencoder", "DenseAutoencoder", "FAMILIES", "Family", "ModelConfig", "build_model",
           "family_of", "make_activation", "register_family", "ACTIVATION_MODULES"]
