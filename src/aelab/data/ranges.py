"""Value ranges: what a run's data spans after scaling, and what its model and loss can reproduce.

A sigmoid last layer gives values in [0, 1] and binary cross-entropy takes targets in [0, 1]; data
scaled to anything else (a table of temperatures kept as it is, z-scores) cannot be reconstructed
however long the model trains. Two rules, both generic (they read the data's declared range and
the model's last activation, never a data set's name):

- :func:`fit_scaling`: data that declares no value range (a float table or array) and lies outside
  [0, 1], with ``unit`` scaling (which keeps such data as it is) and a model or loss bound to
  [0, 1], is scaled with ``minmax`` instead — the fitting default; one line on stderr says so and
  ``config.json`` records it. A linear last layer with ``--loss mse`` keeps the raw values.
- :func:`warn_unreachable`: any other run whose scaled training data leaves its last layer's range
  (``--scaling standard`` with a sigmoid output) gets one warning line on stderr, once per process.

Lines go to stderr with ``print``, not :mod:`warnings`: they are for the person at the terminal.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import say_once
from .dataset import Dataset

#: a run's config (``aelab.config.RunConfig``, a layer above): only its ``model``, ``data`` and
#: ``train`` parts are read
RunConfig = Any

_INF = math.inf
#: The values each activation of a last layer can produce (selu's floor is −scale·alpha).
OUTPUT_RANGES: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, _INF), "softplus": (0.0, _INF),
    "elu": (-1.0, _INF), "selu": (-1.0507009873554805 * 1.6732632423543772, _INF),
    "linear": (-_INF, _INF), "leaky_relu": (-_INF, _INF),
}
#: Losses whose targets must lie in [0, 1].
UNIT_LOSSES = ("bce", "torch_bce")


def last_activation(cfg: RunConfig) -> str:
    own = getattr(cfg.model, "output_activation", None)  # a model without layer specs says it itself
    if callable(own):
        return own()
    return getattr(cfg.model.decoder[-1], "activation", None) or "linear"


def output_range(cfg: RunConfig) -> tuple[float, float]:
    return OUTPUT_RANGES.get(last_activation(cfg), (-_INF, _INF))


def _fmt(r: tuple[float, float]) -> str:
    return "[" + ", ".join("∞" if v == _INF else "−∞" if v == -_INF else f"{v:.4g}" for v in r) + "]"


def _linear_hint(cfg: RunConfig) -> str:
    layers = cfg.model.decoder
    if all(getattr(l, "kind", "") == "dense" for l in layers):
        text = [f"{l.size}:{l.activation}" for l in layers[:-1]] + [f"{layers[-1].size}:linear"]
        return f"a linear last layer (--decoder {','.join(text)}) and --loss mse"
    return "a linear last layer and --loss mse"


def _needs(cfg: RunConfig, lo: float, hi: float) -> list[str]:
    """What in ``cfg`` cannot take values in [lo, hi]: its last layer and/or its loss."""
    out = output_range(cfg)
    why = []
    if lo < out[0] or hi > out[1]:
        why.append(f"the {last_activation(cfg)} last layer (values in {_fmt(out)})")
    if cfg.train.loss in UNIT_LOSSES and (lo < 0.0 or hi > 1.0):
        why.append(f"the {cfg.train.loss} loss (targets in [0, 1])")
    return why


def fit_scaling(cfg: RunConfig, ds: Dataset) -> RunConfig:
    """``cfg`` with ``data.scaling = "minmax"`` when its ``unit`` scaling would feed data that declares
    no range, and lies outside [0, 1], to a last layer or loss that cannot take it; else ``cfg``."""
    if cfg.data.scaling != "unit" or ds.value_range is not None or ds.x_train.size == 0:
        return cfg
    lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
    if lo >= 0.0 and hi <= 1.0:
        return cfg
    why = _needs(cfg, lo, hi)
    if not why:
        return cfg
    say_once(f"aelab: note: {Path(cfg.data.dataset).name} spans [{lo:.4g}, {hi:.4g}], which {' and '.join(why)} "
             f"cannot take, so it is scaled with minmax (each feature to [0, 1] on the training split; config.json "
             f"records it); for the raw values use {_linear_hint(cfg)}")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"scaling": "minmax"})})


def warn_unreachable(cfg: RunConfig, lo: float, hi: float) -> str | None:
    """One warning line (once per process) when the scaled training data [lo, hi] leaves the range of
    ``cfg``'s last layer; returns the line, or None when the model can reach its data."""
    out = output_range(cfg)
    if lo >= out[0] and hi <= out[1]:
        return None
    line = (f"aelab: warning: {Path(cfg.data.dataset).name} scaled with '{cfg.data.scaling}' spans "
            f"[{lo:.4g}, {hi:.4g}], but the model's {last_activation(cfg)} last layer gives values in "
            f"{_fmt(out)}: its reconstructions cannot reach the data; use {_linear_hint(cfg)}")
    say_once(line)
    return line
