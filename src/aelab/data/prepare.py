"""From a data set as read to what training reads: scaling, the training arrays and their noise.

:func:`scale` turns both splits into float32 ``(N, D)`` arrays (``unit``, ``minmax`` or
``standard``, fitted on the training split or per split); :class:`TrainData` holds one run's
training and validation tensors on the device and draws the noise of a denoising autoencoder
(:func:`add_noise`) from the run's own random stream (:mod:`aelab.streams`), once or per epoch.
:func:`as_flat`/:func:`as_images` reshape samples. Nothing here reads files; every function is
deterministic given its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from ..streams import STREAM_BINARIZE, STREAM_NOISE, generator

if TYPE_CHECKING:  # pragma: no cover
    import torch

SIDE = 28
PIXELS = SIDE * SIDE
_BLOCK_ROWS = 4096

ArrayOrTensor = TypeVar("ArrayOrTensor", "np.ndarray", "torch.Tensor")


def scale(
    x_train_u8: np.ndarray,
    x_test_u8: np.ndarray,
    method: Literal["unit", "minmax", "standard"] = "unit",
    fit: Literal["train", "per_split"] = "train",
    unit_max: float | None = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits to float32 and flatten them to ``(N, features)``.

    ``method="unit"``: ``x / unit_max`` in float32 — for 8-bit images ``x / 255``, the Keras
    tutorial's ``x.astype("float32") / 255.``; ``unit_max=None`` (data that declares no range, a
    float table) keeps the values as they are. ``fit`` is checked but has no effect.

    ``method="standard"``: scikit-learn's ``StandardScaler()`` per feature: ``(x - mean) / std``
    with the population std (a zero std counts as 1), computed in float64, cast to float32.

    ``method="minmax"``: scikit-learn's ``MinMaxScaler()`` per pixel, bit for bit: with the
    fitted per-feature ``min`` and ``range = max - min`` (a zero range counts as 1, as in
    sklearn's ``_handle_zeros_in_scale``), ``x * (1 / range) + (-min / range)`` computed in
    float64, then cast to float32.

    - ``fit="train"``: fitted on the training split and applied to both, so test values may
      fall outside [0, 1] — the correct protocol.
    - ``fit="per_split"``: each split fitted on itself (the seed notebook's
      ``scaler.fit_transform(x_test)``), so the test split leaks its own statistics.
    """
    if method not in ("unit", "minmax", "standard"):
        raise ValueError(f"unknown scaling method {method!r}; expected 'unit', 'minmax' or 'standard'")
    if fit not in ("train", "per_split"):
        raise ValueError(f"unknown scaler fit {fit!r}; expected 'train' or 'per_split'")
    train = _flatten(x_train_u8, "x_train")
    test = _flatten(x_test_u8, "x_test")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"x_train has {train.shape[1]} features per sample but x_test has {test.shape[1]}")
    fitted = Scaler.fit(method, train, unit_max)
    return fitted.apply(train), (fitted if fit == "train" else Scaler.fit(method, test, unit_max)).apply(test)


@dataclass(frozen=True)
class Scaler:
    """The scaling a run applied to its data, fitted once, applied to any array and inverted.

    ``method`` is ``data.scaling``: ``unit`` divides by ``unit_max`` (the data's declared maximum,
    255 for 8-bit images; None: values kept as they are), ``minmax`` and ``standard`` use the
    per-feature parameters ``a``/``b`` fitted on the run's training split (scikit-learn's
    ``MinMaxScaler`` ``scale_``/``min_``; ``StandardScaler`` mean/std), computed by the same
    functions as the training arrays (:func:`scale` is built on it), so the values are the same bits.
    """

    method: str
    unit_max: float | None = None
    a: np.ndarray | None = None
    b: np.ndarray | None = None

    @classmethod
    def fit(cls, method: str, x_train: np.ndarray, unit_max: float | None) -> Scaler:
        """The scaler of ``method`` fitted on ``x_train`` ``(N, ...)`` (the training split as trained on)."""
        flat = _flat(x_train)
        if method == "minmax":
            return cls(method, None, *_minmax_fit(flat))
        if method == "standard":
            return cls(method, None, *_standard_fit(flat))
        return cls("unit", unit_max)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``(N, ...)`` as the model sees it: scaled, float32, flat ``(N, D)``."""
        flat = _flat(x)
        if self.method == "minmax":
            return _minmax_apply(flat, self.a, self.b)
        if self.method == "standard":
            return _standard_apply(flat, self.a, self.b)
        return _unit(flat, self.unit_max)

    def invert(self, s: np.ndarray) -> np.ndarray:
        """Scaled values ``(N, D)`` back in the data's range (float32): the inverse of :meth:`apply`."""
        s64 = np.asarray(s, dtype=np.float64)
        if self.method == "minmax":
            out = (s64 - self.b) / self.a
        elif self.method == "standard":
            out = s64 * self.b + self.a
        else:
            out = s64 * self.unit_max if self.unit_max is not None else s64
        return out.astype(np.float32)


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), math.prod(x.shape[1:]))


def _unit(x: np.ndarray, unit_max: float | None = 255) -> np.ndarray:
    out = x.astype(np.float32)
    if unit_max is not None:
        out /= np.float32(unit_max)  # in place: no second 188 MB temporary for the training split
    return out


def _standard_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn ``StandardScaler().fit``: per-feature mean and population std (zero std counts as 1)."""
    if len(x) == 0:
        raise ValueError("cannot fit a standard scaler on an empty split")
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=0)
    std = x64.std(axis=0)
    std = np.where(std < 10 * np.finfo(np.float64).eps, 1.0, std)
    return mean, std


def _standard_apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def _minmax_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn ``MinMaxScaler(feature_range=(0, 1)).fit``: the per-feature ``scale_``/``min_``."""
    if len(x) == 0:
        raise ValueError("cannot fit a min-max scaler on an empty split")
    # sklearn converts to float64 first; min and max are exact either way, so take them on the
    # (small) integer array and convert only the per-feature results.
    data_min = x.min(axis=0).astype(np.float64)
    data_range = x.max(axis=0).astype(np.float64) - data_min
    # sklearn's _handle_zeros_in_scale: a range below 10 * eps (for integer pixels: exactly 0,
    # a constant feature) counts as 1, so the feature maps to x - min instead of dividing by 0.
    data_range = np.where(data_range < 10 * np.finfo(np.float64).eps, 1.0, data_range)
    scale_ = 1.0 / data_range
    min_ = 0.0 - data_min * scale_
    return scale_, min_


def _minmax_apply(x: np.ndarray, scale_: np.ndarray, min_: np.ndarray) -> np.ndarray:
    """sklearn ``MinMaxScaler.transform`` (same operations in the same order), cast to float32."""
    out = np.empty(x.shape, dtype=np.float32)
    # In row blocks so the float64 intermediate stays small (not 376 MB for the training split);
    # each element still sees exactly sklearn's float64 x * scale_ + min_.
    for start in range(0, len(x), _BLOCK_ROWS):
        block = x[start:start + _BLOCK_ROWS].astype(np.float64)
        block *= scale_
        block += min_
        out[start:start + _BLOCK_ROWS] = block
    return out


def _flatten(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{what} must hold samples along its first axis, got shape {x.shape}")
    return x.reshape(len(x), math.prod(x.shape[1:]))  # explicit width: -1 fails for 0 samples


def as_images(x_flat: ArrayOrTensor) -> ArrayOrTensor:
    """``(N, 784)`` (or any ``(N, 28, 28)``-sized layout) to ``(N, 1, 28, 28)``, numpy or torch."""
    shape = tuple(x_flat.shape)
    if len(shape) < 2 or math.prod(shape[1:]) != PIXELS:
        raise ValueError(f"expected {PIXELS} pixels per sample, got shape {shape}")
    return x_flat.reshape(shape[0], 1, SIDE, SIDE)


def as_flat(x: ArrayOrTensor) -> ArrayOrTensor:
    """``(N, ...)`` to ``(N, features)`` — e.g. ``(N, 1, 28, 28)`` to ``(N, 784)`` — numpy or torch."""
    shape = tuple(x.shape)
    if len(shape) < 1:
        raise ValueError("expected samples along the first axis, got a scalar")
    return x.reshape(shape[0], math.prod(shape[1:]))  # explicit width: -1 fails for 0 samples


def add_noise(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    """``clip(x + factor·N(0,1), 0, 1)``, a new tensor on ``x``'s device.

    The noise is drawn as float32 on the CPU from ``g`` (a CPU generator) and then moved to ``x``'s
    device, so a run draws the same noise on any device. Whether it is drawn once before training
    or each epoch is :class:`TrainData`'s choice.
    """
    import torch  # deferred: torch is heavy; `aelab data info` imports the data layer without it

    if not torch.is_floating_point(x):
        raise ValueError(f"add_noise needs a floating-point tensor, got {x.dtype}")
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32)
    return (x + factor * noise.to(x.device)).clamp_(0.0, 1.0)


def bernoulli(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A binary sample of ``x`` (values in [0, 1] as probabilities): 1 where a uniform draw from ``g``
    falls below the value, float32, a new tensor on ``x``'s device. The uniforms are drawn on the CPU
    from ``g``, so a run draws the same bits on any device; 0 stays 0 and 1 stays 1."""
    import torch  # deferred: as in add_noise

    u = torch.rand(x.shape, generator=g, dtype=torch.float32)
    return (u.to(x.device) < x).to(torch.float32)


#: the fixed streams of binarised data: the test split's sample (every run's, whatever its seed, so
#: test NLLs compare) and a static training sample
BINARIZE_TEST_STREAM = (0, STREAM_BINARIZE, 0xFFFF)
BINARIZE_STATIC_STREAM = (0, STREAM_BINARIZE, 0xFFFE)


def binarize_fixed(x: torch.Tensor, mode: str, split: str) -> torch.Tensor:
    """``x`` binarised once, the same for every run: "threshold" rounds at 0.5; "dynamic" and "static"
    draw a Bernoulli sample from a fixed stream (:data:`BINARIZE_TEST_STREAM` for ``split="test"``,
    :data:`BINARIZE_STATIC_STREAM` for a static training split). "none": ``x`` itself."""
    if mode == "none":
        return x
    if mode == "threshold":
        return (x >= 0.5).to(x.dtype)
    return bernoulli(x, generator(*(BINARIZE_TEST_STREAM if split == "test" else BINARIZE_STATIC_STREAM)))


@dataclass
class TrainData:
    """One model's data, on the device. Inputs may be noisy; targets are clean, or with dynamic
    binarisation the epoch's binary sample, which is then the inputs too.

    x_train: (N, D) clean training samples (the targets, and the inputs without noise).
    x_val:   (Nv, D) clean validation samples.
    The noise of epoch ``e`` comes from the stream ``(seed, STREAM_NOISE, e)`` (``e = 0`` for
    ``noise_mode="once"``), the validation noise from ``(seed, STREAM_NOISE, 0xFFFF)``.
    """

    x_train: torch.Tensor
    x_val: torch.Tensor
    noise_factor: float = 0.0
    noise_mode: str = "once"  # "once" | "per_epoch"
    validate_on: str = "clean"  # "clean" | "noisy"
    seed: int = 0
    #: "dynamic": x_train holds the grey values, and each epoch's inputs and targets are one Bernoulli
    #: sample of them from the stream ``(seed, STREAM_BINARIZE, epoch)``; anything else: x_train as it is
    #: (a static or thresholded split is binarised before it gets here)
    binarize: str = "none"
    #: a conditional model's class labels, int64 on the device, row for row with ``x_train`` / ``x_val``
    #: (the loop shuffles them with the same permutation); None for every other model
    y_train: "torch.Tensor | None" = None
    y_val: "torch.Tensor | None" = None
    _cache: dict = field(default_factory=dict, repr=False)

    def train_inputs(self, epoch: int) -> torch.Tensor:
        """The training inputs for ``epoch`` (0-based): clean, noisy or binarised as configured."""
        if self.binarize == "dynamic":
            return self.train_targets(epoch)
        if self.noise_factor <= 0:
            return self.x_train
        key = ("train", 0 if self.noise_mode == "once" else epoch)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != "train"}
            # "once" follows the seed: train noise then test noise, drawn before training.
            self._cache[key] = add_noise(self.x_train, self.noise_factor, generator(self.seed, STREAM_NOISE, key[1]))
        return self._cache[key]

    def train_targets(self, epoch: int) -> torch.Tensor:
        """The training targets for ``epoch``: ``x_train``, or with dynamic binarisation the epoch's binary
        sample (the very tensor :meth:`train_inputs` gives, drawn once)."""
        if self.binarize != "dynamic":
            return self.x_train
        key = ("binary", epoch)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != "binary"}
            self._cache[key] = bernoulli(self.x_train, generator(self.seed, STREAM_BINARIZE, epoch))
        return self._cache[key]

    def noisy_val(self) -> torch.Tensor:
        if self.noise_factor <= 0:
            return self.x_val
        if "val" not in self._cache:
            self._cache["val"] = add_noise(self.x_val, self.noise_factor, generator(self.seed, STREAM_NOISE, -1 & 0xFFFF))
        return self._cache["val"]

    def val_inputs(self) -> torch.Tensor:
        return self.noisy_val() if self.validate_on == "noisy" else self.x_val


__all__ = ["TrainData", "add_noise", "bernoulli", "binarize_fixed", "as_flat", "as_images", "scale"]
