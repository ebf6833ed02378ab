"""The β-TCVAE family ``tcvae`` (Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement
in Variational Autoencoders").

The model is a VAE; its KL term E_x[KL(q(z|x) ‖ p(z))] is split into three parts (their eq. 2),
each with its own weight:

    α · I_q(x; z)                      index-code mutual information  E[log q(z|x) − log q(z)]
  + β · KL(q(z) ‖ Π_d q(z_d))          total correlation              E[log q(z) − Σ_d log q(z_d)]
  + γ · Σ_d KL(q(z_d) ‖ p(z_d))        dimension-wise KL              E[Σ_d log q(z_d) − log p(z)]

With α = β = γ = 1 it is the VAE's objective (with a sampled KL); β > 1 penalises only the total
correlation, the dependence between the code's dimensions, which is what the paper argues makes
β-VAE's codes disentangled. The aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) is estimated on the
batch by minibatch-weighted sampling (their eq. 5):

    log q(z_i) ≈ log Σ_j q(z_i|x_j) − log(N·M),   log q(z_i,d) likewise per dimension,

z_i the sample of image i, j over the M images of the batch, N = ``dataset_size`` (the training
set's size: it shifts the terms' values by constants, not their gradients). Each term is in nats
per image, reduced over the batch as the VAE's ``reduction`` says. ``encode`` gives μ.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator

from .. import likelihood as LH
from .base import AEOutput, float_field, output
from .family import Family
from .vae import FAMILY as VAE_FAMILY
from .vae import VAE
from .vae import Config as VAEConfig
from .vae import diagnostics as vae_diagnostics
from .vae import explain as vae_explain

TERMS = ("mi", "tc", "dim_kl")


class Config(VAEConfig):
    """A β-TCVAE: a VAE's layers and ``latent``; ``alpha``, ``beta``, ``gamma`` weigh the mutual
    information, the total correlation and the dimension-wise KL (the paper: 1, 6, 1);
    ``dataset_size``: N of the minibatch-weighted sampling (the training set's size)."""

    family: Literal["tcvae"] = "tcvae"  # type: ignore[assignment]
    alpha: float = Field(default=1.0, ge=0.0)
    beta: float = Field(default=6.0, ge=0.0)
    gamma: float = Field(default=1.0, ge=0.0)
    dataset_size: int = Field(default=60_000, ge=1)

    _float2 = field_validator("alpha", "gamma", mode="before")(float_field)

    def term_names(self) -> tuple[str, ...]:
        return TERMS


def decomposition(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """Per image (M,): the mutual information, total correlation and dimension-wise KL parts of
    log q(z|x) − log p(z) for samples ``z`` (M, L) of posteriors (``mu``, ``logvar``), q(z) estimated
    by minibatch-weighted sampling with data set size ``n``."""
    m = z.shape[0]
    log_qz_x = LH.log_normal(z, mu, logvar)  # (M,)
    log_pz = LH.log_standard_normal(z)
    # log q(z_i,d | x_j): (M, M, L)
    mat = -0.5 * (LH.LOG_2PI + logvar[None] + (z[:, None] - mu[None]).pow(2) * torch.exp(-logvar[None]))
    log_nm = math.log(n * m)
    log_qz = torch.logsumexp(mat.sum(2), dim=1) - log_nm
    log_qz_dims = (torch.logsumexp(mat, dim=1) - log_nm).sum(1)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_qz_dims, "dim_kl": log_qz_dims - log_pz}


class TCVAE(VAE):
    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        mu, logvar = self.encoder.distribution(x)
        if rng is not None:
            eps = torch.randn(mu.shape, generator=rng, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu
        pre = self.decoder.pre(z)
        recon = self.decoder[-1](pre)
        logits = pre if self.output_activation == "sigmoid" else None
        parts = decomposition(z, mu, logvar, self.config.dataset_size)
        w = {"mi": self.config.alpha, "tc": self.config.beta, "dim_kl": self.config.gamma}
        red = (lambda v: v.sum()) if self.config.reduction == "sum" else (lambda v: v.mean())
        return output(recon, mu, logits, {k: w[k] * red(parts[k]) for k in TERMS})


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> TCVAE:
    return TCVAE(cfg, generator)


#: test images the decomposition diagnostic uses (its cost grows with their square)
DECOMPOSITION_IMAGES = 500


@torch.no_grad()
def diagnostics(model: TCVAE, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """The VAE's diagnostics and the KL's three parts on the first :data:`DECOMPOSITION_IMAGES` test
    images, unweighted, in nats per image: ``mutual_information``, ``total_correlation``,
    ``dimension_kl``, with q(z) their own mixture (N = those images), one sample of z each."""
    out = vae_diagnostics(model, x, cfg, loss)
    xs = x[:DECOMPOSITION_IMAGES]
    mu, logvar = model.encoder.distribution(xs)
    g = torch.Generator().manual_seed(0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=mu.dtype).to(mu.device)
    parts = decomposition(z.double(), mu.double(), logvar.double(), 1)  # log(1·M): the mixture of these M images
    out.update({"mutual_information": float(parts["mi"].mean()), "total_correlation": float(parts["tc"].mean()),
                "dimension_kl": float(parts["dim_kl"].mean()), "decomposition_images": int(xs.shape[0])})
    return out


FAMILY = Family(
    name="tcvae",
    Config=Config,
    build=build,
    terms={
        "mi": ("α·E[log q(z|x) − log q(z)], the index-code mutual information I(x; z) per image, q(z) by "
               "minibatch-weighted sampling: how much the code says about which image it came from."),
        "tc": ("β·E[log q(z) − Σ_d log q(z_d)], the total correlation KL(q(z) ‖ Π_d q(z_d)) per image: how "
               "dependent the code's dimensions are. β > 1 pushes them towards independence (disentanglement)."),
        "dim_kl": ("γ·E[Σ_d log q(z_d) − log p(z)], the dimension-wise KL Σ_d KL(q(z_d) ‖ N(0, 1)) per image: "
                   "how far each dimension's aggregate posterior is from the prior."),
    },
    term_labels={"mi": "mutual information", "tc": "total correlation", "dim_kl": "dimension-wise KL"},
    term_purposes={"mi": "a code that says less about each image", "tc": "independent code dimensions",
                   "dim_kl": "code dimensions distributed as the prior"},
    diagnostics={**VAE_FAMILY.diagnostics,
                 "mutual_information": ("I(x; z) on the test split in nats per image (the first test images, "
                                        "q(z) their mixture), unweighted by α."),
                 "total_correlation": ("KL(q(z) ‖ Π_d q(z_d)) on the test split in nats per image, unweighted by "
                                       "β: 0 when the code's dimensions are independent."),
                 "dimension_kl": "Σ_d KL(q(z_d) ‖ N(0, 1)) on the test split in nats per image, unweighted by γ.",
                 "decomposition_images": "The test images the KL decomposition is computed on."},
    shown={**VAE_FAMILY.shown,
           "mutual_information": {"label": "index-code mutual information (nats)", "mode": "ratio"},
           "total_correlation": {"label": "total correlation (nats)", "mode": "ratio"},
           "dimension_kl": {"label": "dimension-wise KL (nats)", "mode": "ratio"},
           "decomposition_images": {"label": "test images of the KL decomposition", "mode": None, "table": False}},
    code="mean",
    stochastic=True,
    diagnose=diagnostics,
    explain=vae_explain,
    label="β-TCVAE",
)
