"""Your own encoder and decoder: two ``torch.nn.Module`` instances trained with one of aelab's objectives.

A practitioner who has written an encoder and a decoder (as pythae lets users inject them) trains
them as a family of their own: ``custom`` (the plain autoencoder's objective: the reconstruction,
plus Keras' activity L1 on the code if asked) or ``custom_vae`` (the VAE's: the reconstruction plus
β·KL, reduced as the ``vae`` family reduces it; the encoder then gives μ and log σ², as a pair or as
one tensor of twice the code's width). Everything else is aelab's: the run directory, checkpoints
and bitwise resume, diagnostics, the latent tools, reports, export::

    run = aelab.train(cfg, "runs/mine", modules=(encoder, decoder))   # cfg.model.family = "custom"
    run = aelab.open_run("runs/mine", modules=(encoder, decoder))     # a later process

A config can hold no code, and loading code named in a file would run it, so a run records what
it cannot save — the modules' classes (``encoder_class``, ``decoder_class``, also in ``run.json``)
and a fingerprint of their classes and parameter shapes (``modules``, part of the run's identity) —
and opening it asks for the modules explicitly: modules of other classes or shapes are refused in
one line. The training starts from the modules' weights as given (their own initialisation);
the modules train in the calling process (a study's worker processes do not have them).

These families are registered when a config names them or modules are first given
(:func:`register`), not with the shipped ones: ``FAMILIES`` lists what builds from a config alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal, Optional

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from ..errors import ConfigError
from ..losses import activity_l1, kl_normal_elementwise, reconstruction_elementwise, reduce_per_sample
from .base import AEOutput, Autoencoder, ModelConfig, float_field, output
from .family import Family

#: the custom families' names
CUSTOM_FAMILIES = ("custom", "custom_vae")
#: this process's module pairs by fingerprint (what :func:`use_modules` was given)
PAIRS: dict[str, tuple[nn.Module, nn.Module]] = {}


def class_name(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def fingerprint(encoder: nn.Module, decoder: nn.Module) -> str:
    """What identifies a pair without its code: the classes and every parameter's and buffer's name,
    shape and dtype (16 hex digits of their SHA-256). Other weights, same fingerprint."""
    desc = [[class_name(m), [[k, list(v.shape), str(v.dtype)] for k, v in m.state_dict().items()]]
            for m in (encoder, decoder)]
    return hashlib.sha256(json.dumps(desc).encode()).hexdigest()[:16]


class Config(ModelConfig):
    """Your own modules under the plain autoencoder's objective. ``input_shape``: the shape the
    encoder takes per sample ((C, H, W) or (D,); the data's, as every family's); ``latent``: the
    code's width; ``modules``, ``encoder_class``, ``decoder_class``: set by :func:`fit_modules`.
    ``decoder_output``: what the decoder's last operation gives — ``sigmoid`` (values in [0, 1]),
    ``logits`` (aelab applies the sigmoid, and BCE takes Keras' logits path) or ``linear``."""

    family: Literal["custom"] = "custom"
    encoder: tuple[Any, ...] = ()
    decoder: tuple[Any, ...] = ()
    latent: int = Field(default=0, ge=0, le=1_000_000)
    decoder_output: Literal["sigmoid", "logits", "linear"] = "sigmoid"
    activity_l1: float = Field(default=0.0, ge=0.0)
    modules: str = ""
    encoder_class: str = ""
    decoder_class: str = ""

    _float = field_validator("activity_l1", mode="before")(float_field)

    @model_validator(mode="after")
    def _shapes(self) -> "Config":  # replaces the layer stacks' check: the modules are checked when given
        if self.encoder or self.decoder:
            raise ValueError("a custom family's encoder and decoder are your modules: pass them as "
                             "aelab.train(cfg, run_dir, modules=(encoder, decoder)), not as layers")
        return self

    def fitted_to(self, shape: tuple[int, ...], what: str = "the data") -> "Config":
        shape = tuple(int(d) for d in shape)
        return self if shape == tuple(self.input_shape) else self.model_copy(update={"input_shape": shape})

    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent,)

    def code_shape(self) -> tuple[int, ...]:
        return (self.latent,)

    def parameter_count(self) -> int:
        pair = PAIRS.get(self.modules)
        return sum(p.numel() for m in pair for p in m.parameters()) if pair else 0

    def activation_count(self) -> int:
        return 2 * self.input_dim + 3 * self.latent

    def is_dense(self) -> bool:
        return False

    def view_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape)

    def macs(self) -> int:
        """The scheduler's cost: about two multiply-accumulates per parameter per sample (no layer specs)."""
        return max(2 * self.parameter_count(), 1)

    def fast_plan(self):
        return None

    def term_names(self) -> tuple[str, ...]:
        return ("activity_l1",) if self.activity_l1 > 0 else ()

    def output_activation(self) -> str:
        """The activation of the model's output as aelab sees it (the sigmoid applied to logits)."""
        return "linear" if self.decoder_output == "linear" else "sigmoid"

    def outside_code(self) -> dict[str, str]:
        """What the run cannot save and opening it asks for: the modules' classes."""
        return {"encoder": self.encoder_class, "decoder": self.decoder_class}


class VAEConfig(Config):
    """Your own modules under the VAE's objective: the encoder gives μ and log σ² (a pair, or one
    tensor of width 2·latent: μ first); ``beta`` weighs the KL; ``reduction`` as the ``vae`` family's."""

    family: Literal["custom_vae"] = "custom_vae"  # type: ignore[assignment]
    beta: float = Field(default=1.0, ge=0.0)
    reduction: Literal["sum_mean", "sum"] = "sum_mean"

    _float_beta = field_validator("beta", mode="before")(float_field)

    def term_names(self) -> tuple[str, ...]:
        return ("kl",)


class ModuleAutoencoder(Autoencoder):
    """A pair of modules on aelab's flat samples: the encoder sees ``(B, *input_shape)``, the decoder
    the code ``(B, latent)``; both outputs are flattened."""

    def __init__(self, cfg: Config, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.config = cfg
        self.encoder, self.decoder = encoder, decoder
        self.variational = isinstance(cfg, VAEConfig)
        self.stochastic = self.variational

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        out = self.encoder(x.reshape(x.shape[0], *self.config.input_shape))
        if not self.variational:
            return out.reshape(x.shape[0], -1), None
        if isinstance(out, (tuple, list)):
            mu, logvar = out
        else:
            mu, logvar = out.reshape(x.shape[0], -1).chunk(2, dim=1)
        return mu.reshape(x.shape[0], -1), logvar.reshape(x.shape[0], -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(x)[0]

    def _pre(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(z.shape[0], -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        pre = self._pre(z)
        return torch.sigmoid(pre) if self.config.decoder_output == "logits" else pre

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        mu, logvar = self.distribution(x)
        z = mu
        if self.variational and rng is not None:
            eps = torch.randn(mu.shape, generator=rng, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        pre = self._pre(z)
        logits = pre if self.config.decoder_output == "logits" else None
        recon = torch.sigmoid(pre) if logits is not None else pre
        if self.variational:
            kl = reduce_per_sample(kl_normal_elementwise(mu, logvar), self.config.reduction)
            return output(recon, mu, logits, {"kl": self.config.beta * kl})
        lam = self.config.activity_l1
        return output(recon, mu, logits, {"activity_l1": activity_l1(mu, lam)} if lam > 0 else {})

    def report_divisor(self, batch: int) -> int:
        return batch if self.variational and self.config.reduction == "sum" else 1

    def reconstruction(self, out: AEOutput, y: torch.Tensor, loss: str) -> torch.Tensor:
        if not self.variational:
            return super().reconstruction(out, y, loss)
        return reduce_per_sample(reconstruction_elementwise(loss, y, out.recon, out.logits), self.config.reduction)


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> ModuleAutoencoder:
    """A fresh copy of the modules registered under ``cfg.modules`` (their weights as given)."""
    pair = PAIRS.get(cfg.modules)
    if pair is None:
        raise ConfigError(missing_modules_line(cfg.encoder_class, cfg.decoder_class))
    return ModuleAutoencoder(cfg, copy.deepcopy(pair[0]), copy.deepcopy(pair[1]))


def missing_modules_line(encoder_class: str, decoder_class: str) -> str:
    return (f"this run's model is your own modules ({encoder_class or '?'}, {decoder_class or '?'}), whose code a run "
            "does not keep; pass them: aelab.open_run(run_dir, modules=(encoder, decoder)) or "
            "aelab.train(cfg, run_dir, modules=(encoder, decoder))")


def use_modules(encoder: Any, decoder: Any) -> str:
    """Keep a copy of the pair for this process (building a model of it copies it again) and register
    the custom families; the pair's fingerprint."""
    for role, m in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(m, nn.Module):
            raise ConfigError(f"modules: the {role} must be a torch.nn.Module, got {type(m).__name__}")
    key = fingerprint(encoder, decoder)
    PAIRS[key] = (copy.deepcopy(encoder).cpu(), copy.deepcopy(decoder).cpu())
    register()
    return key


def register() -> None:
    """Make ``custom`` and ``custom_vae`` known to configs (a config naming them registers them)."""
    from . import register_family  # deferred: the registry imports this package's family files first

    register_family(FAMILY)
    register_family(VAE_FAMILY)


@torch.no_grad()
def fit_modules(cfg: Config, encoder: nn.Module, decoder: nn.Module) -> Config:
    """``cfg`` for this pair: its fingerprint and classes recorded, ``latent`` read from what the
    encoder gives for one sample of ``cfg.input_shape``; the decoder must give back as many values
    as a sample has. A pair that does not fit is one :class:`~aelab.errors.ConfigError` line."""
    key = use_modules(encoder, decoder)
    model = build(cfg.model_copy(update={"modules": key}))
    x = torch.zeros(2, *cfg.input_shape)
    try:
        mu, _ = model.distribution(x)
    except Exception as err:  # noqa: BLE001 — any failure of the user's module is one line naming it
        raise ConfigError(f"modules: the encoder ({class_name(encoder)}) cannot take samples of shape "
                          f"{list(cfg.input_shape)}: {str(err).splitlines()[0]}") from None
    latent = int(mu.shape[1])
    try:
        out = model.decode(mu)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"modules: the decoder ({class_name(decoder)}) cannot take a code of {latent} values: "
                          f"{str(err).splitlines()[0]}") from None
    if out.shape[1] != cfg.input_dim:
        raise ConfigError(f"modules: the decoder gives {out.shape[1]} values per sample but a sample has "
                          f"{cfg.input_dim} ({list(cfg.input_shape)}); make it give back the input's size")
    return cfg.model_copy(update={"modules": key, "latent": latent, "encoder_class": class_name(encoder),
                                  "decoder_class": class_name(decoder)})


_TERMS = {"activity_l1": "λ·Σ|h|, Keras' activity L1 on the code per image (as the ae family's).",
          "kl": "β·KL(q(z|x) ‖ N(0, I)) of your encoder's μ and log σ², as the vae family's."}

FAMILY = Family(name="custom", Config=Config, build=build, terms={"activity_l1": _TERMS["activity_l1"]},
                term_labels={"activity_l1": "activity L1"}, term_purposes={"activity_l1": "a smaller code"},
                code="deterministic", label="your own modules (autoencoder objective)")
VAE_FAMILY = Family(name="custom_vae", Config=VAEConfig, build=build, terms={"kl": _TERMS["kl"]},
                    term_labels={"kl": "KL"}, term_purposes={"kl": "a posterior closer to the prior"},
                    code="mean", stochastic=True, label="your own modules (VAE objective)")
