"""Architecture as data: layer specs with Keras' exact semantics, their shapes and their modules.

What belongs here, and only this:

- the validated layer specs (:class:`Dense`, :class:`Conv2D`, :class:`Conv2DTranspose`,
  :class:`MaxPool2D`, :class:`UpSample2D`, :class:`Flatten`, :class:`Reshape`), discriminated on
  ``kind`` (:data:`LayerSpec`), and :func:`parse_layer` for the CLI's ``"32:relu"`` and TOML tables;
- the shape arithmetic, exactly Keras' (:func:`out_shape`, :func:`stack_shapes`), so a config can
  be checked before anything is built;
- the PyTorch modules that compute what Keras' layers compute (TensorFlow's asymmetric "same"
  padding, its transposed-convolution output size and cropping, Keras' (H, W, C) flatten order)
  and :func:`build_stack`, which turns a list of specs into an ``nn.Sequential`` initialised as
  Keras (or PyTorch) would, from one generator.

Model families (which stacks make an encoder, a decoder, a VAE head) live in their own modules.

Layouts. Inside aelab tensors are PyTorch's channels-first: an image batch is (B, C, H, W), a
shape is (C, H, W) for images or (D,) for vectors. What the user writes follows Keras: a
``Reshape`` target is (H, W, C) or (D,), and ``Flatten`` / ``Reshape`` order values as Keras does,
(H, W, C) with the channel fastest. That costs a permute, but it means the Dense after a Flatten
has Keras' row order, so weights can be exchanged with a Keras model by transposing kernels only
(conv kernel (kh, kw, in, out) ↔ (out, in, kh, kw), both kinds by ``permute(2, 3, 1, 0)``; dense
kernel (in, out) ↔ weight.T) — the reference VAE's Dense → Reshape(7, 7, 64) decoder included.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Iterable, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, field_validator
from torch import nn

from .._schema import ACTIVATIONS, Activation, Frozen
from ..errors import ConfigError
from . import conv1

Shape = tuple[int, ...]
Padding = Literal["same", "valid"]


def _list_to_tuple(v: Any) -> Any:
    # TOML and JSON give lists; the specs are strict and frozen, so sizes are stored as tuples.
    return tuple(v) if isinstance(v, list) else v


PositiveInt = Annotated[int, Field(gt=0)]
#: A size per spatial axis: one int for both, or (h, w), as Keras' ``kernel_size=3`` / ``(3, 5)``.
Pair = Annotated[Union[PositiveInt, tuple[PositiveInt, PositiveInt]], BeforeValidator(_list_to_tuple)]


# -- activations and Keras' kernel init ------------------------------------------------------------

class LeakyReLU02(nn.LeakyReLU):
    """Keras 3's ``leaky_relu`` uses a negative slope of 0.2 (PyTorch's default is 0.01)."""

    def __init__(self) -> None:
        super().__init__(negative_slope=0.2)


#: Keras activation name → module. Keras' elu has alpha 1, selu the standard constants.
ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "leaky_relu": LeakyReLU02,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATION_MODULES[name]()


def glorot_uniform_(weight: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Keras' default kernel init: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)).

    ``weight`` is PyTorch-shaped ``(out, in)``; the limit is symmetric so the layout does not matter.
    """
    fan_out, fan_in = weight.shape
    a = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-a, a, generator=generator)
    return weight


def pair(v: Union[int, Sequence[int]]) -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(3, 5) -> (3, 5)``."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# -- specs ---------------------------------------------------------------------------------------


class Dense(Frozen):
    """Keras ``Dense(size, activation)``; on vectors only (flatten an image first)."""

    kind: Literal["dense"] = "dense"
    size: int = Field(gt=0)
    activation: Activation = "linear"

    @classmethod
    def parse(cls, text: str) -> "Dense":
        """Parse the CLI short form ``"32:relu"``; the activation is required (write ``32:linear``
        for Keras' default), so a forgotten one is an error, not a silently linear layer."""
        size, sep, act = text.strip().partition(":")
        act = act.strip()
        if not sep or not size.strip().isdigit() or int(size) <= 0:
            raise ConfigError(
                f"layer {text!r} is not SIZE:ACTIVATION (for example 32:relu); "
                f"activations: {', '.join(ACTIVATIONS)}"
            )
        if act not in ACTIVATIONS:
            raise ConfigError(f"layer {text!r}: unknown activation {act!r}; allowed: {', '.join(ACTIVATIONS)}")
        return cls(size=int(size), activation=act)

    def __str__(self) -> str:
        return f"{self.size}:{self.activation}"


class _Conv(Frozen):
    kind: str
    filters: int = Field(gt=0)
    kernel: Pair
    stride: Pair = 1
    #: Keras' default is "valid"; "same" pads as TensorFlow does (extra row/column bottom/right).
    padding: Padding = "valid"
    activation: Activation = "linear"


class Conv2D(_Conv):
    """Keras ``Conv2D(filters, kernel, strides=stride, padding=padding, activation=...)``."""

    kind: Literal["conv2d"] = "conv2d"


class Conv2DTranspose(_Conv):
    """Keras ``Conv2DTranspose(filters, kernel, strides=stride, padding=padding, activation=...)``."""

    kind: Literal["conv2d-transpose"] = "conv2d-transpose"


class MaxPool2D(Frozen):
    """Keras ``MaxPooling2D(pool, strides=stride, padding)``; ``stride=None`` means ``pool``."""

    kind: Literal["max-pool"] = "max-pool"
    pool: Pair = 2
    stride: Optional[Pair] = None
    padding: Padding = "valid"


class UpSample2D(Frozen):
    """Keras ``UpSampling2D(size)`` with its default nearest-neighbour interpolation."""

    kind: Literal["up-sample"] = "up-sample"
    size: Pair = 2


class Flatten(Frozen):
    """Keras ``Flatten()``: an image becomes a vector in (H, W, C) order; a vector stays as it is."""

    kind: Literal["flatten"] = "flatten"


class Reshape(Frozen):
    """Keras ``Reshape(shape)``; ``shape`` in Keras order: (H, W, C) or (D,), one entry may be -1."""

    kind: Literal["reshape"] = "reshape"
    shape: tuple[int, ...]

    @field_validator("shape", mode="before")
    @classmethod
    def _from_list(cls, v: Any) -> Any:
        return _list_to_tuple(v)

    @field_validator("shape")
    @classmethod
    def _valid(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        # aelab's tensors are vectors or images; other ranks would have no layer to take them.
        if len(v) not in (1, 3):
            raise ValueError(f"got {list(v)}; give (H, W, C) for an image or (D,) for a vector")
        if any(d <= 0 and d != -1 for d in v) or sum(d == -1 for d in v) > 1:
            raise ValueError(f"got {list(v)}; sizes must be positive, at most one may be -1 (inferred)")
        return v


LayerSpec = Annotated[
    Union[Dense, Conv2D, Conv2DTranspose, MaxPool2D, UpSample2D, Flatten, Reshape],
    Field(discriminator="kind"),
]
SPEC_TYPES = (Dense, Conv2D, Conv2DTranspose, MaxPool2D, UpSample2D, Flatten, Reshape)
#: The allowed ``kind`` values, in the order error messages list them.
KINDS = tuple(t.model_fields["kind"].default for t in SPEC_TYPES)
_ADAPTER: TypeAdapter = TypeAdapter(LayerSpec)


def _one_line(err: ValidationError, x: dict) -> str:
    kind = x["kind"]
    errors = err.errors()
    e = errors[0]
    # loc is (kind, field, ...): past the field come the Pair union's member names.
    parts = [str(p) for p in e["loc"][1:]]
    field = parts[0] if parts else "layer"
    fields = {str(x["loc"][1]) for x in errors if len(x["loc"]) > 1}
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif e["type"] == "missing":
        msg = "missing; it is required"
    elif len(parts) > 1:  # an int-or-pair field
        msg = f"got {x.get(field)!r}; give a positive int or [h, w], two positive ints"
    elif "input" in e:
        msg = f"got {e['input']!r}; {msg[0].lower()}{msg[1:]}"
    more = f" (and {len(fields) - 1} more field(s))" if len(fields) > 1 else ""
    return f"layer {kind}: {field}: {msg}{more}"


def parse_layer(x: Any) -> LayerSpec:
    """A spec from the CLI short form (``"32:relu"`` → :class:`Dense`) or a dict (a TOML table).

    A spec is returned as it is. Anything wrong raises :class:`ConfigError` with one line.
    """
    if isinstance(x, SPEC_TYPES):
        return x
    if isinstance(x, str):
        return Dense.parse(x)
    if not isinstance(x, dict):
        raise ConfigError(
            f"a layer is SIZE:ACTIVATION (for example 32:relu) or a table with a kind; got {type(x).__name__}"
        )
    kind = x.get("kind")
    if kind is None:
        raise ConfigError(f"layer {x!r} has no kind; allowed kinds: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ConfigError(f"layer kind {kind!r} is unknown; allowed kinds: {', '.join(KINDS)}")
    try:
        return _ADAPTER.validate_python(x)
    except ValidationError as err:
        raise ConfigError(_one_line(err, x)) from None


# -- shape arithmetic ----------------------------------------------------------------------------


def conv_out_len(n: int, k: int, s: int, padding: str) -> int:
    """Conv / pool output length: "valid" ⌊(n − k)/s⌋ + 1 (needs n ≥ k), "same" ⌈n/s⌉."""
    return -(-n // s) if padding == "same" else (n - k) // s + 1


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after), the odd one after."""
    total = max((conv_out_len(n, k, s, "same") - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def transpose_out_len(n: int, k: int, s: int, padding: str) -> int:
    """Conv2DTranspose output length as Keras computes it (and passes to ``tf.nn.conv_transpose``).

    "same": n·s. "valid": (n − 1)·s + max(k, s) — the full transposed output (n − 1)·s + k, except
    that a kernel smaller than its stride still fills n·s (the tail is bias only).
    """
    return n * s if padding == "same" else (n - 1) * s + max(k, s)


def transpose_crop(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """Where Keras' Conv2DTranspose output sits in the full transposed output of length (n−1)·s + k.

    Returns (start, end) into the full output; ``end`` past its length means zeros (bias) there.
    TF's conv_transpose is the gradient of a conv whose input has the output's size: its "same"
    padding before = ⌊max(k − s, 0)/2⌋ is cropped at the top/left, the rest at the bottom/right.
    """
    out = transpose_out_len(n, k, s, padding)
    start = same_pads(out, k, s)[0] if padding == "same" else 0
    return start, start + out


def _fmt(shape: Shape) -> str:
    if len(shape) == 3:
        c, h, w = shape
        return f"(C={c}, H={h}, W={w})"
    return str(tuple(shape))


def _reshape_hint(shape: Shape) -> str:
    d = shape[0]
    r = math.isqrt(d)
    return f"[{r}, {r}, 1]" if r * r == d else "[H, W, C]"


def out_shape(spec: LayerSpec, in_shape: Sequence[int], *, index: Optional[int] = None, label: str = "layer") -> Shape:
    """The output shape of ``spec`` on an input of ``in_shape`` ((C, H, W) or (D,)), as Keras has it.

    A layer that does not fit its input raises ValueError with one line naming the layer
    (``label index (kind)``), the input shape and what to do.
    """
    in_shape = tuple(int(d) for d in in_shape)
    where = f"{label} {index} ({spec.kind})" if index is not None else f"{label} {spec.kind}"
    if len(in_shape) not in (1, 3) or any(d <= 0 for d in in_shape):
        raise ValueError(f"{where}: input shape {in_shape} is neither a vector (D,) nor an image (C, H, W)")
    image = len(in_shape) == 3
    kind = spec.kind
    if kind == "dense":
        if image:
            raise ValueError(f"{where}: a dense layer takes a vector but gets an image {_fmt(in_shape)}; add a flatten layer first")
        return (spec.size,)
    if kind == "flatten":
        return (math.prod(in_shape),)
    if kind == "reshape":
        n = math.prod(in_shape)
        known = math.prod(d for d in spec.shape if d != -1)
        if -1 in spec.shape:
            if n % known:
                raise ValueError(
                    f"{where}: cannot reshape the {n} values of input {_fmt(in_shape)} to {list(spec.shape)}; "
                    f"{n} is not a multiple of {known}"
                )
            target = tuple(n // known if d == -1 else d for d in spec.shape)
        else:
            target = spec.shape
        if math.prod(target) != n:
            raise ValueError(
                f"{where}: cannot reshape the {n} values of input {_fmt(in_shape)} to {list(target)} "
                f"({math.prod(target)} values); give a shape whose sizes multiply to {n}"
            )
        # Keras order (H, W, C) → aelab's (C, H, W).
        return (target[2], target[0], target[1]) if len(target) == 3 else target
    # Everything below works on images.
    if not image:
        raise ValueError(
            f"{where}: takes an image but gets a vector {_fmt(in_shape)}; add a reshape layer first "
            f"(for example shape = {_reshape_hint(in_shape)})"
        )
    c, h, w = in_shape
    if kind == "up-sample":
        sh, sw = pair(spec.size)
        return (c, h * sh, w * sw)
    if kind in ("conv2d", "max-pool"):
        k = pair(spec.kernel if kind == "conv2d" else spec.pool)
        s = pair(spec.stride if spec.stride is not None else spec.pool)
        if spec.padding == "valid" and (k[0] > h or k[1] > w):
            what = "kernel" if kind == "conv2d" else "pool"
            raise ValueError(
                f"{where}: {what} {k[0]}×{k[1]} is larger than the input {_fmt(in_shape)} with padding 'valid'; "
                f"use padding 'same' or a smaller {what}"
            )
        out_c = spec.filters if kind == "conv2d" else c
        return (out_c, conv_out_len(h, k[0], s[0], spec.padding), conv_out_len(w, k[1], s[1], spec.padding))
    if kind == "conv2d-transpose":
        k, s = pair(spec.kernel), pair(spec.stride)
        return (
            spec.filters,
            transpose_out_len(h, k[0], s[0], spec.padding),
            transpose_out_len(w, k[1], s[1], spec.padding),
        )
    raise ValueError(f"{where}: unknown layer kind {kind!r}; allowed kinds: {', '.join(KINDS)}")  # pragma: no cover


def stack_shapes(specs: Iterable[Any], in_shape: Sequence[int], *, label: str = "layer") -> list[Shape]:
    """The shape after each layer of a stack (specs, short-form strings or dicts)."""
    shapes, shape = [], tuple(int(d) for d in in_shape)
    for i, s in enumerate(specs):
        shape = out_shape(parse_layer(s), shape, index=i, label=label)
        shapes.append(shape)
    return shapes


# -- modules -------------------------------------------------------------------------------------


def _tf_pads(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int]) -> tuple[int, int, int, int]:
    # F.pad's order: (left, right, top, bottom).
    top, bottom = same_pads(x.shape[-2], k[0], s[0])
    left, right = same_pads(x.shape[-1], k[1], s[1])
    return left, right, top, bottom


# Memory format. The image layers compute in channels-last (NHWC) memory, the layout oneDNN's CPU
# convolutions are fastest in (NCHW costs a reorder around every call: the VAE's transposed convs
# ran 2–4× slower), and the one in which max-pooling and nearest up-sampling have vectorised
# kernels. Only the memory order changes: a tensor's shape and indexing stay PyTorch's (B, C, H, W),
# so nothing outside these modules sees a difference (``ShapedSequential`` reshapes by logical
# order, and Keras' (H, W, C) Flatten becomes a view instead of a copy). A network's first image
# layer converts its input once; each layer's output is channels-last, so later layers convert
# nothing.
_CL = torch.channels_last


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory (the same tensor when it already is)."""
    x = x.contiguous(memory_format=_CL)
    if x.shape[1] == 1 and x.stride(1) != 1:
        # One channel (an MNIST batch): NCHW and NHWC are the same bytes, but PyTorch reads these
        # strides as NCHW and a conv on them writes an NCHW output, which every later layer would
        # then mix with channels-last gradients (strided, several times slower). A 1-channel copy
        # with channels-last strides is small and makes the whole network channels-last.
        x = torch.empty_like(x, memory_format=_CL).copy_(x)
    return x


def _add_bias_(y: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    # The bias as a separate broadcast add, in place on the fresh conv output (a convolution's
    # backward does not read its output), not inside the oneDNN call: oneDNN's transposed
    # convolution with a bias took ~3× as long as without one (a slower kernel, and NCHW output),
    # and so did a conv on a one-channel channels-last input. The value is the same sum, conv(x) + b.
    return y if bias is None else y.add_(bias.view(1, -1, 1, 1))


class KerasConv2d(nn.Conv2d):
    """``nn.Conv2d`` computing Keras' ``Conv2D``: "same" is TensorFlow's (asymmetric) padding.

    PyTorch's own ``padding="same"`` refuses strides > 1 and ``padding=1`` is symmetric, which for
    an even input and stride 2 (28 → 14 in the reference VAE) shifts the result by one pixel.
    Parameters sit directly on the module (``weight`` (out, in, kh, kw), ``bias``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, keras_padding: str = "valid",
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, device=device, dtype=dtype)
        self.keras_padding = keras_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _channels_last(x)
        pad = (0, 0)
        if self.keras_padding == "same":
            left, right, top, bottom = _tf_pads(x, self.kernel_size, self.stride)
            if left == right and top == bottom:  # symmetric: let the conv pad, no copy
                pad = (top, left)
            else:  # TF's extra row/column at the bottom/right (a copy of the input, channels-last)
                x = F.pad(x, (left, right, top, bottom))
        if conv1.applies(x, self.weight, self.in_channels, self.out_channels, self.stride, self.dilation,
                         self.groups, pad):  # one output channel: aelab's C kernels (models/conv1.py)
            return conv1.conv1(x, self.weight, self.bias, pad[0])
        return _add_bias_(F.conv2d(x, self.weight, None, self.stride, pad), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keras_padding={self.keras_padding!r}"


class KerasConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computing Keras' ``Conv2DTranspose`` (output size and crop as TF's).

    The full transposed output ((n − 1)·s + k per axis) is cropped to Keras' size with TF's split
    (:func:`transpose_crop`: for "same" the odd row/column is cut at the bottom/right, where
    PyTorch's ``padding=p, output_padding=1`` would cut it at the top/left), or extended with
    bias-only rows when the kernel is smaller than the stride. ``weight`` is PyTorch's
    (in, out, kh, kw), the Keras kernel (kh, kw, out, in) permuted, not flipped.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, keras_padding: str = "valid",
                 device=None, dtype=None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, device=device, dtype=dtype)
        self.keras_padding = keras_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _channels_last(x)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        h0, h1 = transpose_crop(x.shape[-2], kh, sh, self.keras_padding)
        w0, w1 = transpose_crop(x.shape[-1], kw, sw, self.keras_padding)
        full_h, full_w = (x.shape[-2] - 1) * sh + kh, (x.shape[-1] - 1) * sw + kw
        if (h0 == w0 and full_h - h1 == h0 and full_w - w1 == w0 and h0 < kh
                and conv1.applies(x, self.weight, self.in_channels, self.out_channels, self.stride,
                                  self.dilation, self.groups, (kh - 1 - h0, kw - 1 - w0))):
            # stride 1, one output channel, the same crop on every side: the convolution with the
            # flipped kernel and padding k − 1 − crop, by aelab's C kernels (models/conv1.py)
            return conv1.conv1(x, self.weight, self.bias, kh - 1 - h0, transposed=True)
        y = F.conv_transpose2d(x, self.weight, None, self.stride)
        pads = (-w0, w1 - full_w, -h0, h1 - full_h)  # negative: a crop; positive (a kernel smaller
        if any(pads):  # than its stride): TF's rows no kernel reaches, which hold only the bias
            # One pad op, not a slice per axis: its backward is one padded copy of the gradient
            # instead of two zero-filled full-size tensors. Channels-last in, channels-last out.
            # (Cropping through the conv's own padding — and output_padding, after a zero row in
            # front of the input — is exact as well and a few % faster on one thread, but oneDNN
            # then picks kernels that round differently from TensorFlow's: a VAE trained from the
            # same start as Keras drifted to 2e-4 from it in one epoch on two threads, not 2e-6.)
            y = F.pad(y, pads)
        return _add_bias_(y, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, keras_padding={self.keras_padding!r}"


class KerasMaxPool2d(nn.Module):
    """Keras' ``MaxPooling2D``: "same" pads TF-style with −inf (padding never wins the max)."""

    def __init__(self, pool, stride=None, keras_padding: str = "valid") -> None:
        super().__init__()
        self.pool = pair(pool)
        self.stride = pair(stride if stride is not None else pool)
        self.keras_padding = keras_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _channels_last(x)  # max-pooling's channels-last kernel: ~7× the NCHW one's speed here
        if self.keras_padding == "same":
            left, right, top, bottom = _tf_pads(x, self.pool, self.stride)
            if (left, top) == (right, bottom) and 2 * top <= self.pool[0] and 2 * left <= self.pool[1]:
                # Symmetric: max_pool2d's own padding is −inf too, and spares a copy.
                return F.max_pool2d(x, self.pool, self.stride, (top, left))
            x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.pool, self.stride)

    def extra_repr(self) -> str:
        return f"pool={self.pool}, stride={self.stride}, keras_padding={self.keras_padding!r}"


class UpSampleNearest(nn.Module):
    """Keras' ``UpSampling2D``: each pixel repeated ``size`` times per axis (exact copies)."""

    def __init__(self, size=2) -> None:
        super().__init__()
        self.size = pair(size)
        # PyTorch's nearest kernel finds the source row of output row i as floor(i · fl(1/s)) (or
        # i >> 1 for s = 2): exactly i // s whenever fl(1/s), the float32 nearest 1/s, is not
        # below 1/s (rounding can then only push i·fl(1/s) up, by far less than 1/s, for any image
        # under 2^23 rows). That holds for 1–24 and most factors above; for the others (25, 29, …)
        # the forward is the expand + reshape below, exact by construction.
        one = torch.ones((), dtype=torch.float32)
        self._kernel = all(float(one / f) >= 1.0 / f for f in self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        sh, sw = self.size
        if self._kernel:
            # On channels-last memory: the same copies of each pixel, and a backward (the sum over
            # each pixel's copies) ~7× faster than that of the expand's strided reduction.
            return F.interpolate(_channels_last(x), size=(h * sh, w * sw), mode="nearest")
        return x[:, :, :, None, :, None].expand(b, c, h, sh, w, sw).reshape(b, c, h * sh, w * sw)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def _to_hwc_vector(x: torch.Tensor) -> torch.Tensor:
    # (B, C, H, W) → (B, H·W·C), channel fastest, as Keras' channels-last flatten.
    return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x


class FlattenHWC(nn.Module):
    """Keras' ``Flatten``: an image (B, C, H, W) becomes (B, H·W·C) in (H, W, C) order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_hwc_vector(x)


class ReshapeHWC(nn.Module):
    """Keras' ``Reshape``: values read and written in (H, W, C) order; ``shape`` is aelab's (C, H, W) or (D,)."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = _to_hwc_vector(x).reshape(x.shape[0], -1)
        if len(self.shape) == 3:
            c, h, w = self.shape
            return v.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)
        return v

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


def _module(spec: LayerSpec, in_shape: Shape, shape: Shape) -> nn.Module:
    kind = spec.kind
    if kind == "dense":
        # Built without drawing from the global RNG: initialisation below draws from the generator.
        return nn.utils.skip_init(nn.Linear, in_shape[0], spec.size)
    if kind == "conv2d":
        return nn.utils.skip_init(KerasConv2d, in_shape[0], spec.filters, pair(spec.kernel), pair(spec.stride), spec.padding)
    if kind == "conv2d-transpose":
        return nn.utils.skip_init(
            KerasConvTranspose2d, in_shape[0], spec.filters, pair(spec.kernel), pair(spec.stride), spec.padding
        )
    if kind == "max-pool":
        return KerasMaxPool2d(spec.pool, spec.stride, spec.padding)
    if kind == "up-sample":
        return UpSampleNearest(spec.size)
    if kind == "flatten":
        return FlattenHWC()
    return ReshapeHWC(shape)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras computes them for the same kernel.

    Keras: kernel (kh, kw, a, b) → fan_in = kh·kw·a, fan_out = kh·kw·b; Dense (in, out). Conv2D's
    Keras kernel (kh, kw, in, out) is PyTorch's (out, in, kh, kw); Conv2DTranspose's (kh, kw, out,
    in) is PyTorch's (in, out, kh, kw). In both, Keras' a is PyTorch's dim 1 and b its dim 0.
    """
    rf = math.prod(weight.shape[2:])
    return weight.shape[1] * rf, weight.shape[0] * rf


def _init_keras(m: nn.Module, generator: Optional[torch.Generator]) -> None:
    if isinstance(m, nn.Linear):
        glorot_uniform_(m.weight, generator)  # the very call DenseAutoencoder makes: same bits
    else:
        fan_in, fan_out = _fans(m.weight)
        a = math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            m.weight.uniform_(-a, a, generator=generator)
    nn.init.zeros_(m.bias)


def _init_torch(m: nn.Module, generator: Optional[torch.Generator]) -> None:
    # PyTorch's reset_parameters for Linear / Conv*d, step for step, but from ``generator``: weights
    # U(±1/√fan_in) via kaiming_uniform(a=√5), biases U(±1/√fan_in), fan_in from weight.shape[1]
    # (so a ConvTranspose2d's fan_in counts its *output* channels, PyTorch's quirk).
    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    nn.init.uniform_(m.bias, -bound, bound, generator=generator)


def build_stack(
    specs: Iterable[Any],
    in_shape: Sequence[int],
    *,
    generator: Optional[torch.Generator] = None,
    init: Literal["keras", "torch"] = "keras",
    label: str = "layer",
) -> tuple[nn.Sequential, Shape]:
    """``nn.Sequential`` [layer, activation, layer, activation, …] for ``specs`` on ``in_shape``.

    Every spec contributes two modules (the activation is ``nn.Identity`` for kinds without one),
    so a dense stack has ``DenseAutoencoder``'s layout and names (``0.weight``, ``2.weight``, …).
    Weights are drawn from ``generator`` in layer order (weight then bias): ``init="keras"`` is
    Glorot-uniform kernels with Keras' fans and zero biases, ``init="torch"`` PyTorch's defaults.
    Returns the stack and its output shape; a misfit layer raises ValueError (see :func:`out_shape`).
    """
    if init not in ("keras", "torch"):
        raise ValueError(f"init {init!r} is unknown; use 'keras' or 'torch'")
    specs = [parse_layer(s) for s in specs]
    in_shape = tuple(int(d) for d in in_shape)
    shapes = stack_shapes(specs, in_shape, label=label)
    mods: list[nn.Module] = []
    prev = in_shape
    for spec, shape in zip(specs, shapes):
        mods += [_module(spec, prev, shape), make_activation(getattr(spec, "activation", "linear"))]
        prev = shape
    for m in mods:
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            (_init_keras if init == "keras" else _init_torch)(m, generator)
    return nn.Sequential(*mods), prev


__all__ = [
    "Conv2D", "Conv2DTranspose", "Dense", "Flatten", "KINDS", "LayerSpec", "MaxPool2D", "Reshape",
    "UpSample2D", "build_stack", "out_shape", "parse_layer", "stack_shapes", "same_pads", "pair",
    "conv_out_len", "transpose_out_len", "transpose_crop", "KerasConv2d", "KerasConvTranspose2d",
    "KerasMaxPool2d", "UpSampleNearest", "FlattenHWC", "ReshapeHWC",
]
