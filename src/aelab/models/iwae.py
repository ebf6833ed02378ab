"""The importance-weighted autoencoder family ``iwae`` (Burda, Grosse & Salakhutdinov 2016).

The model is a VAE (the same encoder with μ and log σ² heads, the same decoder); the objective is
the K-sample importance-weighted bound instead of the ELBO:

    L_K(x) = E[log (1/K) Σ_k w_k],   w_k = p(x|z_k) p(z_k) / q(z_k|x),   z_1 … z_K ~ q(z|x),

which equals the ELBO for K = 1 and tightens towards log p(x) as K grows; its gradient weighs
each sample by its normalised weight w̃_k, so the encoder is no longer asked to cover only where
one sample lands. aelab trains −L_K, split so that the history stays comparable with a VAE's:

- ``kl``: mean_k [log q(z_k|x) − log p(z_k)], the K-sample Monte Carlo estimate of KL(q ‖ p);
- the reconstruction: −L_K − kl, which for K = 1 is exactly the sample's −log p(x|z), and for
  K > 1 also holds the bound's gain over the ELBO (so reconstruction + kl = −L_K always).

log p(x|z) is the config's loss summed over an image's values (the Bernoulli log-likelihood for
BCE, the papers' choice). Both are reduced per image as the VAE's ``reduction`` says. Without a
generator (evaluation without sampling), the one "sample" is μ: a deterministic K = 1 bound.
``encode`` gives μ.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from pydantic import Field, model_validator

from .. import likelihood as LH
from ..losses import reconstruction_elementwise
from .base import AEOutput, output
from .family import Family
from .vae import FAMILY as VAE_FAMILY
from .vae import NLL_DOCS, NLL_SHOWN, VAE
from .vae import Config as VAEConfig
from .vae import diagnostics as vae_diagnostics
from .vae import explain as vae_explain


class Config(VAEConfig):
    """An IWAE: a VAE's layers and ``latent``, trained on the ``samples``-sample bound (K; the paper: 5, 50)."""

    family: Literal["iwae"] = "iwae"  # type: ignore[assignment]
    samples: int = Field(default=5, ge=1, le=5000)

    @model_validator(mode="after")
    def _no_beta(self) -> "Config":
        if self.beta != 1.0:
            raise ValueError(f"the importance-weighted bound has no β (got beta = {self.beta}); leave beta at 1, or "
                             "use the vae family for a β-VAE")
        return self

    def activation_count(self) -> int:  # K decoded images and codes per sample
        return super().activation_count() + (self.samples - 1) * (self.input_dim + 3 * self.latent)


class IWOutput(AEOutput):
    """:class:`AEOutput` carrying the K samples' decoder outputs (``samples``: logits or outputs (K, B, D),
    whether they are logits, and Σ log p(z) − log q(z|x) per sample (K, B)) for :meth:`IWAE.reconstruction`."""


class IWAE(VAE):
    def __init__(self, cfg: Config, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(cfg, generator)

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        mu, logvar = self.encoder.distribution(x)
        k = self.config.samples if rng is not None else 1
        if rng is not None:
            eps = torch.randn((k, *mu.shape), generator=rng, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu[None]
        b, l = mu.shape
        pre = self.decoder.pre(z.reshape(k * b, l))
        outs = self.decoder[-1](pre)
        sig = self.output_activation == "sigmoid"
        prior_ratio = LH.log_standard_normal(z) - LH.log_normal(z, mu, logvar)  # (K, B): log p(z) − log q(z|x)
        kl = self._reduce(-prior_ratio.mean(0))
        out = output(outs[:b], mu, pre[:b] if sig else None, {"kl": kl})
        iw = IWOutput(*out)
        iw.samples = ((pre if sig else outs).reshape(k, b, -1), sig, prior_ratio)
        return iw

    def _reduce(self, per_image: torch.Tensor) -> torch.Tensor:
        return per_image.sum() if self.config.reduction == "sum" else per_image.mean()

    def reconstruction(self, out: AEOutput, y: torch.Tensor, loss: str) -> torch.Tensor:
        """−L_K − kl (see the module): reconstruction + kl is the negative K-sample bound."""
        samples = getattr(out, "samples", None)
        if samples is None:  # an output built elsewhere: the VAE's reconstruction of it
            return super().reconstruction(out, y, loss)
        vals, are_logits, prior_ratio = samples
        k, b, d = vals.shape
        flat = vals.reshape(k * b, d)
        rec = reconstruction_elementwise(loss, y.repeat(k, 1), flat if not are_logits else torch.sigmoid(flat),
                                         flat if are_logits else None).sum(-1).reshape(k, b)
        log_w = -rec + prior_ratio
        bound = torch.logsumexp(log_w, dim=0) - math.log(k)  # (B,)
        return self._reduce(-bound) - out.terms["kl"]


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> IWAE:
    return IWAE(cfg, generator)


@torch.no_grad()
def diagnostics(model: IWAE, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """The VAE's diagnostics (ELBO, KL, active units, the test NLL) and ``samples``, the K it trains with."""
    return {**vae_diagnostics(model, x, cfg, loss), "samples": cfg.samples}


FAMILY = Family(
    name="iwae",
    Config=Config,
    build=build,
    terms={"kl": ("mean_k [log q(z_k|x) − log p(z_k)], the K-sample Monte Carlo estimate of KL(q(z|x) ‖ N(0, I)) "
                  "in nats per image; with the reconstruction it makes the negative importance-weighted bound "
                  "−L_K = −log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x) (Burda et al. 2016).")},
    term_labels={"kl": "KL (sampled)"},
    term_purposes={"kl": "a posterior closer to the prior, weighed by the importance-weighted bound"},
    diagnostics={**{k: v for k, v in VAE_FAMILY.diagnostics.items() if k not in NLL_DOCS}, **NLL_DOCS,
                 "samples": "K, the importance samples per image the bound is trained with."},
    shown={**{k: v for k, v in VAE_FAMILY.shown.items() if k not in NLL_SHOWN}, **NLL_SHOWN,
           "samples": {"label": "importance samples K (training)", "mode": "count"}},
    code="mean",
    stochastic=True,
    diagnose=diagnostics,
    explain=vae_explain,
    label="IWAE",
)
