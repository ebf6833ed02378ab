"""The contractive autoencoder family ``contractive`` (Rifai et al. 2011).

Adds ``lam``·‖∂h/∂x‖²_F, the squared Frobenius norm of the encoder's Jacobian, averaged over the
batch: the code is pushed to change little when the input moves a little. For a one-layer dense
encoder with a sigmoid, tanh, relu or linear code the norm has a closed form
(``Σ_j f′(z_j)² Σ_i W_ji²``, ``losses.contractive_dense``); any other encoder gets the exact
Jacobian by reverse-mode autograd (``losses.contractive_autograd``), one backward pass per code unit.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import torch
from pydantic import Field, field_validator

from ..losses import contractive_autograd, contractive_dense
from .ae import LayerAutoencoder
from .base import ModelConfig, float_field
from .family import Family, diagnostic_number

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


def explain(b: Mapping[str, Any], v: Mapping[str, Any], who: str = "the variant",
            other: str = "the baseline") -> Optional[str]:
    """Whether run ``v``'s code (``who``) is much more or less sensitive to its input than run ``b``'s."""
    vj, bj = diagnostic_number(v, "jacobian_norm"), diagnostic_number(b, "jacobian_norm")
    if vj is not None and bj is not None and vj > 0 and bj > 0:
        if vj < 0.5 * bj:
            return f"{who}'s code is much less sensitive to its input (a smaller encoder Jacobian norm)"
        if vj > 2 * bj:
            return f"{who}'s code is much more sensitive to its input (a larger encoder Jacobian norm)"
    return None


FAMILY = Family(
    name="contractive",
    Config=Config,
    build=build,
    terms={"contractive": (
        "λ·‖∂h/∂x‖²_F, the squared Frobenius norm of the encoder's Jacobian averaged over the batch (Rifai et al. "
        "2011): it makes the code change little when the input moves a little.")},
    term_labels={"contractive": "contractive"},
    term_purposes={"contractive": "a code that changes less when the input moves"},
    diagnostics={
        "jacobian_norm": ("The mean over test images of ‖∂h/∂x‖_F (not squared): how much the code moves when "
                          "the input moves. The contractive term pushes it down."),
        "jacobian_sq": ("The mean over test images of ‖∂h/∂x‖²_F, the quantity the contractive term weights "
                        "by λ."),
    },
    shown={
        "jacobian_norm": {"label": "encoder Jacobian norm ‖∂h/∂x‖_F", "mode": "ratio"},
        "jacobian_sq": {"label": "squared Jacobian norm ‖∂h/∂x‖²_F", "mode": "ratio"},
    },
    code="deterministic",
    diagnose=diagnostics,
    explain=explain,
    label="contractive AE",
)
