"""What a claim says: the claim kinds, their parameters, and the paths that name a number.

A question of a study lists claims ``{"text", "kind", "params"}`` (see ``docs/studies.md``). This
module is the registry of claim *kinds*: each kind is a pydantic model of its parameters, so a
claim is validated when its study loads, before anything trains (:func:`parse_claim`); a typo in a
kind, a missing or wrongly typed parameter and a metric path outside the grammar are one line.
How a claim is *judged* against the numbers of two runs is the report's business
(:mod:`aelab.report.claims`, which looks its kinds up here); this module reads no run.

The kinds ("ratio" is variant / baseline; the variant run is the one judged):

=========================  ===========================================  ==========================
kind                       params                                       confirmed when
=========================  ===========================================  ==========================
``value_near``             metric, value, rel_tol                       ``|v - value| <= rel_tol·|value|``
``ratio_at_least``         metric, min                                  ``ratio >= min``
``ratio_between``          metric, min, max                             ``min <= ratio <= max``
``plateau``                history, after, max_rel_drop                 the curve fell from epoch 1 to
                                                                        epoch ``after`` (1-based), then
                                                                        fell by less than
                                                                        ``max_rel_drop`` (relative)
``less_than_baseline``     metric                                       ``v < baseline``
``greater_than_baseline``  metric                                       ``v > baseline``
``below``                  metric, value                                ``v < value``
``above``                  metric, value                                ``v > value``
=========================  ===========================================  ==========================

Optional in every claim: ``of = "baseline"`` judges the baseline run instead of the variant (only
for the one-run kinds, :data:`ABSOLUTE_KINDS`).

A metric path (:func:`parse_metric_path`) names one number of a run record:

============================  =====================================================
``final.<key>``               last epoch of a history key (``final.loss``, ``final.val_loss``)
``first.<key>``               first epoch of a history key
``final.terms.<name>``        a named loss term's last epoch (``final.val_terms.kl``, ...)
``history.<key>[i]``          epoch *i* of a history key, 0-based; negative counts from the end
``metrics.<key>``             a top-level metric (``bce``, ``mse``, ``psnr``, ``ssim``, ``diversity``)
``metrics.<block>.<key>``     a metric of the ``code``, ``noisy``, ``family``, ``latent`` or ``samples`` block
============================  =====================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ConfigError

__all__ = [
    "ABSOLUTE_KINDS", "CLAIM_KINDS", "METRIC_BLOCKS", "Above", "Below", "Claim", "ClaimError", "ClaimParams",
    "GreaterThanBaseline", "LessThanBaseline", "MetricPath", "Plateau", "RatioAtLeast", "RatioBetween",
    "ValueNear", "parse_claim", "parse_metric_path", "register_claim_kind",
]


class ClaimError(ConfigError, ValueError):
    """A malformed claim or metric path, in one line. A :class:`ConfigError` for the CLI (exit 2, no
    traceback) and a :class:`ValueError` for code that judges claims from a results.json."""


# -- metric paths ------------------------------------------------------------------------------------
#: the blocks of ``metrics.json`` a path may name (``metrics.<block>.<key>``)
METRIC_BLOCKS = ("code", "noisy", "family", "latent", "samples")

_HISTORY_KEY = r"(?:(?:terms|val_terms)\.)?[A-Za-z_][A-Za-z0-9_]*"
_HISTORY_INDEX = re.compile(r"^history\.([A-Za-z_][A-Za-z0-9_]*)\[(-?\d+)\]$")
_FIRST_FINAL = re.compile(rf"^(first|final)\.({_HISTORY_KEY})$")
_METRIC = re.compile(rf"^metrics\.(?:({'|'.join(METRIC_BLOCKS)})\.)?([A-Za-z_][A-Za-z0-9_]*)$")
_HISTORY_ONLY = re.compile(rf"^{_HISTORY_KEY}$")

UNKNOWN_PATH = ("use final.<history key>, first.<history key>, history.<key>[i], final.terms.<name>, "
                "metrics.<key>, metrics.code.<key>, metrics.noisy.<key>, metrics.family.<key> or "
                "metrics.latent.<key>")


class MetricPath(NamedTuple):
    """A parsed metric path. ``source``: "final", "first" or "history" (a history key, ``key`` may be
    ``terms.<name>``/``val_terms.<name>``; ``index`` the epoch for "history") or "metrics" (``block``
    one of :data:`METRIC_BLOCKS` or None for a top-level metric)."""

    source: Literal["final", "first", "history", "metrics"]
    key: str
    block: str | None = None
    index: int | None = None


def parse_metric_path(path: Any) -> MetricPath:
    """The parts of a metric path (see the module docstring); :class:`ClaimError` for any other text."""
    if not isinstance(path, str):
        raise ClaimError(f"a metric path must be a string, got {path!r}")
    m = _FIRST_FINAL.match(path)
    if m:
        return MetricPath(m.group(1), m.group(2))  # type: ignore[arg-type]
    m = _HISTORY_INDEX.match(path)
    if m:
        return MetricPath("history", m.group(1), index=int(m.group(2)))
    m = _METRIC.match(path)
    if m:
        return MetricPath("metrics", m.group(2), block=m.group(1))
    raise ClaimError(f"unknown metric path {path!r}: {UNKNOWN_PATH}")


# -- the kinds ---------------------------------------------------------------------------------------
class ClaimParams(BaseModel):
    """The parameters of one claim kind; a subclass per kind, registered in :data:`CLAIM_KINDS`.

    Numbers are strict (a string or a boolean is refused, an integer is a number); ``of`` says which
    run a one-run kind judges."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    #: True for the kinds that judge one run, so that ``of = "baseline"`` makes sense
    one_run: ClassVar[bool] = False
    of: Literal["variant", "baseline"] = "variant"

    @field_validator("metric", check_fields=False)
    @classmethod
    def _metric_path(cls, v: str) -> str:
        parse_metric_path(v)
        return v


class ValueNear(ClaimParams):
    one_run: ClassVar[bool] = True
    metric: str
    value: float
    rel_tol: float

    @model_validator(mode="after")
    def _tolerance(self) -> ValueNear:
        if self.rel_tol < 0:
            raise ValueError(f"rel_tol must be >= 0, got {self.rel_tol}")
        return self


class RatioAtLeast(ClaimParams):
    metric: str
    min: float


class RatioBetween(ClaimParams):
    metric: str
    min: float
    max: float

    @model_validator(mode="after")
    def _order(self) -> RatioBetween:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Plateau(ClaimParams):
    one_run: ClassVar[bool] = True
    #: a history key (``loss``, ``val_loss``, ``terms.<name>``)
    history: str
    #: the 1-based epoch after which the curve should be flat
    after: int
    max_rel_drop: float

    @field_validator("history")
    @classmethod
    def _history_key(cls, v: str) -> str:
        if not _HISTORY_ONLY.match(v):
            raise ValueError(f"must be a history key such as loss, val_loss or terms.<name>, got {v!r}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> Plateau:
        if self.after < 2:
            raise ValueError(f"param 'after' must be an epoch number >= 2, got {self.after!r}")
        if self.max_rel_drop < 0:
            raise ValueError(f"max_rel_drop must be >= 0, got {self.max_rel_drop}")
        return self


class LessThanBaseline(ClaimParams):
    metric: str


class GreaterThanBaseline(ClaimParams):
    metric: str


class Below(ClaimParams):
    one_run: ClassVar[bool] = True
    metric: str
    value: float


class Above(ClaimParams):
    one_run: ClassVar[bool] = True
    metric: str
    value: float


#: claim kind -> the model of its parameters (insertion order is the order messages list them in)
CLAIM_KINDS: dict[str, type[ClaimParams]] = {
    "value_near": ValueNear,
    "ratio_at_least": RatioAtLeast,
    "ratio_between": RatioBetween,
    "plateau": Plateau,
    "less_than_baseline": LessThanBaseline,
    "greater_than_baseline": GreaterThanBaseline,
    "below": Below,
    "above": Above,
}

#: the kinds that judge one run (where ``of = "baseline"`` is allowed)
ABSOLUTE_KINDS: tuple[str, ...] = tuple(k for k, m in CLAIM_KINDS.items() if m.one_run)


def register_claim_kind(kind: str, params: type[ClaimParams]) -> None:
    """Add a claim kind (test code, a plug-in); the report needs a judge for it too."""
    global ABSOLUTE_KINDS
    if not (isinstance(params, type) and issubclass(params, ClaimParams)):
        raise TypeError(f"claim kind {kind!r}: params must be a ClaimParams subclass, got {params!r}")
    CLAIM_KINDS[kind] = params
    ABSOLUTE_KINDS = tuple(k for k, m in CLAIM_KINDS.items() if m.one_run)


@dataclass(frozen=True)
class Claim:
    """One validated claim: its sentence, its kind and the kind's parameters.

    ``raw`` keeps the parameters as written (results.json stores :meth:`to_dict`, the claim as the
    study gave it)."""

    text: str
    kind: str
    params: ClaimParams
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "params": dict(self.raw)}


def _required(model: type[ClaimParams]) -> list[str]:
    return [n for n, f in model.model_fields.items() if f.is_required()]


def _type_words(model: type[ClaimParams], name: str) -> str:
    ann = model.model_fields[name].annotation
    return {float: "a number", int: "an integer", str: "a string"}.get(ann, "of another type")  # type: ignore[call-overload]


def parse_claim(raw: Any) -> Claim:
    """A claim ``{"text", "kind", "params"}`` (a mapping, as TOML or results.json hold it) validated
    against its kind; a :class:`Claim` is returned as it is. :class:`ClaimError`, one line, names the
    first problem: an unknown kind, a missing, unknown or wrongly typed parameter, a bad metric path."""
    if isinstance(raw, Claim):
        return raw
    if not isinstance(raw, Mapping):
        raise ClaimError(f"a claim must be a mapping with 'text', 'kind' and 'params', got {raw!r}")
    bad = sorted(set(raw) - {"text", "kind", "params"})
    if bad:
        raise ClaimError(f"a claim has 'text', 'kind' and 'params'; unknown key {bad[0]!r}")
    kind = raw.get("kind")
    model = CLAIM_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ClaimError(f"unknown claim kind {kind!r}; known kinds: {', '.join(CLAIM_KINDS)}")
    text = raw.get("text", "")
    if not isinstance(text, str):
        raise ClaimError(f"claim {kind!r}: 'text' must be a string, got {text!r}")
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise ClaimError(f"claim {kind!r}: 'params' must be a mapping, got {params!r}")
    wanted = _required(model)
    missing = [p for p in wanted if p not in params]
    unknown = [str(p) for p in params if p not in model.model_fields]
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ClaimError(f"claim {kind!r} takes params {', '.join(wanted)}: {'; '.join(parts)}")
    if params.get("of", "variant") not in ("variant", "baseline"):
        raise ClaimError(f"claim {kind!r}: 'of' must be 'variant' or 'baseline', got {params['of']!r}")
    if params.get("of") == "baseline" and not model.one_run:
        raise ClaimError(f"claim {kind!r}: 'of = baseline' only works with {', '.join(ABSOLUTE_KINDS)}")
    try:
        parsed = model.model_validate(dict(params))
    except ValidationError as err:
        raise ClaimError(_one_line(kind, model, err)) from None
    return Claim(text=text, kind=kind, params=parsed, raw=dict(params))


def _one_line(kind: str, model: type[ClaimParams], err: ValidationError) -> str:
    e = err.errors()[0]
    name = str(e["loc"][0]) if e["loc"] else ""
    if e["type"] == "value_error":
        msg = str(e["msg"]).removeprefix("Value error, ")
        if msg.startswith(("unknown metric path", "param ")):
            return f"claim {kind!r}: {msg}"
        return f"claim {kind!r}: {msg}" if not name else f"claim {kind!r}: param {name!r}: {msg}"
    if name in model.model_fields:
        return f"claim {kind!r}: param {name!r} must be {_type_words(model, name)}, got {e.get('input')!r}"
    return f"claim {kind!r}: {e['msg']}"
