"""Importance-sampled estimates of a latent-variable model's negative log-likelihood (pure: tensors in,
numbers out; no model, no run).

For a model with prior p(z), decoder p(x|z) and encoder q(z|x), Burda et al. (2016) estimate

    log p(x) ≈ log (1/K) Σ_k w_k,   w_k = p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),

a lower bound of log p(x) in expectation that tightens as K grows (K = 1 is the ELBO). aelab
reports −log p(x) per image in nats (:class:`NLL`): the mean over images of each image's own
estimate, with the standard error of that mean over the images (the spread across images, which
for a test set is much larger than the Monte Carlo spread of one image's estimate).

:func:`log_weights` draws the K samples for a Gaussian q (μ, log σ²) and a standard normal prior and
asks the caller for log p(x|z) (:func:`bernoulli_log_likelihood` for a sigmoid decoder trained
with BCE); :func:`estimate` turns log-weights into the :class:`NLL`. The families' diagnostics
(``aelab.models.vae.test_nll``) call these on a bounded subset of the test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)
#: samples per image by default (Burda et al. 2016 and pythae report NLL with 200 … 5000)
DEFAULT_K = 200


@dataclass(frozen=True)
class NLL:
    """An importance-sampled negative log-likelihood: ``nats`` per image (mean over ``n`` images),
    ``stderr`` its standard error over the images, with ``k`` samples per image."""

    nats: float
    stderr: float
    k: int
    n: int

    def as_dict(self) -> dict:
        return {"nats": self.nats, "stderr": self.stderr, "k": self.k, "n": self.n}


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag exp(log σ²)) summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|z) = Σ_d x_d log σ(l_d) + (1 − x_d) log(1 − σ(l_d)) over the last dimension (the negative
    of the BCE summed over an image's pixels), from the decoder's logits l."""
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def log_weights(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                log_likelihood: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], k: int,
                generator: Optional[torch.Generator] = None, chunk: int = 50) -> torch.Tensor:
    """log w_ik = log p(x_i|z_ik) + log p(z_ik) − log q(z_ik|x_i) for K samples z_ik ~ N(μ_i, σ_i²):
    ``(N, K)`` float64.

    ``x``: (N, D) the images; ``mu``, ``logvar``: (N, L) the encoder's posterior; ``log_likelihood(x, z)``:
    log p(x|z) for ``x`` (B, D) and ``z`` (S, B, L) → (S, B). ``chunk``: samples drawn per call (memory).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    out = []
    std = torch.exp(0.5 * logvar)
    for s in range(0, k, chunk):
        m = min(chunk, k - s)
        eps = torch.randn((m, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + std * eps
        lw = log_likelihood(x, z).double() + log_standard_normal(z).double() - log_normal(z, mu, logvar).double()
        out.append(lw)
    return torch.cat(out).t().contiguous()


def estimate(log_w: torch.Tensor) -> NLL:
    """The :class:`NLL` of log-weights ``(N, K)``: per image −(logsumexp_k log w_ik − log K), then
    its mean over the N images and the standard error of that mean (sample std / √N)."""
    if log_w.ndim != 2 or log_w.shape[0] < 1 or log_w.shape[1] < 1:
        raise ValueError(f"log_w must be (N, K) with N, K >= 1, got {tuple(log_w.shape)}")
    n, k = log_w.shape
    per = -(torch.logsumexp(log_w.double(), dim=1) - math.log(k))
    se = float(per.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    return NLL(float(per.mean()), se, int(k), int(n))


def per_image(log_w: torch.Tensor) -> torch.Tensor:
    """Each image's estimate −(logsumexp_k log w_ik − log K): ``(N,)`` float64."""
    return -(torch.logsumexp(log_w.double(), dim=1) - math.log(log_w.shape[1]))


__all__ = ["DEFAULT_K", "NLL", "bernoulli_log_likelihood", "estimate", "log_normal", "log_standard_normal",
           "log_weights", "per_image"]
