"""The contractive autoencoder family ``contractive`` (Rifai et al. 2011).

Adds ``lam``·‖∂h/∂x‖²_F, the squared Frobenius norm of the encoder's Jacobian, averaged over the
batch: the code is pushed to change little when the input moves a little. For a one-layer dense
encoder with a sigmoid, tanh, relu or linear code the norm has a closed form
(``Σ_j f′(z_j)² Σ_i W_ji²``, ``losses.contractive_dense``); any other encoder gets the exact
Jacobian by reverse-mode autograd (``losses.contractive_autograd``), one backward pass per code unit.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator

from ..losses import contractive_autograd, contractive_dense
from .ae import LayerAutoencoder
from .base import ModelConfig, float_field

CLOSED_FORM = ("sigmoid", "tanh", "relu", "linear")


class Config(ModelConfig):
    """A contractive AE; the reference uses a sigmoid code: Dense(·, sigmoid) → Dense(784, sigmoid)."""

    family: Literal["contractive"] = "contractive"
    encoder: tuple[Any, ...] = ("32:sigmoid",)
    lam: float = Field(default=1e-4, ge=0.0)

    _float = field_validator("lam", mode="before")(float_field)

    def term_names(self) -> tuple[str, ...]:
        return ("contractive",)


class ContractiveAutoencoder(LayerAutoencoder):
    def _closed_form(self) -> bool:
        enc = self.config.encoder
        return len(enc) == 1 and enc[0].kind == "dense" and enc[0].activation in CLOSED_FORM

    def jacobian_sq(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """‖∂h/∂x‖²_F averaged over the batch."""
        if self._closed_form():
            return contractive_dense(code, self.encoder[0].weight, self.config.encoder[0].activation)
        with torch.enable_grad():
            return contractive_autograd(self.encoder, x)

    def extra_terms(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"contractive": self.config.lam * self.jacobian_sq(x, code)}


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> ContractiveAutoencoder:
    return ContractiveAutoencoder(cfg, generator)


def supports_fast(cfg: Config) -> bool:
    return False  # the Jacobian term lives on the autograd path


@torch.no_grad()
def diagnostics(model: ContractiveAutoencoder, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """``jacobian_norm``: the mean over test images of ‖∂h/∂x‖_F (not squared), the encoder's
    sensitivity to its input; ``jacobian_sq``: the mean of the squared norm the penalty uses."""
    model.eval()
    norms = []
    for s in range(0, x.shape[0], 256):
        xb = x[s:s + 256]
        if model._closed_form():
            code = model.encoder(xb)
            per = torch.stack([contractive_dense(code[i:i + 1], model.encoder[0].weight, cfg.encoder[0].activation)
                               for i in range(code.shape[0])])
        else:
            with torch.enable_grad():
                per = torch.stack([contractive_autograd(model.encoder, xb[i:i + 1]) for i in range(xb.shape[0])])
        norms.append(per.detach().double())
    sq = torch.cat(norms)
    return {"jacobian_norm": float(sq.sqrt().mean()), "jacobian_sq": float(sq.mean())}
