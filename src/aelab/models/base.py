"""The contract every autoencoder family meets: its config base, its output, the Keras activations.

An :class:`Autoencoder` is a pure ``nn.Module``: built from a config, holding no data. It has an
``encoder`` and a ``decoder`` that work alone (as the seed notebook splits its ``Sequential``);
``forward(x, rng)`` returns a small fixed :class:`AEOutput` whose ``terms`` name every loss term
the family adds to the reconstruction; ``reconstruction(out, y, loss)`` is the family's
reconstruction term (Keras' batch mean for most, a per-image sum for the VAEs), so the engine
trains any family as ``reconstruction + Σ terms`` without knowing which one it is.

A family is one module (``ae.py``, ``vae.py``, …) that defines its ``Config`` (a
:class:`ModelConfig` subclass whose ``family`` literal is the registry key), its model, and
``FAMILY``, the :class:`~aelab.models.family.Family` object the registry holds. A config whose
model the stacked dense fast path trains in full says so with :meth:`ModelConfig.fast_plan`, in
engine terms (:class:`FastPlan`); every other model trains on autograd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Optional

import torch
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .._schema import Frozen
from .._tensors import non_float
from ..errors import ConfigError, WeightsError, say_once
from ..losses import reconstruction_loss
from .layers import ACTIVATION_MODULES, LeakyReLU02, make_activation, pair, parse_layer, stack_shapes  # noqa: F401  (re-exported)


class AEOutput(NamedTuple):
    """What ``Autoencoder.forward`` returns.

    recon:   (B, D) the reconstruction (after the output activation), flat.
    code:    (B, K) the deterministic code (μ for a VAE), flat.
    logits:  (B, D) the output layer's pre-activation when it is a sigmoid (so BCE can take
             Keras' stable logits path), else None.
    penalty: scalar tensor, the sum of ``terms`` (0 when there is none).
    terms:   the named loss terms the family adds, each already weighted (activity_l1, kl, …).
    """

    recon: torch.Tensor
    code: torch.Tensor
    logits: Optional[torch.Tensor]
    penalty: torch.Tensor
    terms: dict = {}


@dataclass(frozen=True)
class FastPlan:
    """What the stacked dense fast path trains for a config, in engine terms (no family named).

    The model is a stack of fully connected layers, ``sizes[0] → sizes[1] → … → sizes[-1]``, layer
    ``l`` followed by the Keras activation ``activations[l]``; the built model's ``nn.Linear``
    modules, in module order, are these layers. The output of layer ``code_layer`` is the code. The
    loss is the reconstruction plus, when ``code_l1 > 0``, Keras' activity L1 on the code,
    ``code_l1·Σ|h| / B``, reported as the term ``code_l1_term``.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    code_layer: int
    code_l1: float = 0.0
    code_l1_term: str = "code_l1"


def output(recon, code, logits, terms: dict[str, torch.Tensor]) -> AEOutput:
    """An AEOutput whose penalty is the sum of ``terms``."""
    penalty = sum(terms.values()) if terms else code.new_zeros(())
    return AEOutput(recon, code, logits, penalty, terms)


class Autoencoder(nn.Module):
    """Base class: subclasses set ``self.encoder``, ``self.decoder`` and ``self.config``."""

    encoder: nn.Module
    decoder: nn.Module
    #: whether ``forward`` draws random numbers (a VAE's sampling): the engine then passes a
    #: generator seeded per (epoch, batch), so a resumed run draws exactly the same numbers
    stochastic: bool = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)

    def report_divisor(self, batch: int) -> int:
        """What a batch's loss is divided by before it is reported (the gradient uses it as it is):
        1 for the losses that are batch means already; a family that sums over the batch, as
        pytorch/examples' VAE does, reports per image instead (its printed loss is per image)."""
        return 1

    def reconstruction(self, out: AEOutput, y: torch.Tensor, loss: str) -> torch.Tensor:
        """The reconstruction term: Keras' compile-time loss, the batch mean of per-pixel values."""
        return reconstruction_loss(loss, y, out.recon, out.logits)


# -- the config every family extends -------------------------------------------------------------------
def _prod(shape) -> int:
    return int(math.prod(shape))


class ModelConfig(Frozen):
    """What every family has: the sample shape, an encoder and a decoder (layer stacks), the init.

    ``encoder``/``decoder``: layer specs (``aelab.models.layers``): the short form ``"32:relu"``
    (a Dense layer; ``"128:relu,64:relu"`` for several) or tables with a ``kind``. An encoder
    that starts with a dense layer sees each sample flattened, as the Keras blog reshapes MNIST
    to 784-vectors; one that starts with a convolution sees it as an image, ``input_shape``
    (C, H, W). The decoder must give back as many values as the input has.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)

    family: str
    input_shape: tuple[int, ...] = (1, 28, 28)
    encoder: tuple[Any, ...] = ("32:relu",)
    decoder: tuple[Any, ...] = ("784:sigmoid",)
    #: "keras": Glorot-uniform kernels, zero biases. "torch": PyTorch's nn.Linear/Conv defaults.
    init: Literal["keras", "torch"] = "keras"
    #: start from these weights (a .safetensors file, keys = the model's state-dict names) instead
    #: of ``init``: to warm-start, or to compare with another framework from identical weights.
    #: A run's identity (its config hash) covers the file's content, not just its path.
    init_weights: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        # configs written before families: {"family": "dense", "input_dim": 784}
        if isinstance(data, dict) and "input_dim" in data:
            data = dict(data)
            dim = data.pop("input_dim")
            if dim != 784 and "input_shape" not in data:
                data["input_shape"] = [dim]
        return data

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = tuple(v)
        if isinstance(v, tuple) and (not v or len(v) not in (1, 3) or not all(isinstance(d, int) and d > 0 for d in v)):
            raise ValueError(f"got {list(v)}; give (C, H, W) for images or (D,) for vectors, positive ints")
        return v

    @field_validator("encoder", "decoder", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [p for p in v.split(",") if p.strip()]
            if not v:
                raise ValueError("a layer list is empty; give SIZE:ACTIVATION[,SIZE:ACTIVATION...] such as 32:relu")
        if isinstance(v, (list, tuple)):
            try:
                return tuple(parse_layer(x) for x in v)
            except ConfigError as err:  # as a ValueError, so the message names the field
                raise ValueError(str(err)) from None
        return v

    @model_validator(mode="after")
    def _shapes(self) -> "ModelConfig":
        if not self.encoder:
            raise ValueError("encoder needs at least one layer")
        if not self.decoder:
            raise ValueError("decoder needs at least one layer")
        out = self.decoder_output_shape()
        want = self.input_shape
        if _prod(out) != _prod(want) or (len(out) == 3 and tuple(out) != tuple(want)):
            last = self.decoder[-1]
            hint = (f"make the last decoder layer {_prod(want)}:<activation>" if getattr(last, "kind", "") == "dense"
                    else f"make it end in the input's shape {list(want)} (C, H, W)")
            raise ValueError(f"the decoder gives {list(out)} values per sample but the input has {list(want)}; {hint}")
        return self

    # -- the data decides the input shape ----------------------------------------------------------
    def fitted_to(self, shape: tuple[int, ...], what: str = "the data") -> "ModelConfig":
        """This config for samples of ``shape`` ((C, H, W) or (D,)): ``self`` when it fits already.

        The input shape is the data's, and the decoder's last layer — which gives back as many
        values as the input has — follows it: a dense last layer as large as the old input becomes
        as large as the new one (784 → 64 for 8×8 digits), a convolution that gave the old channels
        gives the new ones. Every other layer stays as written. A stack that cannot take the shape
        (a convolution on a table, pooling an 8×8 image below 1×1) is one
        :class:`~aelab.errors.ConfigError` naming the data and the layer.
        """
        shape = tuple(int(d) for d in shape)
        if shape == tuple(self.input_shape):
            return self
        d = self.model_dump(mode="json")
        d["encoder"] = self.layers_text(self.encoder)
        d["decoder"] = self.layers_text(self.decoder)
        d["input_shape"] = list(shape)
        last = self.decoder[-1]
        if last.kind == "dense" and last.size == self.input_dim:
            d["decoder"][-1] = f"{_prod(shape)}:{last.activation}"
        elif getattr(last, "filters", None) == self.input_shape[0] and len(shape) == 3 and len(self.input_shape) == 3:
            d["decoder"][-1] = {**d["decoder"][-1], "filters": shape[0]}
        if len(shape) == 1 and self.encoder[0].kind != "dense":
            raise ConfigError(f"the model's encoder starts with a {self.encoder[0].kind} layer, which needs images, but "
                              f"{what} holds vectors of {shape[0]} features; use a dense encoder (such as --encoder "
                              "32:relu)")
        try:
            return type(self).model_validate(d)
        except ValidationError as err:
            e = err.errors()[0]
            msg = e["msg"]
            msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
            raise ConfigError(f"the model does not fit {what} (samples of shape {list(shape)}): {msg}") from None

    # -- shapes (Keras' arithmetic, see layers.py) ----------------------------------------------
    @property
    def input_dim(self) -> int:
        return _prod(self.input_shape)

    def view_shape(self) -> tuple[int, ...]:
        """How the encoder sees one sample: flat for a dense first layer, else (C, H, W)."""
        return (self.input_dim,) if self.encoder[0].kind == "dense" else tuple(self.input_shape)

    def code_shape(self) -> tuple[int, ...]:
        return tuple(stack_shapes(self.encoder, self.view_shape(), label="encoder layer")[-1])

    @property
    def code_dim(self) -> int:
        return _prod(self.latent_shape())

    def latent_shape(self) -> tuple[int, ...]:
        """What the decoder takes (the code; a VAE overrides it with its latent size)."""
        return self.code_shape()

    def decoder_output_shape(self) -> tuple[int, ...]:
        return tuple(stack_shapes(self.decoder, self.latent_shape(), label="decoder layer")[-1])

    def is_dense(self) -> bool:
        return all(l.kind == "dense" for l in (*self.encoder, *self.decoder))

    def dense_plan(self, code_l1: float = 0.0, code_l1_term: str = "code_l1") -> Optional[FastPlan]:
        """This config's encoder and decoder as one stack of dense layers (a :class:`FastPlan`), or
        None when a layer is not dense. What a family's :meth:`fast_plan` builds on."""
        if not self.is_dense():
            return None
        layers = (*self.encoder, *self.decoder)
        return FastPlan(sizes=(self.input_dim, *(l.size for l in layers)), activations=tuple(l.activation for l in layers),
                        code_layer=len(self.encoder) - 1, code_l1=float(code_l1), code_l1_term=code_l1_term)

    def fast_plan(self) -> Optional[FastPlan]:
        """What the stacked dense fast path trains for this config, or None when it cannot train all of
        it (the default: a family opts in by overriding this, and its ``supports_fast`` agrees)."""
        return None

    def macs(self) -> int:
        """Multiply-accumulates of one sample's forward pass (what the scheduler's cost model uses)."""
        total = 0
        for layers, shape in ((self.encoder, self.view_shape()), (self.decoder, self.latent_shape())):
            shapes = [tuple(shape)] + [tuple(x) for x in stack_shapes(layers, shape)]
            for l, a, b in zip(layers, shapes[:-1], shapes[1:]):
                if l.kind == "dense":
                    total += _prod(a) * _prod(b)
                elif l.kind == "conv2d":
                    total += _prod(b) * _prod(pair(l.kernel)) * a[0]
                elif l.kind == "conv2d-transpose":
                    total += _prod(a) * _prod(pair(l.kernel)) * b[0]
        return total

    def _stack_shapes(self):
        """(layer, input shape, output shape) of every encoder and decoder layer, from the specs alone."""
        for layers, shape in ((self.encoder, self.view_shape()), (self.decoder, self.latent_shape())):
            shapes = [tuple(shape)] + [tuple(x) for x in stack_shapes(layers, shape)]
            yield from zip(layers, shapes[:-1], shapes[1:])

    def parameter_count(self) -> int:
        """The built model's trainable numbers, computed from the config (nothing is allocated): what
        the memory check before training uses (``aelab.engine.memory``). A family whose model adds or
        shares weights beyond its two layer stacks overrides it; a test holds every family's count
        equal to its built model's."""
        total = 0
        for l, a, b in self._stack_shapes():
            if l.kind == "dense":
                total += (_prod(a) + 1) * _prod(b)
            elif l.kind in ("conv2d", "conv2d-transpose"):
                total += (_prod(pair(l.kernel)) * a[0] + 1) * b[0]
        return total

    def activation_count(self) -> int:
        """Values one sample produces on its way through the model (the input and every layer's
        output): with the batch size, what a training step holds besides the weights."""
        return self.input_dim + sum(_prod(b) for _, _, b in self._stack_shapes())

    def term_names(self) -> tuple[str, ...]:
        """The loss terms this model adds to the reconstruction, by name (``forward``'s ``terms``)."""
        return ()

    def layers_text(self, layers) -> list:
        """Layers as the config file writes them: ``"32:relu"`` for dense, a table otherwise."""
        return [str(l) if l.kind == "dense" else l.model_dump(mode="json") for l in layers]


def positive_float(default: float, *, ge: float = 0.0, le: float | None = None):
    return Field(default=default, ge=ge, le=le)


def float_field(v: Any) -> Any:
    """Pydantic 'before' helper: a TOML/CLI int where a float is meant (``lam = 1``) is that float."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def load_weights_into(model: nn.Module, path: str) -> None:
    """Replace ``model``'s weights with those in the safetensors file ``path``, all or nothing.

    Every state-dict name must be in the file with the same shape, and the file may hold nothing
    else; otherwise one :class:`~aelab.errors.WeightsError` line says what differs.
    """
    try:
        got = load_file(str(path))
    except FileNotFoundError:
        raise WeightsError(f"init_weights {path} does not exist; check the path") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"init_weights {path} is not a readable safetensors file ({err})") from None
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}" + (" …" if len(extra) > 3 else "")] if extra else [])
        raise WeightsError(f"init_weights {path} does not fit this model ({'; '.join(parts)}); its keys must be "
                           f"the model's state-dict names, e.g. {', '.join(list(want)[:2])}")
    for k, v in want.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise WeightsError(f"init_weights {path}: {k} has shape {list(got[k].shape)}, the model needs {list(v.shape)}")
    bad = non_float(got)
    if bad:  # integer weights would be truncated values cast silently
        raise WeightsError(f"init_weights {path} holds tensors that are not floating point "
                           f"({', '.join(bad[:3])}{' …' if len(bad) > 3 else ''}); save the weights as float32")
    wider = sorted(k for k, v in want.items() if got[k].dtype.itemsize > v.dtype.itemsize)
    if wider:
        say_once(f"aelab: warning: init_weights {path}: {', '.join(wider[:3])}{' …' if len(wider) > 3 else ''} "
                  f"({str(got[wider[0]].dtype).replace('torch.', '')}) cast to the model's "
                  f"{str(want[wider[0]].dtype).replace('torch.', '')}, rounding them")
    with torch.no_grad():
        for k, v in want.items():
            v.copy_(got[k].to(v.dtype))
