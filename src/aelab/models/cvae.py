"""The conditional VAE family ``cvae``: a VAE whose encoder and decoder both see the class label.

Sohn, Lee & Yan (2015), "Learning Structured Output Representation using Deep Conditional Generative
Models", and Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised Learning with Deep Generative
Models" (its M2 model and the "analogies" figure: one style, every digit). The conditioning is the one
the common tutorials use — timbmg/VAE-CVAE-MNIST (``models.py``: ``torch.cat((x, c), dim=-1)`` before
the encoder, ``torch.cat((z, c), dim=-1)`` before the decoder, ``c`` the one-hot label), as the Keras
CVAE examples do it:

- the **encoder** sees the input and the one-hot label ``y`` (K = ``classes`` values): concatenated
  to the flat input for a dense first layer, appended as K constant channels (channel k is 1 where
  ``y = k``) for a convolutional one, so q(z | x, y);
- the **decoder** sees ``[z, one_hot(y)]``, so p(x | z, y);
- the objective is the VAE's (``vae.py``): the reconstruction plus ``beta``·KL(q(z|x,y) ‖ N(0, I)),
  reduced as ``reduction`` says. The prior is N(0, I) for every class, so z is left to hold what the
  label does not say — the "style" — and decoding one z with every label draws the same style as
  every class (:func:`figures`).

Labels travel beside the inputs: ``forward(x, rng, labels=)``, ``encode(x, labels=)`` and
``decode(z, labels=)`` take ``(B,)`` integer class labels in ``0 … classes − 1``; without them each
is one :class:`~aelab.errors.ConfigError` line. The engine passes the training labels row for row
(``Family.conditional``); a data set without labels is refused before training.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..errors import ConfigError
from ..losses import kl_normal_elementwise, reconstruction_elementwise, reduce_per_sample
from .ae import ShapedSequential, last_activation
from .base import AEOutput, output
from .family import Family
from .layers import _init_keras, _init_torch, build_stack, stack_shapes
from .vae import ACTIVE_UNIT_THRESHOLD, NLL_DOCS, NLL_SHOWN, VAE
from .vae import FAMILY as VAE_FAMILY
from .vae import Config as VAEConfig
from .vae import explain as vae_explain
from .vae import nll_diagnostics

#: what every call without labels says
NEEDS_LABELS = ("the conditional VAE (cvae) encodes and decodes each sample with its class label: pass "
                "labels= (one integer class per sample)")


def needs_labels(labels: Optional[torch.Tensor], what: str = "") -> torch.Tensor:
    """``labels``, or one :class:`ConfigError` line when they are missing."""
    if labels is None:
        raise ConfigError((f"{what}: " if what else "") + NEEDS_LABELS)
    return labels


class Config(VAEConfig):
    """A conditional VAE: a VAE's layers, ``latent``, ``beta`` and ``reduction``, and ``classes``, the
    number of class labels K (the one-hot's width; the data's labels must lie in 0 … K − 1)."""

    family: Literal["cvae"] = "cvae"  # type: ignore[assignment]
    classes: int = Field(default=10, ge=2, le=10_000)

    def conditioned_shape(self) -> tuple[int, ...]:
        """What the encoder's first layer sees: the flat input and the one-hot (dense), or the image
        with K label channels (convolutional)."""
        v = self.view_shape()
        return (v[0] + self.classes,) if len(v) == 1 else (v[0] + self.classes, *v[1:])

    def decoder_input_shape(self) -> tuple[int, ...]:
        """What the decoder's first layer sees: ``[z, one_hot(y)]``."""
        return (self.latent + self.classes,)

    def code_shape(self) -> tuple[int, ...]:
        return tuple(stack_shapes(self.encoder, self.conditioned_shape(), label="encoder layer")[-1])

    def decoder_output_shape(self) -> tuple[int, ...]:
        return tuple(stack_shapes(self.decoder, self.decoder_input_shape(), label="decoder layer")[-1])

    def _stack_shapes(self):
        for layers, shape in ((self.encoder, self.conditioned_shape()), (self.decoder, self.decoder_input_shape())):
            shapes = [tuple(shape)] + [tuple(x) for x in stack_shapes(layers, shape)]
            yield from zip(layers, shapes[:-1], shapes[1:])

    def activation_count(self) -> int:  # the label's one-hot beside the input and beside z
        return super().activation_count() + 2 * self.classes


class CVAEEncoder(nn.Module):
    """``features`` (a layer stack on the input with its label) then the μ and log σ² heads."""

    def __init__(self, features: ShapedSequential, n_features: int, latent: int, cfg: Config) -> None:
        super().__init__()
        self.features = features
        self.mu = nn.Linear(n_features, latent)
        self.logvar = nn.Linear(n_features, latent)
        self.classes = cfg.classes
        self.view = cfg.view_shape()

    def conditioned(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The input with its label, flat: ``[x, one_hot(y)]``, or the image with K label channels."""
        onehot = F.one_hot(labels.long(), self.classes).to(x.dtype)
        if len(self.view) == 1:
            return torch.cat([x.reshape(x.shape[0], -1), onehot], dim=1)
        c, h, w = self.view
        planes = onehot[:, :, None, None].expand(-1, -1, h, w)
        return torch.cat([x.reshape(x.shape[0], c, h, w), planes], dim=1).reshape(x.shape[0], -1)

    def distribution(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(self.conditioned(x, needs_labels(labels, "encoder")))
        return self.mu(h), self.logvar(h)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.distribution(x, labels)[0]


class CVAEDecoder(nn.Module):
    """``stack`` (a layer stack) on ``[z, one_hot(y)]``."""

    def __init__(self, stack: ShapedSequential, classes: int) -> None:
        super().__init__()
        self.stack = stack
        self.classes = classes

    def pre(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The last layer's pre-activation (BCE's logits)."""
        onehot = F.one_hot(needs_labels(labels, "decoder").long(), self.classes).to(z.dtype)
        return self.stack.pre(torch.cat([z.reshape(z.shape[0], -1), onehot], dim=1))

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.stack[-1](self.pre(z, labels))


class CVAE(VAE):
    """q(z | x, y), p(x | z, y), N(0, I) prior; the VAE's loss and reduction (its methods reused)."""

    stochastic = True
    conditional = True

    def __init__(self, cfg: Config, generator: Optional[torch.Generator] = None) -> None:
        nn.Module.__init__(self)
        self.config = cfg
        feats, shape = build_stack(cfg.encoder, cfg.conditioned_shape(), generator=generator, init=cfg.init,
                                   label="encoder layer")
        self.encoder = CVAEEncoder(ShapedSequential(feats, cfg.conditioned_shape()), int(math.prod(shape)),
                                   cfg.latent, cfg)
        init = _init_keras if cfg.init == "keras" else _init_torch
        init(self.encoder.mu, generator)
        init(self.encoder.logvar, generator)
        dec, _ = build_stack(cfg.decoder, cfg.decoder_input_shape(), generator=generator, init=cfg.init,
                             label="decoder layer")
        self.decoder = CVAEDecoder(ShapedSequential(dec, cfg.decoder_input_shape()), cfg.classes)
        self.output_activation = last_activation(cfg.decoder)

    # -- what the NLL estimate (vae.test_nll) and the figures call --------------------------------
    def posterior(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of q(z | x, y)."""
        return self.encoder.distribution(x, labels)

    def decoder_logits(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The decoder's last pre-activation for codes ``z`` with labels ``labels``."""
        return self.decoder.pre(z, labels)

    def output(self, pre: torch.Tensor) -> torch.Tensor:
        """The output activation applied to :meth:`decoder_logits`."""
        return self.decoder.stack[-1](pre)

    # -- the Autoencoder interface, with labels ---------------------------------------------------
    def encode(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.encoder(x, needs_labels(labels, "encode"))

    def decode(self, h: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.decoder(h, needs_labels(labels, "decode"))

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None,
                labels: Optional[torch.Tensor] = None) -> AEOutput:
        labels = needs_labels(labels)
        mu, logvar = self.encoder.distribution(x, labels)
        if rng is not None:
            eps = torch.randn(mu.shape, generator=rng, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:  # no generator: the deterministic decoding of μ
            z = mu
        pre = self.decoder.pre(z, labels)
        recon = self.output(pre)
        logits = pre if self.output_activation == "sigmoid" else None
        kl = reduce_per_sample(kl_normal_elementwise(mu, logvar), self.config.reduction)
        return output(recon, mu, logits, {"kl": self.config.beta * kl})


def build(cfg: Config, generator: Optional[torch.Generator] = None) -> CVAE:
    return CVAE(cfg, generator)


# -- diagnostics -----------------------------------------------------------------------------------------
def _other_labels(labels: torch.Tensor, present: Sequence[int]) -> torch.Tensor:
    """Each label replaced by the next class present in the data (cyclically): another class for every
    sample, as long as the data has two."""
    order = torch.as_tensor(list(present), dtype=torch.long, device=labels.device)
    pos = torch.searchsorted(order, labels.long())
    return order[(pos + 1) % len(order)]


@torch.no_grad()
def diagnostics(model: CVAE, x: torch.Tensor, cfg: Config, loss: str = "bce",
                labels: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """The VAE's diagnostics of a conditional VAE on ``x`` with its ``labels`` (the test split), per image
    and in nats — ``elbo``, ``reconstruction``, ``kl``, ``kl_per_dim``, ``active_units``, ``latent``,
    ``posterior_collapse``, the conditional test NLL −log p(x | y) — and ``label_effect``: the mean
    absolute change of an output value when each test code μ is decoded with another class's label
    instead of its own (0: the decoder ignores the label)."""
    labels = needs_labels(labels, "cvae diagnostics").to(x.device)
    model.eval()
    g = torch.Generator().manual_seed(0)
    rec_sum, kl_dims, mus, effect = 0.0, torch.zeros(cfg.latent, dtype=torch.float64), [], 0.0
    present = sorted(set(labels.tolist()))
    for s in range(0, x.shape[0], 1024):
        xb, yb = x[s:s + 1024], labels[s:s + 1024]
        mu, logvar = model.posterior(xb, yb)
        out = model(xb, rng=g, labels=yb)
        rec = reconstruction_elementwise(loss, xb, out.recon, out.logits).sum(dim=1)
        rec_sum += float(rec.double().sum())
        kl_dims += kl_normal_elementwise(mu, logvar).double().sum(dim=0).cpu()
        mus.append(mu.double().cpu())
        if len(present) > 1:
            own, other = model.decode(mu, yb), model.decode(mu, _other_labels(yb, present))
            effect += float((own - other).abs().double().mean(dim=1).sum())
    n = x.shape[0]
    var = torch.cat(mus).var(dim=0, unbiased=False)
    active = int((var > ACTIVE_UNIT_THRESHOLD).sum())
    rec_per, kl_per = rec_sum / n, float(kl_dims.sum()) / n
    return {"elbo": -(rec_per + kl_per), "reconstruction": rec_per, "kl": kl_per, "kl_per_dim": (kl_dims / n).tolist(),
            "active_units": active, "latent": cfg.latent, "posterior_collapse": active == 0,
            "label_effect": effect / n if len(present) > 1 else 0.0, "classes": cfg.classes,
            **nll_diagnostics(model, x, loss, labels=labels)}


# -- figures ---------------------------------------------------------------------------------------------
#: test images of the "same code, every class" figure (one row each) and prior samples per class
SAME_CODE_IMAGES = 6
SAMPLES_PER_CLASS = 10


def present_classes(labels: Any, classes: int) -> list[int]:
    """The classes that occur in ``labels`` (within 0 … classes − 1), in order."""
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).ravel()
    return [int(c) for c in np.unique(y) if 0 <= int(c) < classes]


@torch.no_grad()
def same_code_grid(model: CVAE, x: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                   n: int = SAME_CODE_IMAGES) -> tuple[np.ndarray, list[int]]:
    """"Same style, another class": ``n`` test images (the first of as many different classes as there
    are, then the next ones) encoded with their own labels, each code μ decoded with every class of
    ``classes``. Returns ``(n, 1 + len(classes), D)`` — each row the image, then its decodings — and
    the rows' positions in ``x``."""
    model.eval()
    y = labels.cpu().tolist()
    rows: list[int] = []
    for c in classes:  # one image per class first: the rows show different styles and classes
        i = next((i for i, v in enumerate(y) if v == c), None)
        if i is not None and len(rows) < n:
            rows.append(i)
    rows += [i for i in range(len(y)) if i not in rows][: n - len(rows)]
    idx = torch.as_tensor(rows, device=x.device)
    mu = model.posterior(x[idx], labels[idx].to(x.device))[0]
    k = len(classes)
    zz = mu.repeat_interleave(k, dim=0)  # image 0 with every class, then image 1 …
    yy = torch.as_tensor(list(classes), device=x.device).repeat(len(rows))
    dec = model.decode(zz, yy).float().cpu().numpy().reshape(len(rows), k, -1)
    originals = x[idx].float().cpu().numpy()[:, None]
    return np.concatenate([originals, dec], axis=1), rows


@torch.no_grad()
def class_sample_grid(model: CVAE, classes: Sequence[int], per_class: int = SAMPLES_PER_CLASS,
                      seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """Prior samples decoded as each class: ``(len(classes), per_class, D)``; row ``i`` decodes the same
    ``per_class`` draws z ~ N(0, I) (from a generator seeded with ``seed``) with class ``classes[i]``,
    so a column is one style as every class."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(per_class, model.config.latent, generator=g).to(device)
    out = [model.decode(z, torch.full((per_class,), int(c), dtype=torch.long, device=device)).float().cpu().numpy()
           for c in classes]
    return np.stack(out)


def _name(c: int, names: Sequence[str]) -> str:
    return str(names[c]) if 0 <= c < len(names) else str(c)


def figures(model: CVAE, data, cfg, names: Sequence[str] = ()) -> Mapping[str, tuple[bytes, str]]:
    """The figures a student expects of a conditional VAE (PNG bytes with captions): ``same_code_every_class``
    (:func:`same_code_grid`) and ``class_samples`` (:func:`class_sample_grid`). ``data``: the run's
    :class:`~aelab.data.prepare.TrainData` (its validation split and labels); ``cfg``: its RunConfig.
    Nothing for samples that are not pictures (a table)."""
    from ..plots import latent as LF  # deferred: matplotlib, only when a run is finished

    shape = tuple(cfg.model.input_shape)
    if not LF.image_like(shape) or data.y_val is None:
        return {}
    classes = present_classes(data.y_val, cfg.model.classes)
    grid, rows = same_code_grid(model, data.x_val, data.y_val, classes)
    y = data.y_val.cpu().tolist()
    same = LF.image_rows([(f"image {i + 1} ({_name(y[r], names)})", g) for i, (r, g) in enumerate(zip(rows, grid))],
                         shape, title="same style, another class: each test image's code decoded with every label",
                         columns=["image"] + [_name(c, names) for c in classes])
    samples = class_sample_grid(model, classes, seed=int(cfg.train.seed), device=data.x_val.device)
    prior = LF.image_rows([(f"class {_name(c, names)}", s) for c, s in zip(classes, samples)], shape,
                          title="class-conditional samples: z ~ N(0, I), one row per class, one z per column")
    return {
        "same_code_every_class": (same, (
            "Same style, another class: the left column holds test images; each is encoded with its own label, "
            "and its code μ is decoded with every label (one column per class). What stays the same along a row "
            "is what the code holds (the style: thickness, slant, size); what changes is what the label says.")),
        "class_samples": (prior, (
            "Class-conditional samples: each column decodes one draw z ~ N(0, I) from the prior, each row with "
            "one class's label. A good conditional VAE draws the asked class in every row, in one style per "
            "column.")),
    }


DIAGNOSTICS = {
    **{k: v for k, v in VAE_FAMILY.diagnostics.items() if k not in NLL_DOCS},
    "elbo": ("Conditional evidence lower bound per test image, E_q[log p(x|z,y)] − KL(q(z|x,y) ‖ p(z)), in nats, "
             "with each image's own label and one sample of z. Higher (closer to 0) is better."),
    **NLL_DOCS,
    "nll": ("The conditional test negative log-likelihood −log p(x | y) per image in nats (each image with its own "
            "label), importance-sampled with K samples from q(z|x,y) (Burda et al. 2016), under a Bernoulli "
            "decoder (the BCE loss), on the first test images (nll_images). Knowing the label makes an image "
            "likelier, so it is not comparable with an unconditional model's −log p(x). Lower is better."),
    "label_effect": ("The mean absolute change of an output value when each test image's code μ is decoded with "
                     "another class's label instead of its own: how much the decoder draws from the label. Near 0 "
                     "the decoder ignores the label (everything is in the code)."),
    "classes": "K, the number of class labels the model is conditioned on (the one-hot's width).",
}
SHOWN = {
    **{k: v for k, v in VAE_FAMILY.shown.items() if k not in NLL_SHOWN},
    **NLL_SHOWN,
    "nll": {"label": "conditional test NLL −log p(x|y) per image (nats)", "mode": "diff"},
    "label_effect": {"label": "change of an output value when the label changes", "mode": "ratio"},
    "classes": {"label": "classes conditioned on", "mode": None, "table": False},
}


FAMILY = Family(
    name="cvae",
    Config=Config,
    build=build,
    terms={"kl": (
        "β·KL(q(z|x,y) ‖ N(0, I)): the KL divergence of the encoder's posterior (given the image and its label) "
        "from the standard normal prior, in nats per image, summed over the latent dimensions and weighted by β. "
        "The label is given to the decoder, so the code need not carry the class.")},
    term_labels={"kl": "KL"},
    term_purposes={"kl": "a posterior closer to the prior"},
    diagnostics=DIAGNOSTICS,
    shown=SHOWN,
    code="mean",
    stochastic=True,
    diagnose=diagnostics,
    explain=vae_explain,
    label="conditional VAE",
    conditional=True,
    figures=figures,
)
