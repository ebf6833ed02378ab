"""The base of every validated config object, and the Keras activation names.

Kept apart from :mod:`aelab.config` so that the model modules (layer specs, family configs) can
define their own validated pieces without importing the config module that assembles them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "elu", "selu", "softplus", "leaky_relu")
Activation = Literal["relu", "sigmoid", "tanh", "linear", "elu", "selu", "softplus", "leaky_relu"]


class Frozen(BaseModel):
    """Frozen, strict, no unknown keys: a config is validated once, when it is built."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
