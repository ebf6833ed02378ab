"""The variational autoencoder family ``vae`` (Kingma & Welling 2014), β-VAE with ``beta``.

The encoder stack gives features; two linear heads give μ and log σ² of ``latent`` dimensions;
``z = μ + exp(½ log σ²)·ε`` with ε drawn from the generator the engine passes (seeded per epoch
and batch, so a resumed run samples exactly the same ε); the decoder maps z back. The objective
is the reconstruction term plus ``beta``·KL(q(z|x) ‖ N(0, I)), both reduced as the reference does:

- ``reduction = "sum_mean"``: per image, sum over pixels, then mean over the batch — keras.io's VAE;
- ``reduction = "sum"``: sum over pixels and the batch — pytorch/examples' VAE (its printed loss is
  that sum divided by the number of images, which is what aelab reports for it too).

``encode`` (and ``model.encoder``) return the deterministic code μ.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator
from torch import nn

from ..losses import kl_normal_elementwise, reconstruction_elementwise, reduce_per_sample
from .ae import ShapedSequential, last_activation
from .base import AEOutput, Autoencoder, ModelConfig, float_field, output


class Config(ModelConfig):
    """A VAE: ``encoder`` up to the features, ``latent`` μ/log σ² heads, ``decoder`` from z.

    The defaults are pytorch/examples' VAE: 784 → 400 (relu) → 20 → 400 (relu) → 784 (sigmoid).
    """

    family: Literal["vae"] = "vae"
    encoder: tuple[Any, ...] = ("400:relu",)
    decoder: tuple[Any, ...] = ("400:relu", "784:sigmoid")
    latent: int = Field(default=20, gt=0, le=100_000)
    beta: float = Field(default=1.0, ge=0.0)
    reduction: Literal["sum_mean", "sum"] = "sum_mean"

    _float = field_validator("beta", mode="before")(float_field)

    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent,)

    def parameter_count(self) -> int:  # the two stacks and the μ and log σ² heads
        return super().parameter_count() + 2 * (math.prod(self.code_shape()) + 1) * self.latent

    def activation_count(self) -> int:  # μ, log σ² and z besides the stacks' outputs
        return super().activation_count() + 3 * self.latent

    def term_names(self) -> tuple[str, ...]:
        return ("kl",)


class VAEEncoder(nn.Module):
    """``features`` (a layer stack) then the μ and log σ² heads; ``forward`` gives μ (the code)."""

    def __init__(self, features: ShapedSequential, n_features: int, latent: int) -> None:
        super().__init__()
        self.features = features
        self.mu = nn.Linear(n_features, latent)
        self.logvar = nn.Linear(n_features, latent)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.features(x))


class VAE(Autoencoder):
    stochastic = True

    def __init__(self, cfg: Config, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        from .layers import _init_keras, _init_torch, build_stack

        self.config = cfg
        feats, shape = build_stack(cfg.encoder, cfg.view_shape(), generator=generator, init=cfg.init,
                                   label="encoder layer")
        n_feat = int(math.prod(shape))
        self.encoder = VAEEncoder(ShapedSequential(feats, cfg.view_shape()), n_feat, cfg.latent)
        init = _init_keras if cfg.init == "keras" else _init_torch
        init(self.encoder.mu, generator)  # keras.io: z_mean, then z_log_var; pytorch: fc21, then fc22
        init(self.encoder.logvar, generator)
        dec, _ = build_stack(cfg.decoder, (cfg.latent,), generator=generator, init=cfg.init, label="decoder layer")
        self.decoder = ShapedSequential(dec, (cfg.latent,))
        self.output_activation = last_activation(cfg.decoder)

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        mu, logvar = self.encoder.distribution(x)
        if rng is not None:
            eps = torch.randn(mu.shape, generator=rng, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:  # no generator: the deterministic decoding of μ
            z = mu
        pre = self.decoder.pre(z)
        recon = self.decoder[-1](pre)
        logits = pre if self.output_activation == "sigmoid" else None
        kl = reduce_per_sample(kl_normal_elementwise(mu, logvar), self.config.reduction)
        return output(recon, mu, logits, {"kl": self.config.beta * kl})

    def report_divisor(self, batch: int) -> int:
        return batch if self.config.reduction == "sum" else 1

    def reconstruction(self, out: AEOutput, y: torch.Tensor, loss: str) -> torch.Tensor:
        return reduce_per_sample(reconstruction_elementwise(loss, y, out.recon, out.logits), self.config.reduction)


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> VAE:
    return VAE(cfg, generator)


def supports_fast(cfg: Config) -> bool:
    return False  # sampling and the KL term live on the autograd path


#: Burda et al. 2016: a latent unit is active when Cov_x(E[z_j | x]) exceeds this.
ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def diagnostics(model: VAE, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """What a VAE is studied for, on ``x`` (the test split), per image and in nats:

    - ``elbo``: the evidence lower bound E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), with one sample of z
      per image from a fixed generator, and the reconstruction as the config's loss (so for BCE
      on [0, 1] pixels, −elbo is the usual "loss per image");
    - ``reconstruction`` and ``kl``: its two parts (KL in closed form, unweighted by β);
    - ``kl_per_dim``: the mean KL of each latent dimension — a dimension near 0 carries nothing;
    - ``active_units``: latent units with Cov_x(μ_j(x)) > 0.01 (Burda et al. 2016), of ``latent``;
    - ``posterior_collapse``: true when no unit is active (the decoder ignores z).
    """
    model.eval()
    g = torch.Generator().manual_seed(0)
    rec_sum, kl_dims, mus = 0.0, torch.zeros(cfg.latent, dtype=torch.float64), []
    for s in range(0, x.shape[0], 1024):
        xb = x[s:s + 1024]
        mu, logvar = model.encoder.distribution(xb)
        out = model(xb, rng=g)
        rec = reconstruction_elementwise(loss, xb, out.recon, out.logits).sum(dim=1)
        rec_sum += float(rec.double().sum())
        kl_dims += kl_normal_elementwise(mu, logvar).double().sum(dim=0).cpu()
        mus.append(mu.double().cpu())
    n = x.shape[0]
    mu_all = torch.cat(mus)
    var = mu_all.var(dim=0, unbiased=False)
    active = int((var > ACTIVE_UNIT_THRESHOLD).sum())
    kl_per_dim = (kl_dims / n).tolist()
    rec_per, kl_per = rec_sum / n, float(kl_dims.sum()) / n
    return {"elbo": -(rec_per + kl_per), "reconstruction": rec_per, "kl": kl_per, "kl_per_dim": kl_per_dim,
            "active_units": active, "latent": cfg.latent, "posterior_collapse": active == 0}

