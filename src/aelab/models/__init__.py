"""Autoencoder families and their registry.

``FAMILIES`` maps a family name to its builder ``build(cfg: ModelConfig, generator) -> Autoencoder``.
A new family is one new file plus one registry entry; the engine never looks at names.
"""

from __future__ import annotations

from .base import AEOutput, Autoencoder, ACTIVATION_MODULES, make_activation
from .dense import DenseAutoencoder, build_dense

FAMILIES = {
    "dense": build_dense,
}


def build_model(cfg, generator=None) -> Autoencoder:
    """Build the autoencoder described by ``cfg`` (a ModelConfig), initialised from ``generator``."""
    return FAMILIES[cfg.family](cfg, generator)


__all__ = ["AEOutput", "Autoencoder", "DenseAutoencoder", "FAMILIES", "build_model", "make_activation", "ACTIVATION_MODULES"]
