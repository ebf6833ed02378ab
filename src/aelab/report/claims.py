"""Claims: a question's expectations, each a kind with validated parameters, judged on the saved numbers.

A claim is ``{"text", "kind", "params"}`` in a study's TOML. Each kind is a pydantic model in the
registry :data:`CLAIM_KINDS` (:func:`register_claim_kind` adds one): its fields are the kind's
parameters, checked when the study loads (:func:`validate_claims`, :func:`parse_claim`) so a bad
claim is refused in one line (:class:`ClaimError`) before anything trains; its ``judge`` reads the
numbers it needs out of two run records and returns a :class:`Verdict`.

* :func:`resolve` reads one number out of a run record by a *path*:

  ============================  =====================================================
  ``final.loss``                last epoch of ``history["loss"]`` (any history key works:
                                ``final.val_loss``, ``final.penalty``, ...)
  ``first.loss``                first epoch of a history key
  ``history.<key>[i]``          epoch *i* of a history key, 0-based; negative counts from the end
  ``metrics.<key>``             a top-level metric (``bce``, ``mse``, ``psnr``, ``ssim``, ``diversity``)
  ``metrics.code.<key>``        a code diagnostic (``dead_units``, ``zero_fraction``, ...)
  ``metrics.noisy.<key>``       a noisy-input metric (``ssim``, ``input_psnr``, ...)
  ``metrics.family.<key>``      a family diagnostic (see each family's ``diagnostics``)
  ``metrics.latent.<key>``      what the code holds (``probe_accuracy``, ``knn_accuracy``, ``ari``,
                                ``nmi``, ``active_dims``, ``chance``; see :mod:`aelab.latent`)
  ``final.terms.<name>``        a named loss term's last epoch (``final.val_terms.<name>``, ...)
  ============================  =====================================================

* The kinds (the variant run is the one judged; "ratio" is variant / baseline):

  =========================  ===========================================  ==========================
  kind                       params                                       confirmed when
  =========================  ===========================================  ==========================
  ``value_near``             metric, value, rel_tol                       ``|v - value| <= rel_tol·|value|``
  ``ratio_at_least``         metric, min                                  ``ratio >= min``
  ``ratio_between``          metric, min, max                             ``min <= ratio <= max``
  ``plateau``                history, after, max_rel_drop                 the curve fell from epoch 1 to
                                                                          epoch ``after`` (1-based), then
                                                                          fell by less than
                                                                          ``max_rel_drop`` (relative) from
                                                                          ``after`` to the last epoch
  ``less_than_baseline``     metric                                       ``v < baseline``
  ``greater_than_baseline``  metric                                       ``v > baseline``
  ``below``                  metric, value                                ``v < value``
  ``above``                  metric, value                                ``v > value``
  =========================  ===========================================  ==========================

  Optional in every claim: ``"of": "baseline"`` judges the baseline run instead of the variant
  (only for the one-run kinds ``value_near``, ``below``, ``above``, ``plateau``; e.g. the lab
  model's own "≈0.09" loss). A non-finite number never confirms a claim. A claim about a measure
  the data does not have (SSIM of a table) is :data:`NOT_JUDGED`, not an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError

from ..errors import ConfigError
from ..numfmt import finite as _finite
from ..numfmt import fmt_num, fmt_pct, fmt_ratio, ratio

__all__ = [
    "ABSOLUTE_KINDS",
    "CLAIM_KINDS",
    "CONFIRMED",
    "NOT_CONFIRMED",
    "NOT_JUDGED",
    "Claim",
    "ClaimError",
    "ClaimKind",
    "Verdict",
    "check_path",
    "data_bound",
    "evaluate_claim",
    "history_curve",
    "not_judged_elsewhere",
    "parse_claim",
    "register_claim_kind",
    "resolve",
    "validate_claims",
    "value_at",
]

CONFIRMED = "confirmed"
NOT_CONFIRMED = "not confirmed"
#: a claim about a measure the data does not have (SSIM of 8×8 images, PSNR of a table): said, not crashed on
NOT_JUDGED = "cannot be judged on this data"
#: metrics that exist only for some data shapes (see aelab.metrics._quality)
SHAPE_METRICS = ("ssim", "psnr", "bce", "input_ssim", "input_psnr")


class ClaimError(ConfigError, ValueError):
    """A malformed claim (unknown kind, missing, unknown or ill-typed parameter, unknown path): one line.

    A :class:`~aelab.errors.ConfigError` for the CLI and the study loader, and a ValueError for
    code that treats any bad value alike."""


# --------------------------------------------------------------------------------------------
# reading numbers out of a run record
# --------------------------------------------------------------------------------------------
_HISTORY_INDEX = re.compile(r"^history\.([A-Za-z_][A-Za-z0-9_]*)\[(-?\d+)\]$")
_FIRST_FINAL = re.compile(r"^(first|final)\.((?:(?:terms|val_terms)\.)?[A-Za-z_][A-Za-z0-9_]*)$")
_METRIC = re.compile(r"^metrics\.(?:(code|noisy|family|latent)\.)?([A-Za-z_][A-Za-z0-9_]*)$")


# --------------------------------------------------------------------------------------------
# reading numbers out of a run record
# --------------------------------------------------------------------------------------------
def _run_name(run: Mapping[str, Any]) -> str:
    return str(run.get("name", "?")) if isinstance(run, Mapping) else "?"


def _as_float(value: Any, run: Mapping[str, Any], path: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"path {path!r} of run {_run_name(run)!r} is not a number (got {type(value).__name__})")
    return float(value)


def _history(run: Mapping[str, Any], key: str, path: str) -> list:
    history = run.get("history")
    if not isinstance(history, Mapping):
        raise ValueError(f"run {_run_name(run)!r} has no history (needed by {path!r})")
    if "." in key:  # a named loss term: terms.<name> / val_terms.<name>
        block, key = key.split(".", 1)
        history = history.get(block)
        if not isinstance(history, Mapping):
            raise ValueError(f"run {_run_name(run)!r} has no history {block!r} (path {path!r})")
    if key not in history:
        known = ", ".join(sorted(history)) or "none"
        raise ValueError(f"run {_run_name(run)!r} has no history key {key!r} (path {path!r}; known: {known})")
    values = history[key]
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ValueError(f"history key {key!r} of run {_run_name(run)!r} is not a list")
    if len(values) == 0:
        raise ValueError(f"history key {key!r} of run {_run_name(run)!r} is empty (path {path!r})")
    return list(values)


def history_curve(run: Mapping[str, Any], key: str) -> list[float]:
    """The history list ``key`` of a run as floats (None -> NaN); ValueError when absent."""
    return [_as_float(v, run, f"history.{key}") for v in _history(run, key, f"history.{key}")]


def resolve(run: Mapping[str, Any], path: str) -> float:
    """Read the number at ``path`` from a run record (see the module docstring for the paths).

    Raises ValueError for a path that is not one of the documented forms or that the run lacks.
    A JSON ``null`` reads as NaN.
    """
    if not isinstance(path, str):
        raise ValueError(f"a metric path must be a string, got {path!r}")
    m = _FIRST_FINAL.match(path)
    if m:
        which, key = m.groups()
        values = _history(run, key, path)
        return _as_float(values[0] if which == "first" else values[-1], run, path)
    m = _HISTORY_INDEX.match(path)
    if m:
        key, idx = m.group(1), int(m.group(2))
        values = _history(run, key, path)
        if not -len(values) <= idx < len(values):
            raise ValueError(
                f"path {path!r}: run {_run_name(run)!r} has {len(values)} epochs of {key!r} "
                f"(index is 0-based)"
            )
        return _as_float(values[idx], run, path)
    m = _METRIC.match(path)
    if m:
        block, key = m.groups()
        metrics = run.get("metrics")
        if not isinstance(metrics, Mapping):
            raise ValueError(f"run {_run_name(run)!r} has no metrics (needed by {path!r})")
        if block is not None:
            metrics = metrics.get(block)
            if not isinstance(metrics, Mapping):
                raise ValueError(f"run {_run_name(run)!r} has no metrics.{block} block (path {path!r})")
        if key not in metrics:
            raise ValueError(f"run {_run_name(run)!r} has no metric {path!r}")
        return _as_float(metrics[key], run, path)
    raise ValueError(_unknown_path(path))




def check_path(path: Any) -> str:
    """``path`` when it has one of :func:`resolve`'s forms (whatever a run holds), else ValueError."""
    if not isinstance(path, str):
        raise ValueError(f"a metric path must be a string, got {path!r}")
    if _FIRST_FINAL.match(path) or _HISTORY_INDEX.match(path) or _METRIC.match(path):
        return path
    raise ValueError(_unknown_path(path))


def _unknown_path(path: str) -> str:
    return (f"unknown metric path {path!r}: use final.<history key>, first.<history key>, "
            f"history.<key>[i], final.terms.<name>, metrics.<key>, metrics.code.<key>, metrics.noisy.<key>, "
            f"metrics.family.<key> or metrics.latent.<key>")


def value_at(run: Mapping[str, Any], path: str) -> float | None:
    """:func:`resolve` that returns None when the run lacks the path."""
    try:
        return resolve(run, path)
    except ValueError:
        return None


_get = value_at


# --------------------------------------------------------------------------------------------
# the claim kinds
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """A claim judged: ``status`` (:data:`CONFIRMED`, :data:`NOT_CONFIRMED`, :data:`NOT_JUDGED`),
    ``measured`` (the numbers, formatted), ``detail`` (one sentence)."""

    status: str
    measured: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _verdict(ok: bool, measured: str, detail: str) -> Verdict:
    return Verdict(CONFIRMED if ok else NOT_CONFIRMED, measured, detail)


Number = StrictInt | StrictFloat


class ClaimKind(BaseModel):
    """One kind of claim: its fields are the kind's parameters; ``judge`` decides it.

    A subclass sets ``kind`` (the name a study's TOML writes) and ``one_run`` (True when it judges
    one run on its own, so ``of = "baseline"`` may point it at the baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str] = ""
    one_run: ClassVar[bool] = False
    #: the fields that are metric paths (checked with :func:`check_path` on load)
    paths: ClassVar[tuple[str, ...]] = ("metric",)

    of: Literal["variant", "baseline"] = "variant"

    def check(self) -> None:
        """Further checks across parameters; raise ValueError with the reason."""

    def judge(self, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
        """The verdict on ``run`` (the variant, or the baseline when ``of = "baseline"``) beside ``baseline``."""
        raise NotImplementedError

    @classmethod
    def required(cls) -> tuple[str, ...]:
        return tuple(n for n, f in cls.model_fields.items() if f.is_required())


#: claim kind name -> its parameter model
CLAIM_KINDS: dict[str, type[ClaimKind]] = {}


def register_claim_kind(cls: type[ClaimKind]) -> type[ClaimKind]:
    """Add a claim kind to :data:`CLAIM_KINDS` (a decorator; test code can add one)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind name")
    CLAIM_KINDS[cls.kind] = cls
    return cls


def _who(of: str) -> str:
    return f"The {of}'s"


def _measured(metric: str, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict | float:
    missing = _not_measured(metric, run, baseline)
    return missing if missing is not None else resolve(run, metric)


@register_claim_kind
class ValueNear(ClaimKind):
    kind: ClassVar[str] = "value_near"
    one_run: ClassVar[bool] = True
    metric: StrictStr
    value: Number
    rel_tol: Number

    def check(self) -> None:
        if self.rel_tol < 0:
            raise ValueError(f"claim 'value_near': rel_tol must be >= 0, got {self.rel_tol}")

    def judge(self, run, baseline):
        v = _measured(self.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        target, tol = float(self.value), float(self.rel_tol)
        rel = abs(v - target) / abs(target) if target != 0 else (0.0 if v == 0 else math.inf)
        ok = _finite(v) and abs(v - target) <= tol * abs(target)
        measured = f"{self.metric} = {fmt_num(v)} (target {fmt_num(target)}, off by {fmt_num(100 * rel, 3)}%)"
        detail = (f"{_who(self.of)} {self.metric} of {fmt_num(v)} is {'within' if ok else 'not within'} "
                  f"{fmt_num(100 * tol, 3)}% of {fmt_num(target)}.")
        return _verdict(ok, measured, detail)


class _Threshold(ClaimKind):
    one_run: ClassVar[bool] = True
    metric: StrictStr
    value: Number

    def judge(self, run, baseline):
        v = _measured(self.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        target = float(self.value)
        below = self.kind == "below"
        ok = _finite(v) and (v < target if below else v > target)
        measured = f"{self.metric} = {fmt_num(v)} (threshold {fmt_num(target)})"
        detail = f"{_who(self.of)} {self.metric} of {fmt_num(v)} is {'' if ok else 'not '}{self.kind} {fmt_num(target)}."
        return _verdict(ok, measured, detail)


@register_claim_kind
class Below(_Threshold):
    kind: ClassVar[str] = "below"


@register_claim_kind
class Above(_Threshold):
    kind: ClassVar[str] = "above"


@register_claim_kind
class Plateau(ClaimKind):
    kind: ClassVar[str] = "plateau"
    one_run: ClassVar[bool] = True
    paths: ClassVar[tuple[str, ...]] = ()
    history: StrictStr
    after: StrictInt
    max_rel_drop: Number

    def check(self) -> None:
        if self.after < 2:
            raise ValueError(f"claim 'plateau': param 'after' must be an epoch number >= 2, got {self.after!r}")
        if self.max_rel_drop < 0:
            raise ValueError(f"claim 'plateau': max_rel_drop must be >= 0, got {self.max_rel_drop}")

    def judge(self, run, baseline):
        return _plateau(run, self.history, self.after, float(self.max_rel_drop), self.of)


class _VersusBaseline(ClaimKind):
    metric: StrictStr

    def judge(self, run, baseline):
        v = _measured(self.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        b = resolve(baseline, self.metric)
        less = self.kind == "less_than_baseline"
        ok = _finite(v, b) and (v < b if less else v > b)
        word = "lower" if less else "higher"
        m = self.metric
        return _verdict(ok, f"{m}: variant {fmt_num(v)} vs baseline {fmt_num(b)}",
                        f"The variant's {m} ({fmt_num(v)}) is {'' if ok else 'not '}{word} than the baseline's ({fmt_num(b)}).")


@register_claim_kind
class LessThanBaseline(_VersusBaseline):
    kind: ClassVar[str] = "less_than_baseline"


@register_claim_kind
class GreaterThanBaseline(_VersusBaseline):
    kind: ClassVar[str] = "greater_than_baseline"


class _Ratio(ClaimKind):
    metric: StrictStr

    def _ratio(self, run, baseline) -> Verdict | tuple[float, str, str]:
        v = _measured(self.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        b = resolve(baseline, self.metric)
        r = ratio(v, b)
        shown = fmt_ratio(r) if _finite(r) else "undefined (the baseline is 0)" if b == 0 else fmt_num(r)
        return r, shown, f"{self.metric}: variant {fmt_num(v)} / baseline {fmt_num(b)} = {shown}"


@register_claim_kind
class RatioAtLeast(_Ratio):
    kind: ClassVar[str] = "ratio_at_least"
    min: Number

    def judge(self, run, baseline):
        got = self._ratio(run, baseline)
        if isinstance(got, Verdict):
            return got
        r, shown, measured = got
        lo = float(self.min)
        ok = not math.isnan(r) and r >= lo
        return _verdict(ok, measured, f"The variant/baseline ratio of {self.metric} is {shown}, "
                                      f"{'at least' if ok else 'below'} {fmt_ratio(lo)}.")


@register_claim_kind
class RatioBetween(_Ratio):
    kind: ClassVar[str] = "ratio_between"
    min: Number
    max: Number

    def check(self) -> None:
        if self.min > self.max:
            raise ValueError(f"claim 'ratio_between': min {self.min} is above max {self.max}")

    def judge(self, run, baseline):
        got = self._ratio(run, baseline)
        if isinstance(got, Verdict):
            return got
        r, shown, measured = got
        lo, hi = float(self.min), float(self.max)
        ok = not math.isnan(r) and lo <= r <= hi
        where = "inside" if ok else ("below" if not math.isnan(r) and r < lo else "outside")
        return _verdict(ok, measured, f"The variant/baseline ratio of {self.metric} is {shown}, {where} the range "
                                      f"{fmt_ratio(lo)}–{fmt_ratio(hi)}.")


#: the kinds that judge one run on its own (``of = "baseline"`` allowed)
ABSOLUTE_KINDS = tuple(k for k, c in CLAIM_KINDS.items() if c.one_run)


# --------------------------------------------------------------------------------------------
# parsing and judging
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A parsed claim: the sentence a study writes and its validated parameters (``params.kind``)."""

    text: str
    params: ClaimKind

    @property
    def kind(self) -> str:
        return self.params.kind

    def judge(self, baseline: Mapping[str, Any], variant: Mapping[str, Any]) -> Verdict:
        """The verdict on the two runs' numbers; ValueError for a path the runs do not have."""
        run = baseline if self.params.of == "baseline" else variant
        return self.params.judge(run, baseline)

    def as_dict(self) -> dict[str, Any]:
        """The claim as a study writes it (``of`` only when not the default)."""
        return {"text": self.text, "kind": self.kind, "params": self.params.model_dump(exclude_defaults=True)}


def _pydantic_reason(kind: str, cls: type[ClaimKind], exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err.get("loc") else ""
    got = err.get("input")
    if name == "of":
        return f"claim {kind!r}: 'of' must be 'variant' or 'baseline', got {got!r}"
    if name == "after":
        return f"claim {kind!r}: param 'after' must be an epoch number >= 2, got {got!r}"
    ann = cls.model_fields[name].annotation if name in cls.model_fields else None
    if ann is str:
        return f"claim {kind!r}: param {name!r} must be a string, got {got!r}"
    if name:
        return f"claim {kind!r}: param {name!r} must be a number, got {got!r}"
    return f"claim {kind!r}: {err.get('msg', 'invalid')}"


def _parse(claim: Any) -> Claim:
    if isinstance(claim, Claim):
        return claim
    if not isinstance(claim, Mapping):
        raise ValueError(f"a claim must be a mapping with 'text', 'kind' and 'params', got {claim!r}")
    kind = claim.get("kind")
    cls = CLAIM_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown claim kind {kind!r}; known kinds: {', '.join(CLAIM_KINDS)}")
    params = claim.get("params", {})
    if not isinstance(params, Mapping):
        raise ValueError(f"claim {kind!r}: 'params' must be a mapping, got {params!r}")
    wanted = cls.required()
    missing = [p for p in wanted if p not in params]
    unknown = [p for p in params if p not in cls.model_fields]
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        if unknown:
            parts.append(f"unknown {', '.join(map(str, unknown))}")
        raise ValueError(f"claim {kind!r} takes params {', '.join(wanted)}: {'; '.join(parts)}")
    try:
        p = cls(**params)
    except ValidationError as exc:
        raise ValueError(_pydantic_reason(kind, cls, exc)) from None
    if p.of == "baseline" and not cls.one_run:
        raise ValueError(f"claim {kind!r}: 'of = baseline' only works with "
                         f"{', '.join(k for k, c in CLAIM_KINDS.items() if c.one_run)}")
    p.check()
    for name in cls.paths:
        check_path(getattr(p, name))
    text = claim.get("text", "")
    return Claim(text=str(text) if text is not None else "", params=p)


def parse_claim(claim: Any, where: str = "") -> Claim:
    """One claim as a study writes it (``{"text", "kind", "params"}``) checked and typed.

    Raises :class:`ClaimError` (one line, prefixed with ``where`` when given) for an unknown kind,
    a missing, unknown or ill-typed parameter, or a metric path of no known form."""
    try:
        return _parse(claim)
    except ClaimError:
        raise
    except ValueError as exc:
        text = claim.get("text", "") if isinstance(claim, Mapping) else ""
        prefix = f"{where}: bad claim {text!r}: " if where else ""
        raise ClaimError(prefix + str(exc)) from None


def validate_claims(claims: Any, where: str = "") -> tuple[Claim, ...]:
    """Every claim of a question (a list of ``{"text", "kind", "params"}``), checked and typed.

    Call when a study loads, so a bad claim is refused before anything trains. ``where`` names the
    question in the error (``"question q1"``). Raises :class:`ClaimError` (a ConfigError) with one line."""
    if claims is None:
        return ()
    if isinstance(claims, (str, bytes)) or not isinstance(claims, Sequence):
        raise ClaimError(f"{where + ': ' if where else ''}claims must be a list of tables with text, kind and params, "
                         f"got {claims!r}")
    return tuple(parse_claim(c, where) for c in claims)


def evaluate_claim(claim: Any, baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> dict[str, str]:
    """Judge ``claim`` (a mapping as a study writes it, or a :class:`Claim`) on two run records.

    Returns ``{"status": "confirmed" | "not confirmed" | NOT_JUDGED, "measured": <the numbers,
    formatted>, "detail": <one sentence>}``. Raises :class:`ClaimError` (a ValueError) for a malformed
    claim, ValueError for a path the runs lack."""
    return parse_claim(claim).judge(baseline_run, variant_run).as_dict()


# --------------------------------------------------------------------------------------------
# claims on other data
# --------------------------------------------------------------------------------------------
#: numbers whose scale is the data's own (a loss per pixel on 8×8 digits or on a table is not one on
#: 28×28 images): a claim quoting such a number for one data set cannot be judged on another
_DATA_SCALED = re.compile(r"^(final\.|first\.|history\.|metrics\.(noisy\.)?(bce|mse|psnr)$)")


def data_bound(claim: Mapping[str, Any]) -> bool:
    """Whether ``claim`` compares a number with a fixed value on a scale the data sets (a target or
    threshold on a loss, BCE, MSE or PSNR): such a value is the one measured on the data the claim
    was written for, and means nothing on other data. Ratios between two runs, SSIM, diversity and
    the shape of a curve carry over."""
    claim = claim.as_dict() if isinstance(claim, Claim) else claim
    kind = claim.get("kind")
    params = claim.get("params") if isinstance(claim.get("params"), Mapping) else {}
    if kind not in ("value_near", "below", "above"):
        return False
    return bool(_DATA_SCALED.match(str(params.get("metric", ""))))


def not_judged_elsewhere(claim: Mapping[str, Any], verdict: Mapping[str, str], written_for: Sequence[str],
                         data: Sequence[str]) -> dict[str, str]:
    """The verdict of a :func:`data_bound` claim on other data than it was written for: not judged,
    with what was measured and why."""
    claim = claim.as_dict() if isinstance(claim, Claim) else claim
    params = claim.get("params") if isinstance(claim.get("params"), Mapping) else {}
    metric, value = params.get("metric", "?"), params.get("value")
    there, here = " and ".join(written_for) or "the study's data", " and ".join(data) or "this data"
    return {"status": NOT_JUDGED, "measured": str(verdict.get("measured", "")),
            "detail": (f"The claim's {fmt_num(value) if isinstance(value, (int, float)) else 'number'} is "
                       f"a {metric} measured on {there}; on {here} that number has another scale, so this claim "
                       "cannot be judged on it.")}


def _not_measured(metric: str, *runs: Mapping[str, Any]) -> Verdict | None:
    """A NOT_JUDGED verdict when ``metric`` is one the runs' data does not have (SSIM of images
    smaller than its window, PSNR of a table), None otherwise (a typo in a path still raises)."""
    if metric.rsplit(".", 1)[-1] not in SHAPE_METRICS or not metric.startswith("metrics."):
        return None
    for run in runs:
        if _get(run, metric) is None and isinstance(run.get("metrics"), Mapping) and run["metrics"]:
            shape = (((run.get("config") or {}).get("model") or {}).get("input_shape")) or []
            data = ((run.get("config") or {}).get("data") or {}).get("dataset", "this data")
            what = ("a table of vectors" if len(shape) == 1 else
                    f"{shape[1]}×{shape[2]} images, smaller than SSIM's 11×11 window" if len(shape) == 3 else "this data")
            return Verdict(NOT_JUDGED, f"{metric}: not measured on {data} ({what})",
                           f"{metric} is not measured on {data} ({what}), so this claim cannot be judged on it.")
    return None


def _plateau(run: Mapping[str, Any], key: str, after: int, max_rel_drop: float, of: str = "variant") -> Verdict:
    curve = history_curve(run, key)
    key_label = key if of == "variant" else f"baseline's {key}"
    n = len(curve)
    if after > n:
        return _verdict(
            False,
            f"{key}: {n} epochs recorded",
            f"The {of} run has only {n} epochs of {key}, fewer than the {after} the claim needs.",
        )
    first, at, last = curve[0], curve[after - 1], curve[-1]
    if not _finite(first, at, last):
        return _verdict(
            False,
            f"{key}: epoch 1 {fmt_num(first)}, epoch {after} {fmt_num(at)}, epoch {n} {fmt_num(last)}",
            f"The {key_label} curve has non-finite values, so it cannot be judged.",
        )
    early_drop = (first - at) / abs(first) if first != 0 else math.nan
    late_drop = (at - last) / abs(at) if at != 0 else math.nan
    fell = at < first
    flat = math.isfinite(late_drop) and late_drop < max_rel_drop
    measured = (
        f"{key}: epoch 1 {fmt_num(first)} → epoch {after} {fmt_num(at)} ({fmt_pct(-early_drop)}) "
        f"→ epoch {n} {fmt_num(last)} ({fmt_pct(-late_drop)})"
    )
    if fell and flat:
        detail = (
            f"The {key_label} fell by {fmt_num(100 * early_drop, 3)}% over the first {after} epochs and then by only "
            f"{fmt_num(100 * late_drop, 3)}% (limit {fmt_num(100 * max_rel_drop, 3)}%) to epoch {n}."
        )
    elif not fell:
        detail = f"The {key_label} did not fall between epoch 1 and epoch {after} ({fmt_num(first)} → {fmt_num(at)})."
    else:
        detail = (
            f"The {key_label} kept falling after epoch {after}: by {fmt_num(100 * late_drop, 3)}% to epoch {n}, "
            f"more than the {fmt_num(100 * max_rel_drop, 3)}% limit."
        )
    return _verdict(fell and flat, measured, detail)


