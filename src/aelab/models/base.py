"""The contract every autoencoder family meets, and the Keras activation functions.

An :class:`Autoencoder` is a pure ``nn.Module``: built from a config, holding no data. It has an
``encoder`` and a ``decoder`` that work alone (as the seed notebook splits its ``Sequential``),
and ``forward`` returns a small fixed :class:`AEOutput`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn


class AEOutput(NamedTuple):
    """What ``Autoencoder.forward`` returns.

    recon:   (B, D) the reconstruction (after the output activation).
    code:    (B, K) the code-layer activations.
    logits:  (B, D) the output layer's pre-activation when it is a sigmoid (so BCE can take
             Keras' stable logits path), else None.
    penalty: scalar tensor, the regularisation added to the loss (0 when there is none).
    """

    recon: torch.Tensor
    code: torch.Tensor
    logits: Optional[torch.Tensor]
    penalty: torch.Tensor


class Autoencoder(nn.Module):
    """Base class: subclasses set ``self.encoder``, ``self.decoder`` and ``self.config``."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)


class LeakyReLU02(nn.LeakyReLU):
    """Keras 3's ``leaky_relu`` uses a negative slope of 0.2 (PyTorch's default is 0.01)."""

    def __init__(self) -> None:
        super().__init__(negative_slope=0.2)


#: Keras activation name → module. Keras' elu has alpha 1, selu the standard constants.
ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "leaky_relu": LeakyReLU02,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATION_MODULES[name]()
