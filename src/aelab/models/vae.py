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
from typing import Any, Literal, Mapping, Optional

import torch
from pydantic import Field, field_validator
from torch import nn

from .. import likelihood as LH
from ..losses import kl_normal_elementwise, reconstruction_elementwise, reduce_per_sample
from .ae import ShapedSequential, last_activation
from .base import AEOutput, Autoencoder, ModelConfig, float_field, output
from .family import Family, diagnostic, diagnostic_number
from .layers import _init_keras, _init_torch, build_stack


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


#: Burda et al. 2016: a latent unit is active when Cov_x(E[z_j | x]) exceeds this.
ACTIVE_UNIT_THRESHOLD = 0.01
#: the test NLL a finished run records: importance samples per image, and the first test images it
#: is computed on (a bound on its cost: 500 images × 200 samples decode 100,000 codes)
NLL_K = LH.DEFAULT_K
NLL_IMAGES = 500
#: the losses under which the decoder is a likelihood: a Bernoulli per pixel (BCE)
LIKELIHOOD_LOSSES = ("bce", "torch_bce")


@torch.no_grad()
def test_nll(model: "VAE", x: torch.Tensor, loss: str = "bce", k: int = NLL_K, n: Optional[int] = NLL_IMAGES,
             seed: int = 0, labels: Optional[torch.Tensor] = None) -> Optional[LH.NLL]:
    """The importance-sampled −log p(x) of a VAE-like model (Burda et al. 2016) on the first ``n`` images
    of ``x`` (all with ``n=None``), ``k`` samples each from a generator seeded with ``seed``, in nats per
    image with its standard error (:class:`aelab.likelihood.NLL`). None when ``loss`` is not a
    likelihood (MSE has no normalised density here). The decoder is a Bernoulli per value: on
    binarised images (dynamic binarisation, as the papers) this is the usual test NLL; on grey
    values it is the same formula applied to them, comparable only between runs on the same data.
    ``labels``: for a conditional model, the images' labels (its ``condition``)."""
    if loss not in LIKELIHOOD_LOSSES:
        return None
    model.eval()
    x = x if n is None else x[:n]
    g = torch.Generator().manual_seed(seed)
    parts = []
    for s in range(0, x.shape[0], 25):
        xb = x[s:s + 25]
        cond = None if labels is None else labels[s:s + 25]
        mu, logvar = (model.encoder.distribution(xb) if cond is None else model.posterior(xb, cond))

        def log_lik(xx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            m, b, l = z.shape
            flat = z.reshape(m * b, l)
            pre = model.decoder.pre(flat) if cond is None else model.decoder_logits(flat, cond.repeat(m))
            out = model.decoder[-1](pre) if cond is None else model.output(pre)
            logits = pre if model.output_activation == "sigmoid" else None
            rec = reconstruction_elementwise(loss, xx.repeat(m, 1), out, logits).sum(-1)
            return -rec.reshape(m, b)

        parts.append(LH.log_weights(xb, mu, logvar, log_lik, k, g))
    return LH.estimate(torch.cat(parts))


def nll_diagnostics(model: "VAE", x: torch.Tensor, loss: str, labels: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """``nll``, ``nll_stderr``, ``nll_k``, ``nll_images`` for a run's metrics (nothing for a loss that is no
    likelihood)."""
    est = test_nll(model, x, loss, labels=labels)
    if est is None:
        return {}
    return {"nll": est.nats, "nll_stderr": est.stderr, "nll_k": est.k, "nll_images": est.n}


NLL_DOCS = {
    "nll": ("The test negative log-likelihood −log p(x) per image in nats, importance-sampled with K samples from "
            "the encoder's posterior (Burda et al. 2016: log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x)), under a "
            "Bernoulli decoder (the BCE loss), on the first test images (nll_images). An upper bound of the true "
            "NLL that tightens with K; lower is better."),
    "nll_stderr": "The standard error of the NLL estimate over the test images it is computed on.",
    "nll_k": "K, the importance samples per image of the NLL estimate.",
    "nll_images": "The test images the NLL estimate is computed on (the first ones of the test split).",
}
NLL_SHOWN = {
    "nll": {"label": "test NLL per image (nats, importance-sampled)", "mode": "diff"},
    "nll_stderr": {"label": "standard error of the test NLL", "mode": None, "table": False},
    "nll_k": {"label": "importance samples K of the test NLL", "mode": None, "table": False},
    "nll_images": {"label": "test images of the NLL", "mode": None, "table": False},
}


@torch.no_grad()
def diagnostics(model: VAE, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """What a VAE is studied for, on ``x`` (the test split), per image and in nats:

    - ``elbo``: the evidence lower bound E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), with one sample of z
      per image from a fixed generator, and the reconstruction as the config's loss (so for BCE
      on [0, 1] pixels, −elbo is the usual "loss per image");
    - ``reconstruction`` and ``kl``: its two parts (KL in closed form, unweighted by β);
    - ``kl_per_dim``: the mean KL of each latent dimension — a dimension near 0 carries nothing;
    - ``active_units``: latent units with Cov_x(μ_j(x)) > 0.01 (Burda et al. 2016), of ``latent``;
    - ``posterior_collapse``: true when no unit is active (the decoder ignores z);
    - ``nll`` (with ``nll_stderr``, ``nll_k``, ``nll_images``): the importance-sampled test NLL
      (:func:`test_nll`, K = :data:`NLL_K` on the first :data:`NLL_IMAGES` images), for BCE only.
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
            "active_units": active, "latent": cfg.latent, "posterior_collapse": active == 0,
            **nll_diagnostics(model, x, loss)}


def explain(b: Mapping[str, Any], v: Mapping[str, Any], who: str = "the variant",
            other: str = "the baseline") -> Optional[str]:
    """What the VAE diagnostics say about run ``v`` (``who``) against run ``b`` (``other``): a collapsed
    posterior (which explains everything else, so the rest is then left unsaid), few active latent
    dimensions, a code that carries far less or more information (its KL to the prior)."""
    out: list[str] = []
    bc, vc = diagnostic(b, "posterior_collapse"), diagnostic(v, "posterior_collapse")
    collapsed = vc is True and bc is not True
    if collapsed:
        out.append(f"{who}'s posterior has collapsed: no latent dimension is active, so its decoder ignores the "
                   "code and cannot tell the classes apart")
    elif bc is True and vc is False:
        out.append(f"{other}'s posterior has collapsed (no latent dimension is active), where {who} uses its code")
    va, vlat = diagnostic_number(v, "active_units"), diagnostic_number(v, "latent")
    ba, blat = diagnostic_number(b, "active_units"), diagnostic_number(b, "latent")
    if not collapsed and va is not None and vlat and va > 0 and va / vlat <= 0.5:
        bshare = ba / blat if ba is not None and blat else None
        if bshare is None or bshare >= va / vlat + 0.25:
            out.append(f"only {int(va)} of {who}'s {int(vlat)} latent dimensions are active — the "
                       "others carry nothing about the image")
    vk, bk = diagnostic_number(v, "kl"), diagnostic_number(b, "kl")
    if not collapsed and vk is not None and bk is not None and vk >= 0 and bk > 0:
        if vk < 0.5 * bk:
            out.append(f"{who}'s code carries far less information about each image (a much smaller KL to the "
                       "prior), so its decoder has less to reconstruct from")
        elif vk > 2 * bk:
            out.append(f"{who}'s code carries far more information about each image (a much larger KL to the "
                       "prior)")
    return "; ".join(out) or None


FAMILY = Family(
    name="vae",
    Config=Config,
    build=build,
    terms={"kl": (
        "β·KL(q(z|x) ‖ N(0, I)): the KL divergence of the encoder's posterior from the standard normal prior, in "
        "nats per image, summed over the latent dimensions and weighted by β. It pulls the code towards the prior; "
        "a term near 0 means the code carries almost nothing about the image.")},
    term_labels={"kl": "KL"},
    term_purposes={"kl": "a posterior closer to the prior"},
    diagnostics={
        "elbo": ("Evidence lower bound per test image, E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), in nats, with one "
                 "sample of z per image and the reconstruction as the config's loss: −ELBO is the loss per image "
                 "of a β = 1 model. Higher (closer to 0) is better."),
        "reconstruction": ("The reconstruction part of −ELBO per test image: the config's loss summed over the "
                           "image's pixels, with one sample of z."),
        "kl": ("KL(q(z|x) ‖ N(0, I)) per test image in nats, summed over the latent dimensions, unweighted by β: "
               "how much the code says about the image. Near 0 the decoder gets nothing from z."),
        "kl_per_dim": ("The mean KL of each latent dimension on the test split; a dimension near 0 carries "
                       "nothing (shown as its range)."),
        "active_units": ("Latent dimensions whose mean μ_j(x) varies across the test images with a variance "
                         "above 0.01 (Burda et al. 2016), out of the latent size. An inactive dimension is "
                         "ignored by the decoder."),
        "latent": "The size of the latent code z.",
        "posterior_collapse": ("Yes when no latent dimension is active: the posterior equals the prior for "
                               "every image, the decoder ignores z and draws the same kind of image whatever "
                               "the input."),
        **NLL_DOCS,
    },
    shown={
        "elbo": {"label": "ELBO per test image", "mode": "diff"},
        "reconstruction": {"label": "reconstruction per test image (−ELBO part)", "mode": "ratio", "table": False},
        "kl": {"label": "KL to the prior per test image (β not applied)", "mode": "ratio"},
        "kl_per_dim": {"label": "KL per latent dimension (min – max)", "mode": None},
        "active_units": {"label": "active latent dimensions", "mode": "count", "of": "latent"},
        "latent": {"label": "latent dimensions", "mode": "count"},
        "posterior_collapse": {"label": "posterior collapse", "mode": None},
        **NLL_SHOWN,
    },
    code="mean",
    stochastic=True,
    diagnose=diagnostics,
    explain=explain,
    label="VAE",
)
