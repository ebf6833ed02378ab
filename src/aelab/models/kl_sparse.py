"""The KL-sparse autoencoder family ``kl_sparse`` (Ng, CS294A lecture notes, "Sparse autoencoder").

Adds ``beta``·Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of code unit j over the batch: each unit
is pushed to be active (near 1) for only a fraction ρ of the inputs. The code units must be
sigmoids (ρ̂ is a probability), which the config checks.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator, model_validator

from ..losses import kl_sparsity
from .ae import LayerAutoencoder
from .base import ModelConfig, float_field


class Config(ModelConfig):
    """A KL-sparse AE: ``rho`` the target mean activation, ``beta`` the weight (Ng: ρ = 0.05, β = 3)."""

    family: Literal["kl_sparse"] = "kl_sparse"
    encoder: tuple[Any, ...] = ("32:sigmoid",)
    rho: float = Field(default=0.05, gt=0.0, lt=1.0)
    beta: float = Field(default=3.0, ge=0.0)

    _float = field_validator("rho", "beta", mode="before")(float_field)

    def term_names(self) -> tuple[str, ...]:
        return ("kl_sparsity",)

    @model_validator(mode="after")
    def _sigmoid_code(self) -> "Config":
        act = getattr(self.encoder[-1], "activation", "linear")
        if act != "sigmoid":
            raise ValueError(f"kl_sparse needs sigmoid code units (their mean activation is compared with rho), "
                             f"but the last encoder layer is {act}; make it sigmoid, e.g. 32:sigmoid")
        return self


class KLSparseAutoencoder(LayerAutoencoder):
    def extra_terms(self, x: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"kl_sparsity": self.config.beta * kl_sparsity(code, self.config.rho)}


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> KLSparseAutoencoder:
    return KLSparseAutoencoder(cfg, generator)


def supports_fast(cfg: Config) -> bool:
    return False


@torch.no_grad()
def diagnostics(model: KLSparseAutoencoder, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """``mean_activation``: ρ̂ averaged over code units on the test split, to compare with ``rho``;
    ``activation_per_unit``: each unit's ρ̂_j; ``kl_sparsity``: Σ_j KL(ρ ‖ ρ̂_j) over the whole split."""
    model.eval()
    code = torch.cat([model.encoder(x[s:s + 4096]) for s in range(0, x.shape[0], 4096)]).double()
    rho_hat = code.mean(dim=0)
    return {"rho": cfg.rho, "mean_activation": float(rho_hat.mean()), "activation_per_unit": rho_hat.tolist(),
            "kl_sparsity": float(kl_sparsity(code, cfg.rho))}
