"""The KL-sparse autoencoder family ``kl_sparse`` (Ng, CS294A lecture notes, "Sparse autoencoder").

Adds ``beta``·Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of code unit j over the batch: each unit
is pushed to be active (near 1) for only a fraction ρ of the inputs. The code units must be
sigmoids (ρ̂ is a probability), which the config checks.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import torch
from pydantic import Field, field_validator, model_validator

from ..losses import kl_sparsity
from .ae import LayerAutoencoder
from .base import ModelConfig, float_field
from .family import Family, diagnostic_number


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


@torch.no_grad()
def diagnostics(model: KLSparseAutoencoder, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """``mean_activation``: ρ̂ averaged over code units on the test split, to compare with ``rho``;
    ``activation_per_unit``: each unit's ρ̂_j; ``kl_sparsity``: Σ_j KL(ρ ‖ ρ̂_j) over the whole split."""
    model.eval()
    code = torch.cat([model.encoder(x[s:s + 4096]) for s in range(0, x.shape[0], 4096)]).double()
    rho_hat = code.mean(dim=0)
    return {"rho": cfg.rho, "mean_activation": float(rho_hat.mean()), "activation_per_unit": rho_hat.tolist(),
            "kl_sparsity": float(kl_sparsity(code, cfg.rho))}


def explain(b: Mapping[str, Any], v: Mapping[str, Any], who: str = "the variant",
            other: str = "the baseline") -> Optional[str]:
    """Whether run ``v``'s code (``who``) is far from the sparsity its target ρ asks for."""
    vm, vr = diagnostic_number(v, "mean_activation"), diagnostic_number(v, "rho")
    if vm is not None and vr is not None and vr > 0:
        if vm > 2 * vr:
            return f"{who}'s code is far less sparse than its target: its mean activation is well above ρ"
        if vm < 0.5 * vr:
            return (f"{who}'s code units are active far less often than the target ρ asks (its mean activation "
                    "is well below ρ)")
    return None


FAMILY = Family(
    name="kl_sparse",
    Config=Config,
    build=build,
    terms={"kl_sparsity": (
        "β·Σ_j KL(ρ ‖ ρ̂_j), ρ̂_j the mean activation of code unit j over the batch (Ng's sparse autoencoder): it "
        "pushes each unit to be active for only a fraction ρ of the inputs.")},
    term_labels={"kl_sparsity": "KL sparsity"},
    term_purposes={"kl_sparsity": "code units that fire for only a small fraction of the inputs"},
    diagnostics={
        "mean_activation": ("ρ̂, the mean activation of the code units over the test split (averaged over "
                            "units), to compare with the target ρ of the KL-sparsity term: a sparse code has "
                            "ρ̂ near ρ."),
        "rho": "ρ, the target mean activation of each code unit that the KL-sparsity term asks for.",
        "activation_per_unit": ("ρ̂_j, each code unit's mean activation over the test split (shown as its "
                                "range)."),
        "kl_sparsity": ("Σ_j KL(ρ ‖ ρ̂_j) with ρ̂_j measured over the whole test split, unweighted by β: 0 "
                        "when every unit's mean activation is exactly ρ."),
    },
    shown={
        "mean_activation": {"label": "mean code activation ρ̂ (target ρ)", "mode": "ratio", "target": "rho",
                            "target_symbol": "ρ"},
        "rho": {"label": "target activation ρ", "mode": "ratio"},
        "activation_per_unit": {"label": "ρ̂ per code unit (min – max)", "mode": None},
        "kl_sparsity": {"label": "Σ KL(ρ ‖ ρ̂_j) on the test split (β not applied)", "mode": "ratio"},
    },
    code="deterministic",
    diagnose=diagnostics,
    explain=explain,
    label="KL-sparse AE",
)
