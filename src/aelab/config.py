"""Validated, frozen configurations.

A run is fully described by a :class:`RunConfig` (model + data + training). Configs are built
from Python, from TOML, from CLI flags or from dotted overrides, and are validated when built:
an unknown key, a wrong type or an out-of-range value raises :class:`aelab.errors.ConfigError`
with one line naming the field and what is allowed. Configs are frozen and round-trip through
JSON; :func:`config_hash` is the cache key of a run.

pydantic does the validation (strict types, ``extra="forbid"``) so the rules live next to the
fields they guard instead of in hand-written checks.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from ._schema import ACTIVATIONS, Activation  # noqa: F401  (re-exported)
from ._schema import Frozen as _Frozen
from .data import DataConfig
from .data import fingerprint as data_fingerprint
from .data.registry import option_fields
from .models import FAMILIES, ModelConfig, custom
from .models.layers import Dense as LayerSpec  # noqa: F401  (the dense short form)
from .models.layers import parse_layer


def parse_layers(text: str) -> tuple:
    """Parse ``"128:relu,64:relu,32:relu"`` into layer specs."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError("a layer list is empty; give SIZE:ACTIVATION[,SIZE:ACTIVATION...] such as 32:relu")
    return tuple(parse_layer(p) for p in parts)


#: The model part of a run: one family's Config, chosen by its ``family`` field ("ae" when absent) from
#: the registry when the run config is validated, so a family registered later is accepted too
#: (``SerializeAsAny``: a dump holds the family's own fields, not only ModelConfig's).
AnyModelConfig = SerializeAsAny[ModelConfig]
DEFAULT_FAMILY = "ae"


def _make_known(family: Any) -> None:
    """Your own modules' families (``custom``, ``custom_vae``) are known once a config names them."""
    if family in custom.CUSTOM_FAMILIES:
        custom.register()


def model_defaults(family: str) -> dict[str, Any]:
    """A family's default model config as a dict (what a config file may override)."""
    _make_known(family)
    if family not in FAMILIES:
        raise ConfigError(f"invalid config: model.family: unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    return _model_dict(FAMILIES[family].Config())


def _model_dict(m: ModelConfig) -> dict[str, Any]:
    d = m.model_dump(mode="json")
    d["encoder"] = m.layers_text(m.encoder)
    d["decoder"] = m.layers_text(m.decoder)
    d["input_shape"] = list(m.input_shape)
    return d


class _Settings(_Frozen):
    """A validated table of settings whose float fields also take a TOML integer (``rho = 1``)."""

    @model_validator(mode="before")
    @classmethod
    def _ints_are_floats(cls, data: Any) -> Any:
        if isinstance(data, dict):
            floats = {k for k, f in cls.model_fields.items() if f.annotation in (float, "float", Optional[float],
                                                                                  "Optional[float]")}
            data = {k: (float(v) if k in floats and isinstance(v, int) and not isinstance(v, bool) else v)
                    for k, v in data.items()}
        return data


# -- optimizers ------------------------------------------------------------------------------------
# Each is one framework's optimizer, its defaults that framework's; the learning rate is train.lr for
# all of them (so a schedule scales one value). The update rules: aelab.engine.optimizers.
class KerasAdamOptimizer(_Settings):
    """Keras' Adam (the default, as the seed notebook): its β1, β2 and ε are ``train.beta1``,
    ``train.beta2`` and ``train.eps`` (where they always were, so every existing config keeps its hash)."""

    name: Literal["keras_adam"] = "keras_adam"


class TorchAdamOptimizer(_Settings):
    """``torch.optim.Adam`` (pytorch/examples): ε added to the bias-corrected ``sqrt(v̂)``, ε 1e-8."""

    name: Literal["torch_adam"] = "torch_adam"
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-8, gt=0.0)


class KerasAdadeltaOptimizer(_Settings):
    """Keras' Adadelta (rho 0.95, ε 1e-7 in Keras ≥ 2.1.3; Keras 1.0 used ε 1e-6). Its learning rate is
    train.lr: 1.0 in Keras 1/2 and in Zeiler's paper, 0.001 in tf.keras ≥ 2.3 and Keras 3."""

    name: Literal["keras_adadelta"] = "keras_adadelta"
    rho: float = Field(default=0.95, ge=0.0, le=1.0)
    eps: float = Field(default=1e-7, gt=0.0)


class TorchAdadeltaOptimizer(_Settings):
    """``torch.optim.Adadelta`` (rho 0.9, ε 1e-6; its own default learning rate is 1.0)."""

    name: Literal["torch_adadelta"] = "torch_adadelta"
    rho: float = Field(default=0.9, ge=0.0, le=1.0)
    eps: float = Field(default=1e-6, gt=0.0)


class KerasSGDOptimizer(_Settings):
    """Keras' SGD: the velocity holds the learning rate (``m ← μm − lr·g; p ← p + m``)."""

    name: Literal["keras_sgd"] = "keras_sgd"
    momentum: float = Field(default=0.0, ge=0.0, le=1.0)
    nesterov: bool = False


class TorchSGDOptimizer(_Settings):
    """``torch.optim.SGD``: the buffer holds gradients (``b ← μb + (1−d)g; p ← p − lr·b``), b = g at first."""

    name: Literal["torch_sgd"] = "torch_sgd"
    momentum: float = Field(default=0.0, ge=0.0)
    dampening: float = Field(default=0.0, ge=0.0, le=1.0)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov(self) -> "TorchSGDOptimizer":
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("train.optimizer.nesterov needs a momentum above 0 and dampening 0 (as torch.optim.SGD)")
        return self


class KerasRMSpropOptimizer(_Settings):
    """Keras 3's RMSprop: rho 0.9, ε 1e-7 added *inside* the square root."""

    name: Literal["keras_rmsprop"] = "keras_rmsprop"
    rho: float = Field(default=0.9, ge=0.0, le=1.0)
    momentum: float = Field(default=0.0, ge=0.0, le=1.0)
    eps: float = Field(default=1e-7, gt=0.0)
    centered: bool = False


class TorchRMSpropOptimizer(_Settings):
    """``torch.optim.RMSprop``: alpha 0.99, ε 1e-8 added *outside* the square root."""

    name: Literal["torch_rmsprop"] = "torch_rmsprop"
    alpha: float = Field(default=0.99, ge=0.0, le=1.0)
    eps: float = Field(default=1e-8, gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0)
    centered: bool = False


OPTIMIZER_CLASSES = {c.model_fields["name"].default: c for c in (
    KerasAdamOptimizer, TorchAdamOptimizer, KerasAdadeltaOptimizer, TorchAdadeltaOptimizer, KerasSGDOptimizer,
    TorchSGDOptimizer, KerasRMSpropOptimizer, TorchRMSpropOptimizer)}
#: the optimizer names ``train.optimizer`` takes
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
OptimizerConfig = Annotated[Union[tuple(OPTIMIZER_CLASSES.values())], Field(discriminator="name")]


# -- early stopping and learning-rate schedules ----------------------------------------------------
class EarlyStoppingConfig(_Settings):
    """Keras' ``EarlyStopping`` (Keras 3): stop when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs (see aelab.engine.schedules for the exact rule)."""

    monitor: str = "val_loss"
    min_delta: float = Field(default=0.0, ge=0.0)
    patience: int = Field(default=0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    baseline: Optional[float] = None
    restore_best_weights: bool = False
    start_from_epoch: int = Field(default=0, ge=0)


class StepSchedule(_Settings):
    """``torch.optim.lr_scheduler.StepLR`` per epoch: lr · gamma^⌊epoch / step_size⌋ (epochs from 0)."""

    kind: Literal["step"] = "step"
    step_size: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.1, gt=0.0, le=1.0)


class CosineSchedule(_Settings):
    """Cosine decay per epoch (Keras' ``CosineDecay`` with ``alpha = min_lr / lr``, PyTorch's
    ``CosineAnnealingLR``): min_lr + (lr − min_lr)·(1 + cos(π·min(epoch, t_max)/t_max))/2; t_max
    defaults to the run's epochs."""

    kind: Literal["cosine"] = "cosine"
    t_max: Optional[int] = Field(default=None, ge=1)
    min_lr: float = Field(default=0.0, ge=0.0)


class PlateauSchedule(_Settings):
    """Keras' ``ReduceLROnPlateau``: lr × factor after ``patience`` epochs without an improvement of
    more than ``min_delta`` (absolute), then ``cooldown`` epochs of rest, never below ``min_lr``."""

    kind: Literal["plateau"] = "plateau"
    monitor: str = "val_loss"
    factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    patience: int = Field(default=10, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    min_delta: float = Field(default=1e-4)
    cooldown: int = Field(default=0, ge=0)
    min_lr: float = Field(default=0.0, ge=0.0)


SCHEDULE_CLASSES = {c.model_fields["kind"].default: c for c in (StepSchedule, CosineSchedule, PlateauSchedule)}
LRScheduleConfig = Annotated[Union[StepSchedule, CosineSchedule, PlateauSchedule], Field(discriminator="kind")]

#: TrainConfig's fields that are left out of the config hash at their defaults: added after runs were
#: first hashed, so a config that does not use them keeps the hash it always had
_HASH_IF_SET = ("optimizer", "early_stopping", "lr_schedule")
_ADAM_FIELDS = ("beta1", "beta2", "eps")


class TrainConfig(_Frozen):
    """Optimiser and loop settings (Keras' Adam defaults)."""

    epochs: int = Field(default=20, ge=1, le=100_000)
    batch_size: int = Field(default=64, ge=1)
    shuffle: bool = True
    seed: int = 2022
    #: "bce": Keras' binary cross-entropy (the logits path for a sigmoid output, else clipped);
    #: "torch_bce": PyTorch's F.binary_cross_entropy (probabilities, logs clamped at −100), as
    #: pytorch/examples' VAE; "mse": mean squared error.
    loss: Literal["bce", "torch_bce", "mse"] = "bce"
    #: the learning rate of whichever optimizer (a schedule scales it)
    lr: float = Field(default=1e-3, gt=0.0)
    #: Keras Adam's β1, β2, ε (the default optimizer's; another optimizer has its own in its table)
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    eps: float = Field(default=1e-7, gt=0.0)
    #: the optimizer: a name (``"torch_adam"``) or a table (``{ name = "keras_adadelta", eps = 1e-6 }``)
    optimizer: OptimizerConfig = KerasAdamOptimizer()
    #: Keras' EarlyStopping (``true``: its defaults); none by default
    early_stopping: Optional[EarlyStoppingConfig] = None
    #: a per-epoch learning-rate schedule (step, cosine or Keras' reduce-on-plateau); none by default
    lr_schedule: Optional[LRScheduleConfig] = None

    @field_validator("lr", "beta1", "beta2", "eps", mode="before")
    @classmethod
    def _int_is_float(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"name": v}
        if isinstance(v, dict):
            name = v.get("name", "keras_adam")
            if name not in OPTIMIZER_CLASSES:
                raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
            v = {**v, "name": name}
        return v

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping_flag(cls, v: Any) -> Any:
        if isinstance(v, bool):  # TOML has no null: true = Keras' defaults, false = none
            return {} if v else None
        return v

    @field_validator("lr_schedule", mode="before")
    @classmethod
    def _schedule_kind(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"kind": v}
        if isinstance(v, bool) and not v:
            return None
        if isinstance(v, dict) and v.get("kind") not in SCHEDULE_CLASSES:
            raise ValueError(f"unknown schedule kind {v.get('kind')!r}; allowed: {', '.join(SCHEDULE_CLASSES)}")
        return v

    @model_validator(mode="after")
    def _adam_fields_belong_to_keras_adam(self) -> "TrainConfig":
        if self.optimizer.name != "keras_adam":
            for k in _ADAM_FIELDS:
                if getattr(self, k) != TrainConfig.model_fields[k].default:
                    own = k if k in type(self.optimizer).model_fields else None
                    fix = (f"set train.optimizer.{own} instead" if own else f"{self.optimizer.name} has no {k}")
                    raise ValueError(f"train.{k} is Keras Adam's (the default optimizer) but train.optimizer is "
                                     f"{self.optimizer.name}; {fix}")
        return self

    def hash_fields(self) -> dict[str, Any]:
        """The dict the config hash reads: every field, but the optimizer, early stopping and schedule
        only when set (so configs that do not use them keep the hashes they always had)."""
        d = self.model_dump(mode="json")
        for k in _HASH_IF_SET:
            if getattr(self, k) == TrainConfig.model_fields[k].default:
                d.pop(k)
        return d

    def monitored(self) -> list[tuple[str, str]]:
        """(setting, monitored value) for early stopping and reduce-on-plateau."""
        out = [("early_stopping", self.early_stopping.monitor)] if self.early_stopping else []
        if isinstance(self.lr_schedule, PlateauSchedule):
            out.append(("lr_schedule", self.lr_schedule.monitor))
        return out


class RunConfig(_Frozen):
    """Everything that determines a run's result. Devices and engines are not part of it."""

    name: str = "run"
    model: AnyModelConfig = FAMILIES[DEFAULT_FAMILY].Config()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="before")
    @classmethod
    def _family(cls, data: Any) -> Any:
        # a config file need not name the family ("ae"); configs from before families say "dense"
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            m = dict(data["model"])
            fam = m.get("family", DEFAULT_FAMILY)
            m["family"] = DEFAULT_FAMILY if fam == "dense" else fam
            _make_known(m["family"])  # your own modules' families: known by name, built only with the modules
            if m["family"] not in FAMILIES:
                raise ValueError(f"model.family: unknown family {m['family']!r}; allowed: {', '.join(FAMILIES)}")
            data = {**data, "model": m}
        return data

    @field_validator("model", mode="wrap")
    @classmethod
    def _family_config(cls, v: Any, handler: Any) -> Any:
        # the family's own Config validates the table (its errors keep their field locations)
        if isinstance(v, dict):
            return FAMILIES[v.get("family", DEFAULT_FAMILY)].Config.model_validate(v)
        return handler(v)

    @model_validator(mode="after")
    def _monitors_exist(self) -> RunConfig:
        allowed = self.monitorable()
        for where, m in self.train.monitored():
            if m not in allowed:
                raise ValueError(f"train.{where}.monitor: {m!r} is not a value this run records; allowed: "
                                 f"{', '.join(allowed)}")
        return self

    def monitorable(self) -> list[str]:
        """What early stopping and reduce-on-plateau may monitor: the history's losses and terms."""
        terms = ["reconstruction", *self.model.term_names()]
        return [p + k for k in ("loss", "penalty", *terms) for p in ("val_", "")]

    @model_validator(mode="after")
    def _batch_fits(self) -> RunConfig:
        if self.data.limit is not None and self.train.batch_size > self.data.limit:
            raise ValueError(
                f"train.batch_size {self.train.batch_size} is larger than the data set "
                f"(data.limit {self.data.limit}); lower the batch size or raise the limit"
            )
        return self

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return _validate(cls, d)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(load_toml(path))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready in the spelling of config files: layers as text, data options flat."""
        d = self.model_dump(mode="json")
        d["model"] = _model_dict(self.model)
        d["data"] = self.data.flat()
        return d

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides))

    def hash(self) -> str:
        return config_hash(self)


_UNSET: Any = object()


def config_hash(cfg: RunConfig, fingerprint: str | None = _UNSET) -> str:
    """A stable hash of everything that determines the result (the name is excluded; starting
    weights count by their content, so another file at the same path is another run).

    The data part is hashed in its flat spelling (``DataConfig.hash_fields``), as it always was, with
    a path's content fingerprint; pass ``fingerprint`` (``aelab.data.fingerprint(cfg.data)``) when it
    is known, so a folder of images is not listed again."""
    d = cfg.to_dict()
    d.pop("name", None)
    d["data"] = cfg.data.hash_fields()
    d["train"] = cfg.train.hash_fields()
    content = data_fingerprint(cfg.data) if fingerprint is _UNSET else fingerprint
    if content is not None:  # a folder or table: another content is another data set
        d["data"]["dataset_sha256"] = content
    if d["model"].get("init_weights"):
        d["model"]["init_weights"] = _file_sha256(d["model"]["init_weights"])
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_sha256(path: str) -> str:
    try:
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return f"missing:{path}"
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


_SHA_CACHE: dict = {}


def _format_loc(loc: tuple) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if len(parts) > 1 and parts[0] == "model" and parts[1] in FAMILIES:  # the union's tag, not a key
        del parts[1]
    if len(parts) > 2 and parts[0] == "data" and parts[1] == "source":  # options are spelled data.<option>
        del parts[1]
    if len(parts) > 2 and parts[0] == "train" and (  # the optimizer's or schedule's tag, not a key
            (parts[1] == "optimizer" and parts[2] in OPTIMIZER_CLASSES)
            or (parts[1] == "lr_schedule" and parts[2] in SCHEDULE_CLASSES)):
        del parts[2]
    return ".".join(parts) or "config"


def format_validation_error(err: ValidationError) -> str:
    """One line: the first problem, naming the field and what is allowed."""
    e = err.errors()[0]
    loc = _format_loc(e["loc"])
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif e["type"] == "literal_error":
        msg = f"got {e.get('input')!r}; {msg.lower()}"
    elif e["type"].endswith("_type") or e["type"].endswith("_parsing"):
        msg = f"got {e.get('input')!r} ({type(e.get('input')).__name__}); {msg.lower()}"
    elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
        msg = f"got {e.get('input')!r}; {msg.lower()}"
    if e["type"] == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if msg.startswith(f"{loc}."):  # the message names the key itself (data.channels on MNIST)
        return f"invalid config: {msg}{more}"
    return f"invalid config: {loc}: {msg}{more}"


def _validate(cls: type[BaseModel], d: Any) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"invalid config: expected a table of settings, got {type(d).__name__}")
    try:
        return cls.model_validate(d)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None
    except ConfigError:
        raise


#: how deep tables and lists may nest in a config or study file (aelab's own go 5 deep): deeper is
#: not a config, and past Python's recursion limit the TOML parser itself would fail
MAX_DEPTH = 32


def _depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar 0, ``[1]`` 1, ``{"a": [1]}`` 2), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            d += 1
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((x, d) for x in v)
    return deepest


def load_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The TOML file a user gave (``what``: "config file", "study file"), or one ConfigError line
    naming it: missing, unreadable, not UTF-8, not TOML, or nested deeper than any config."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; give the path of a .toml file") from None
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot read it ({err.strerror}); check the path and its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}); TOML files "
                          "are UTF-8: save it as UTF-8") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{what} {path} is not valid TOML: {err}") from None
    except RecursionError:
        doc = None
    if doc is None or _depth(doc) > MAX_DEPTH:
        raise ConfigError(f"{what} {path}: its tables or lists nest more than {MAX_DEPTH} deep, which no aelab "
                          "setting does; check the file") from None
    return doc


def parse_value(text: str) -> Any:
    """Parse an override's value as TOML (``0.01``, ``true``, ``"x"``, ``[1,2]``); bare words stay strings."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        value = None
    if value is None or _depth(value) > MAX_DEPTH:
        raise ConfigError(f"the value {text[:40]}{'…' if len(text) > 40 else ''} nests more than {MAX_DEPTH} deep, "
                          "which no aelab setting does; check it") from None
    return value


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE (for example model.activity_l1=0.01)")
    return key.strip(), parse_value(value.strip())


def apply_overrides(d: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides (``{"model.activity_l1": 0.01}``) to a config dict.

    An override must name an existing key; its value is validated (type kept) when the result
    is turned back into a config.
    """
    out = json.loads(json.dumps(d))
    family = overrides.get("model.family", (out.get("model") or {}).get("family", DEFAULT_FAMILY))
    defaults = RunConfig().to_dict()
    defaults["model"] = model_defaults(DEFAULT_FAMILY if family == "dense" else family)
    if "model.family" in overrides and (out.get("model") or {}).get("family", DEFAULT_FAMILY) != family:
        # another family: start from its defaults, keeping what every family shares
        kept = {k: v for k, v in (out.get("model") or {}).items() if k in ("input_shape", "init")}
        out["model"] = {**defaults["model"], **kept}
    # any source's options may be set under data (checked against the source's own class when built)
    defaults["data"] = {**{k: d for k, (d, _) in option_fields().items()}, **defaults["data"]}
    # any optimizer's or schedule's settings under train.optimizer / train.lr_schedule (checked against the
    # chosen one's class when built); early stopping's, though it is off by default
    defaults["train"]["optimizer"] = {k: f.default for c in OPTIMIZER_CLASSES.values() for k, f in c.model_fields.items()}
    defaults["train"]["lr_schedule"] = {k: f.default for c in SCHEDULE_CLASSES.values() for k, f in c.model_fields.items()}
    defaults["train"]["early_stopping"] = EarlyStoppingConfig().model_dump()
    train = out.get("train")
    if isinstance(train, dict):  # the short forms (a name, true) as tables, so their keys can be set
        if isinstance(train.get("optimizer"), str):
            train["optimizer"] = {"name": train["optimizer"]}
        if isinstance(train.get("lr_schedule"), str):
            train["lr_schedule"] = {"kind": train["lr_schedule"]}
        if train.get("early_stopping") is True:
            train["early_stopping"] = {}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node, ref = out, defaults
        for i, p in enumerate(parts):
            if not isinstance(ref, dict) or p not in ref:
                raise ConfigError(f"invalid override {dotted!r}: unknown key {'.'.join(parts[: i + 1])!r}")
            if i == len(parts) - 1:
                node[p] = value
            else:
                if not isinstance(node.get(p), dict):  # absent, none or a short form: a table of its own
                    node[p] = {}
                node = node[p]
                ref = ref[p]
    return out
