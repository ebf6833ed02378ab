"""The plain autoencoder family ``ae``: reconstruction, plus Keras' activity L1 on the code if asked.

This is the seed notebook's model and the Keras blog's dense, sparse, deep and convolutional
autoencoders. It also holds what the other families build on: :class:`ShapedSequential` (a layer
stack that takes and returns flat samples, so an encoder or decoder works alone on any data the
engine holds as ``(N, D)``) and :class:`LayerAutoencoder` (an encoder stack and a decoder stack).
A configuration made only of dense layers builds :class:`~aelab.models.dense.DenseAutoencoder`,
the very model the stacked fast path trains and exports, so both engine paths agree bit for bit.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, field_validator
from torch import nn

from ..losses import activity_l1
from .base import AEOutput, Autoencoder, FastPlan, ModelConfig, float_field, output
from .dense import DenseAutoencoder
from .family import Family
from .layers import build_stack


class Config(ModelConfig):
    """A plain autoencoder. ``activity_l1``: Keras ``activity_regularizer=l1(λ)`` on the code, λ·Σ|h| / B."""

    family: Literal["ae"] = "ae"
    activity_l1: float = Field(default=0.0, ge=0.0)

    _float = field_validator("activity_l1", mode="before")(float_field)

    def term_names(self) -> tuple[str, ...]:
        return ("activity_l1",) if self.activity_l1 > 0 else ()

    def fast_plan(self) -> Optional[FastPlan]:
        """Dense layers with any activation and the activity L1 on the code: all the fast path needs."""
        return self.dense_plan(self.activity_l1, "activity_l1")


class ShapedSequential(nn.Sequential):
    """A layer stack on flat samples: ``(B, D_in)`` → view as ``in_shape`` → layers → ``(B, D_out)``.

    The modules alternate [layer, activation] (see ``layers.build_stack``), so ``pre(x)`` gives
    the last layer's pre-activation (for BCE's logits path) and ``self[-1]`` its activation.
    """

    def __init__(self, net: nn.Sequential, in_shape: tuple[int, ...]) -> None:
        super().__init__(*net)
        self.in_shape = tuple(in_shape)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.in_shape)
        for m in list(self)[:-1]:
            h = m(h)
        return h.reshape(h.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self[-1](self.pre(x))


def stacks(cfg: ModelConfig, generator: Optional[torch.Generator]) -> tuple[ShapedSequential, ShapedSequential]:
    """The encoder and decoder stacks of ``cfg``, initialised from ``generator`` in that order."""
    enc, _ = build_stack(cfg.encoder, cfg.view_shape(), generator=generator, init=cfg.init, label="encoder layer")
    dec, _ = build_stack(cfg.decoder, cfg.latent_shape(), generator=generator, init=cfg.init, label="decoder layer")
    return ShapedSequential(enc, cfg.view_shape()), ShapedSequential(dec, cfg.latent_shape())


def last_activation(layers) -> str:
    return getattr(layers[-1], "activation", "linear")


class LayerAutoencoder(Autoencoder):
    """Any encoder stack and decoder stack. ``forward(x: (B, D)) -> AEOutput`` with flat tensors.

    Subclasses add their terms in :meth:`extra_terms`; this class adds Keras' activity L1 when the
    config has ``activity_l1 > 0``.
    """

    def __init__(self, cfg: ModelConfig, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.config = cfg
        self.encoder, self.decoder = stacks(cfg, generator)
        self.output_activation = last_activation(cfg.decoder)

    def extra_terms(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        lam = float(getattr(self.config, "activity_l1", 0.0))
        return {"activity_l1": activity_l1(code, lam)} if lam > 0 else {}

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        code = self.encoder(x)
        pre = self.decoder.pre(code)
        recon = self.decoder[-1](pre)
        logits = pre if self.output_activation == "sigmoid" else None
        return output(recon, code, logits, self.extra_terms(x, code))


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> Autoencoder:
    if cfg.is_dense():
        return DenseAutoencoder(cfg, generator)
    return LayerAutoencoder(cfg, generator)


def supports_fast(cfg: Config) -> bool:
    """The stacked fast path implements dense layers, every activation, and the activity L1."""
    return cfg.fast_plan() is not None


FAMILY = Family(
    name="ae",
    Config=Config,
    build=build,
    terms={"activity_l1": (
        "λ·Σ|h|, the L1 norm of the code h per image weighted by λ (Keras' activity_regularizer=l1(λ)): it pushes "
        "code values to 0, making the code sparse and small.")},
    term_labels={"activity_l1": "activity L1"},
    term_purposes={"activity_l1": "a smaller code"},
    code="deterministic",
    supports_fast=supports_fast,
    label="autoencoder",
)
