"""The tied-weights autoencoder family ``tied``: the decoder's weights are the encoder's, transposed.

A dense encoder D → h₁ → … → h_k and a decoder that walks the same sizes back (h_{k−1} … h₁, D),
layer ℓ of the decoder using Wᵀ of the encoder's mirror layer and a bias of its own — half the
weights of an untied model (a classic of the RBM-pretraining era, and the PCA connection for a
linear one). Activations are free per layer.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from .ae import LayerAutoencoder, ShapedSequential
from .base import ModelConfig, make_activation
from .family import Family
from .layers import build_stack


class Config(ModelConfig):
    family: Literal["tied"] = "tied"

    @model_validator(mode="after")
    def _mirrors(self) -> "Config":
        if not self.is_dense():
            raise ValueError("tied weights need dense layers only (a transposed convolution is another family)")
        enc = [self.input_dim] + [l.size for l in self.encoder]
        want = enc[::-1][1:]
        got = [l.size for l in self.decoder]
        if got != want:
            raise ValueError(f"a tied decoder walks the encoder's sizes back: {want}, but the decoder has {got}; "
                             f"write decoder = {[f'{s}:<activation>' for s in want]}")
        return self

    def parameter_count(self) -> int:  # the decoder owns only its biases: its weights are the encoder's
        sizes = [self.input_dim] + [l.size for l in self.encoder]
        return super().parameter_count() - sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


class TiedDecoder(nn.Module):
    """Decoder layer ℓ computes ``act(h @ W_ℓ + b_ℓ)`` with W_ℓ the mirror encoder layer's weight.

    The encoder's Linear modules are held in a plain list, so the shared weights appear once in the
    state dict (under ``encoder.``) and the decoder owns only its biases (``decoder.bias.ℓ``).
    """

    def __init__(self, encoder_linears: list[nn.Linear], activations: list[str]) -> None:
        super().__init__()
        self._mirror = list(reversed(encoder_linears))
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(lin.in_features)) for lin in self._mirror])
        self.acts = nn.ModuleList([make_activation(a) for a in activations])

    def pre(self, h: torch.Tensor) -> torch.Tensor:
        for k, (lin, b) in enumerate(zip(self._mirror, self.bias)):
            h = F.linear(h, lin.weight.t(), b)
            if k < len(self._mirror) - 1:
                h = self.acts[k](h)
        return h

    def __getitem__(self, k: int) -> nn.Module:  # the output activation, as ShapedSequential[-1]
        return self.acts[k]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.acts[-1](self.pre(h))


class TiedAutoencoder(LayerAutoencoder):
    def __init__(self, cfg: Config, generator: Optional[torch.Generator] = None) -> None:
        super(LayerAutoencoder, self).__init__()
        self.config = cfg
        enc, _ = build_stack(cfg.encoder, cfg.view_shape(), generator=generator, init=cfg.init, label="encoder layer")
        self.encoder = ShapedSequential(enc, cfg.view_shape())
        linears = [m for m in self.encoder if isinstance(m, nn.Linear)]
        self.decoder = TiedDecoder(linears, [l.activation for l in cfg.decoder])
        if cfg.init == "torch":  # nn.Linear's bias distribution, U(±1/√fan_in) with the transposed fan_in
            for lin, b in zip(self.decoder._mirror, self.decoder.bias):
                bound = 1.0 / lin.out_features ** 0.5
                with torch.no_grad():
                    b.uniform_(-bound, bound, generator=generator)
        self.output_activation = cfg.decoder[-1].activation


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> TiedAutoencoder:
    return TiedAutoencoder(cfg, generator)


def diagnostics(model: TiedAutoencoder, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """``parameters``: the weights the model trains, about half an untied model's."""
    return {"parameters": int(sum(p.numel() for p in model.parameters()))}


FAMILY = Family(
    name="tied",
    Config=Config,
    build=build,
    diagnostics={"parameters": ("The number of weights and biases the model trains (tied weights: about half an "
                                "untied model's).")},
    shown={"parameters": {"label": "trained parameters", "mode": "ratio"}},
    code="deterministic",
    diagnose=diagnostics,
    label="tied-weights AE",
)
