"""Autoencoder families and their registry.

``FAMILIES`` maps a family name to its module (see ``base.py`` for what a family module holds:
``Config``, ``build``, ``supports_fast``, ``diagnostics``). A new family is one new file plus one
entry here; the engine, the run directories, the study runner and the report never look at names.
"""

from __future__ import annotations

from . import ae, contractive, kl_sparse, tied, vae
from .base import ACTIVATION_MODULES, AEOutput, Autoencoder, ModelConfig, make_activation
from .dense import DenseAutoencoder

FAMILIES = {
    "ae": ae,
    "vae": vae,
    "contractive": contractive,
    "kl_sparse": kl_sparse,
    "tied": tied,
}


def build_model(cfg, generator=None) -> Autoencoder:
    """Build the autoencoder described by ``cfg`` (a family's Config), initialised from ``generator``."""
    return FAMILIES[cfg.family].build(cfg, generator)


def family_of(cfg):
    """The module of ``cfg``'s family."""
    return FAMILIES[cfg.family]


__all__ = ["AEOutput", "Autoencoder", "DenseAutoencoder", "FAMILIES", "ModelConfig", "build_model", "family_of",
           "make_activation", "ACTIVATION_MODULES"]
