"""The vector-quantised autoencoder family ``vqvae`` (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural
Discrete Representation Learning").

The encoder stack gives z_e(x); it is cut into ``M`` vectors of ``embedding_dim`` values (``D``): for
an encoder that ends in a convolution, each spatial position's ``D`` channels (the paper's layout,
so the last convolution must have ``D`` filters); for a dense encoder, its ``M·D`` outputs in
consecutive groups of ``D``. Each vector is replaced by its nearest entry of a codebook of
``codebook_size`` (``K``) entries: the code is the ``M`` indices, a *discrete* code. The decoder
takes the chosen entries. Gradients pass the quantisation by the straight-through estimator
(z_q = z_e + sg[e − z_e]: the decoder's gradient is copied onto z_e). The loss is

    reconstruction + ‖sg[z_e] − e‖² + β·‖z_e − sg[e]‖²

(the codebook term moves the entries towards the encoder's outputs, the commitment term keeps
the encoder close to its chosen entries), the squared distances as means over the ``M·D`` values
and the batch. With ``ema = true`` the codebook term is dropped and the entries are instead
exponential moving averages of the encoder outputs assigned to them (the paper's appendix A.1):
after each optimiser step, N_i ← γ·N_i + (1−γ)·n_i, m_i ← γ·m_i + (1−γ)·Σ z_e assigned to i,
N_i smoothed as (N_i + ε)/(n + K·ε)·n (Laplace, so an unused entry never divides by 0), and
e_i = m_i / N_i. That update is not a gradient step: it runs in :meth:`VQVAE.after_step`, which
the engine's plain stepper calls after each optimiser step, and its state (the counts N, the
sums m and the codebook) lives in registered buffers, so checkpoints carry it and a resumed run
continues it bit for bit.

``encode`` (and ``model.encoder``) give the ``M`` indices as floats (so they travel where every
other code does: ``codes.npz``, ``metrics.json``); ``decode`` (``model.decoder``) takes indices,
rounds them and looks them up. The latent tools treat the code as discrete (``Family.code``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from .ae import ShapedSequential, last_activation
from .base import AEOutput, Autoencoder, ModelConfig, float_field, output
from .family import Family, diagnostic_number
from .layers import build_stack


class Config(ModelConfig):
    """A VQ-VAE: ``encoder`` to z_e (``M·D`` values, or D channels per position), a codebook of
    ``codebook_size`` entries of ``embedding_dim`` values, ``decoder`` from the chosen entries.

    ``beta``: the commitment weight β (the paper: 0.25). ``ema``: update the codebook by moving
    averages (``decay`` γ, Laplace ``epsilon`` ε) instead of its loss term.
    """

    family: Literal["vqvae"] = "vqvae"
    encoder: tuple[Any, ...] = ("256:relu", "64:linear")
    decoder: tuple[Any, ...] = ("256:relu", "784:sigmoid")
    codebook_size: int = Field(default=64, gt=1, le=65_536)
    embedding_dim: int = Field(default=8, gt=0, le=4096)
    beta: float = Field(default=0.25, ge=0.0)
    ema: bool = False
    decay: float = Field(default=0.99, gt=0.0, lt=1.0)
    epsilon: float = Field(default=1e-5, gt=0.0)

    _float = field_validator("beta", "decay", "epsilon", mode="before")(float_field)

    @model_validator(mode="after")
    def _fits_the_codebook(self) -> "Config":
        shape = self.code_shape()
        d = self.embedding_dim
        if len(shape) == 3 and shape[0] != d:
            raise ValueError(f"the encoder ends in {shape[0]} channels but embedding_dim is {d}; each position's "
                             f"channels are one codebook vector, so give the last convolution {d} filters or set "
                             f"embedding_dim = {shape[0]}")
        if len(shape) == 1 and shape[0] % d:
            raise ValueError(f"the encoder gives {shape[0]} values, not a multiple of embedding_dim {d}; make its last "
                             f"layer {max(1, shape[0] // d) * d}:linear (M vectors of {d} values)")
        if len(shape) not in (1, 3):
            raise ValueError(f"the encoder gives values of shape {list(shape)}; end it in a dense layer or a "
                             "convolution")
        return self

    @property
    def positions(self) -> int:
        """M, the number of codebook vectors (indices) per sample."""
        shape = self.code_shape()
        return int(math.prod(shape[1:])) if len(shape) == 3 else shape[0] // self.embedding_dim

    @property
    def code_dim(self) -> int:  # the code is the M indices, not the decoder's M·D input values
        return self.positions

    def parameter_count(self) -> int:  # the stacks, and the codebook when gradients train it
        return super().parameter_count() + (0 if self.ema else self.codebook_size * self.embedding_dim)

    def activation_count(self) -> int:  # the distances to every entry and z_q besides the stacks' outputs
        return super().activation_count() + self.positions * (self.codebook_size + self.embedding_dim + 1)

    def term_names(self) -> tuple[str, ...]:
        return ("commitment",) if self.ema else ("codebook", "commitment")


class Quantizer(nn.Module):
    """The codebook (``K × D``) and the nearest-entry lookup. With EMA updates the codebook and its
    running counts and sums are buffers (not trained by the optimiser, saved with the model)."""

    def __init__(self, cfg: Config, generator: Optional[torch.Generator]) -> None:
        super().__init__()
        k, d = cfg.codebook_size, cfg.embedding_dim
        book = torch.empty(k, d).uniform_(-1.0 / k, 1.0 / k, generator=generator)  # the paper's reference code
        self.ema = bool(cfg.ema)
        self.decay, self.epsilon = float(cfg.decay), float(cfg.epsilon)
        if self.ema:
            self.register_buffer("codebook", book)
            self.register_buffer("ema_count", torch.ones(k))  # each entry counts as seen once: an unused one stays put
            self.register_buffer("ema_sum", book.clone())
        else:
            self.codebook = nn.Parameter(book)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (…,) of the entries nearest to ``z`` (…, D) in Euclidean distance (the first on a tie)."""
        flat = z.reshape(-1, z.shape[-1])
        book = self.codebook
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None, :]
        return dist.argmin(dim=1).reshape(z.shape[:-1])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codebook[idx]

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """One moving-average step from encoder outputs ``z`` (…, D) assigned to entries ``idx`` (…,)."""
        k = self.codebook.shape[0]
        flat, i = z.reshape(-1, z.shape[-1]).to(self.codebook.dtype), idx.reshape(-1)
        onehot = torch.zeros(flat.shape[0], k, dtype=flat.dtype, device=flat.device)
        onehot.scatter_(1, i[:, None], 1.0)
        g = self.decay
        self.ema_count.mul_(g).add_(onehot.sum(0), alpha=1 - g)
        self.ema_sum.mul_(g).add_(onehot.t() @ flat, alpha=1 - g)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (n + k * self.epsilon) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])


def _to_vectors(h: torch.Tensor, shape: tuple[int, ...], d: int) -> torch.Tensor:
    """Flat encoder outputs (B, prod(shape)) → (B, M, D): a conv output's channels per position."""
    if len(shape) == 3:
        return h.reshape(h.shape[0], shape[0], -1).transpose(1, 2)
    return h.reshape(h.shape[0], -1, d)


def _from_vectors(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(B, M, D) → the flat decoder input (B, prod(shape)), the inverse of :func:`_to_vectors`."""
    if len(shape) == 3:
        return v.transpose(1, 2).reshape(v.shape[0], -1)
    return v.reshape(v.shape[0], -1)


class VQEncoder(nn.Module):
    """``features`` (the encoder stack) then the nearest codebook entry; ``forward`` gives the M
    indices as floats (the code)."""

    def __init__(self, features: ShapedSequential, quantizer: Quantizer, shape: tuple[int, ...], d: int) -> None:
        super().__init__()
        self.features = features
        self.quantizer = quantizer
        self.shape, self.d = tuple(shape), d

    def vectors(self, x: torch.Tensor) -> torch.Tensor:
        """z_e(x) as (B, M, D)."""
        return _to_vectors(self.features(x), self.shape, self.d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer.nearest(self.vectors(x)).to(x.dtype)


class VQDecoder(nn.Module):
    """Indices → codebook entries → the decoder stack. The codebook is the encoder's quantizer's,
    held by reference (not registered twice: the state dict and safetensors see one tensor)."""

    def __init__(self, stack: ShapedSequential, quantizer: Quantizer, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.stack = stack
        object.__setattr__(self, "_quantizer", quantizer)  # a reference, not a submodule
        self.shape = tuple(shape)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        k = self._quantizer.codebook.shape[0]
        i = idx.round().long().clamp_(0, k - 1)
        return self.stack(_from_vectors(self._quantizer.lookup(i), self.shape))


class VQVAE(Autoencoder):
    def __init__(self, cfg: Config, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.config = cfg
        enc, shape = build_stack(cfg.encoder, cfg.view_shape(), generator=generator, init=cfg.init,
                                 label="encoder layer")
        dec, _ = build_stack(cfg.decoder, cfg.latent_shape(), generator=generator, init=cfg.init,
                             label="decoder layer")
        quantizer = Quantizer(cfg, generator)
        self.encoder = VQEncoder(ShapedSequential(enc, cfg.view_shape()), quantizer, tuple(shape), cfg.embedding_dim)
        self.decoder = VQDecoder(ShapedSequential(dec, cfg.latent_shape()), quantizer, tuple(shape))
        self.output_activation = last_activation(cfg.decoder)
        self._pending: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def quantizer(self) -> Quantizer:
        return self.encoder.quantizer

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        z_e = self.encoder.vectors(x)
        idx = self.quantizer.nearest(z_e.detach())
        e = self.quantizer.lookup(idx)
        terms: dict[str, torch.Tensor] = {}
        if not self.config.ema:
            terms["codebook"] = (z_e.detach() - e).pow(2).mean()
        terms["commitment"] = self.config.beta * (z_e - e.detach()).pow(2).mean()
        z_q = z_e + (e - z_e).detach()  # straight-through: the decoder's gradient reaches z_e unchanged
        stack = self.decoder.stack
        pre = stack.pre(_from_vectors(z_q, self.encoder.shape))
        recon = stack[-1](pre)
        logits = pre if self.output_activation == "sigmoid" else None
        if self.config.ema and self.training and torch.is_grad_enabled():
            self._pending = (z_e.detach(), idx)  # for after_step: this step's assignments
        return output(recon, idx.to(x.dtype), logits, terms)

    @torch.no_grad()
    def after_step(self, out: AEOutput) -> None:
        """The EMA codebook update from the step's encoder outputs (nothing without ``ema``)."""
        pending, self._pending = self._pending, None
        if self.config.ema and pending is not None:
            self.quantizer.ema_update(*pending)


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> VQVAE:
    return VQVAE(cfg, generator)


@torch.no_grad()
def code_counts(model: VQVAE, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """How often each codebook entry is chosen over ``x`` (all positions): (K,) int64."""
    model.eval()
    k = model.config.codebook_size
    counts = torch.zeros(k, dtype=torch.int64)
    for s in range(0, x.shape[0], batch):
        idx = model.encoder(x[s:s + batch]).round().long().reshape(-1).cpu()
        counts += torch.bincount(idx, minlength=k)
    return counts


@torch.no_grad()
def diagnostics(model: VQVAE, x: torch.Tensor, cfg: Config, loss: str = "bce") -> dict[str, Any]:
    """What a VQ-VAE's codebook does on ``x`` (the test split):

    - ``codebook_usage``: the fraction of the K entries chosen at least once;
    - ``dead_codes``: entries never chosen (``codebook_size`` − used);
    - ``perplexity``: exp of the entropy of the entries' frequencies (all positions): K when every
      entry is used equally often, 1 when one entry takes everything;
    - ``quantization_error``: the mean squared distance ‖z_e − e‖² per value between the encoder's
      outputs and their entries;
    - ``code_counts``: each entry's count (the histogram of used codes).
    """
    counts = code_counts(model, x)
    total = int(counts.sum())
    p = counts.double() / max(total, 1)
    nz = p[p > 0]
    perplexity = float(torch.exp(-(nz * nz.log()).sum())) if total else 0.0
    err, n = 0.0, 0
    for s in range(0, x.shape[0], 1024):
        z = model.encoder.vectors(x[s:s + 1024])
        e = model.quantizer.lookup(model.quantizer.nearest(z))
        err += float((z - e).double().pow(2).sum())
        n += z.numel()
    used = int((counts > 0).sum())
    return {"codebook_size": cfg.codebook_size, "codebook_usage": used / cfg.codebook_size,
            "dead_codes": cfg.codebook_size - used, "perplexity": perplexity,
            "quantization_error": err / max(n, 1), "positions": cfg.positions, "code_counts": counts.tolist()}


def explain(b: Mapping[str, Any], v: Mapping[str, Any], who: str = "the variant",
            other: str = "the baseline") -> Optional[str]:
    """Whether run ``v``'s codebook (``who``) is mostly unused (codebook collapse) or far better used
    than ``b``'s."""
    vu, bu = diagnostic_number(v, "codebook_usage"), diagnostic_number(b, "codebook_usage")
    vd, k = diagnostic_number(v, "dead_codes"), diagnostic_number(v, "codebook_size")
    out: list[str] = []
    if vu is not None and vd is not None and k and vu <= 0.25:
        out.append(f"{who} uses only {int(k - vd)} of its {int(k)} codebook entries (the others are dead codes), so "
                   "its discrete code can say little about each image")
    elif vu is not None and bu is not None and bu <= 0.5 * vu and bu < 1:
        out.append(f"{who} uses far more of its codebook than {other}")
    return "; ".join(out) or None


FAMILY = Family(
    name="vqvae",
    Config=Config,
    build=build,
    terms={
        "codebook": ("‖sg[z_e(x)] − e‖², the mean squared distance between the encoder's outputs (held fixed) and "
                     "their nearest codebook entries e: it moves the entries towards the outputs assigned to them "
                     "(absent with EMA updates, which do that instead)."),
        "commitment": ("β·‖z_e(x) − sg[e]‖², the mean squared distance between the encoder's outputs and their "
                       "(fixed) codebook entries, weighted by β: it keeps the encoder committed to its entries."),
    },
    term_labels={"codebook": "codebook", "commitment": "commitment"},
    term_purposes={"codebook": "codebook entries closer to the encoder's outputs",
                   "commitment": "encoder outputs that stay close to their codebook entries"},
    diagnostics={
        "codebook_size": "K, the number of entries in the codebook.",
        "codebook_usage": ("The fraction of the K codebook entries chosen at least once on the test split; "
                           "the rest are dead codes that the decoder never sees."),
        "dead_codes": "Codebook entries never chosen for any position of any test image.",
        "perplexity": ("exp(H), H the entropy of how often each entry is chosen on the test split (all "
                       "positions): K when every entry is used equally, 1 when one entry takes everything."),
        "quantization_error": ("The mean squared distance ‖z_e − e‖² per value between the encoder's outputs and "
                               "their nearest entries on the test split."),
        "positions": "M, the number of codebook indices per image (the code's length).",
        "code_counts": "How often each codebook entry is chosen on the test split (the histogram of used codes).",
    },
    shown={
        "codebook_usage": {"label": "codebook usage (share of entries used)", "mode": "diff"},
        "dead_codes": {"label": "dead codebook entries", "mode": "count", "of": "codebook_size"},
        "codebook_size": {"label": "codebook entries K", "mode": "count"},
        "perplexity": {"label": "codebook perplexity", "mode": "ratio"},
        "quantization_error": {"label": "quantisation error ‖z_e − e‖² per value", "mode": "ratio"},
        "positions": {"label": "code indices per image", "mode": "count", "table": False},
        "code_counts": {"label": "uses per codebook entry (min – max)", "mode": None, "table": False},
    },
    code="discrete",
    stochastic=False,
    diagnose=diagnostics,
    explain=explain,
    label="VQ-VAE",
)
