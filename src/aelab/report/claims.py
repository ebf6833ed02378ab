"""Judging claims: a question's expectations decided on the saved numbers of its two runs.

A claim is ``{"text", "kind", "params"}`` in a study's TOML. Its kind and parameters are defined
and validated in the study layer (:mod:`aelab.study.claims`: a pydantic model per kind, checked
when the study loads, before anything trains); this module holds each kind's *judge*
(:data:`JUDGES`, :func:`register_judge`), which reads the numbers it needs out of two run records
and returns a :class:`Verdict`.

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

* The kinds, their parameters and when each is confirmed: :mod:`aelab.study.claims` (where a study
  validates them on load); this module judges each kind (``JUDGES``, ``register_judge``).

  Optional in every claim: ``"of": "baseline"`` judges the baseline run instead of the variant
  (only for the one-run kinds ``value_near``, ``below``, ``above``, ``plateau``; e.g. the lab
  model's own "≈0.09" loss). A non-finite number never confirms a claim. A claim about a measure
  the data does not have (SSIM of a table) is :data:`NOT_JUDGED`, not an error.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from ..numfmt import finite as _finite
from ..numfmt import fmt_num, fmt_pct, fmt_ratio, ratio
from ..study.claims import Claim, ClaimError, parse_claim, parse_metric_path

__all__ = [
    "CONFIRMED",
    "JUDGES",
    "NOT_CONFIRMED",
    "NOT_JUDGED",
    "Verdict",
    "data_bound",
    "evaluate_claim",
    "history_curve",
    "judge",
    "not_judged_elsewhere",
    "register_judge",
    "resolve",
    "value_at",
]

CONFIRMED = "confirmed"
NOT_CONFIRMED = "not confirmed"
#: a claim about a measure the data does not have (SSIM of 8×8 images, PSNR of a table): said, not crashed on
NOT_JUDGED = "cannot be judged on this data"
#: metrics that exist only for some data shapes (see aelab.metrics._quality)
SHAPE_METRICS = ("ssim", "psnr", "bce", "input_ssim", "input_psnr")


# --------------------------------------------------------------------------------------------
# reading numbers out of a run record
# --------------------------------------------------------------------------------------------


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
    p = parse_metric_path(path)
    if p.source in ("first", "final"):
        values = _history(run, p.key, path)
        return _as_float(values[0] if p.source == "first" else values[-1], run, path)
    if p.source == "history":
        values = _history(run, p.key, path)
        if not -len(values) <= p.index < len(values):
            raise ValueError(
                f"path {path!r}: run {_run_name(run)!r} has {len(values)} epochs of {p.key!r} "
                f"(index is 0-based)"
            )
        return _as_float(values[p.index], run, path)
    metrics = run.get("metrics")
    if not isinstance(metrics, Mapping):
        raise ValueError(f"run {_run_name(run)!r} has no metrics (needed by {path!r})")
    if p.block is not None:
        metrics = metrics.get(p.block)
        if not isinstance(metrics, Mapping):
            raise ValueError(f"run {_run_name(run)!r} has no metrics.{p.block} block (path {path!r})")
    if p.key not in metrics:
        raise ValueError(f"run {_run_name(run)!r} has no metric {path!r}")
    return _as_float(metrics[p.key], run, path)


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


#: claim kind -> ``judge(params, run, baseline) -> Verdict``: how the report decides a kind that
#: :data:`aelab.study.claims.CLAIM_KINDS` defines (its parameters are validated there, when the study loads)
JUDGES: dict[str, Callable[[Any, Mapping[str, Any], Mapping[str, Any]], Verdict]] = {}


def register_judge(kind: str) -> Callable:
    """A decorator: ``judge(params, run, baseline) -> Verdict`` decides claims of ``kind`` (``run`` is
    the variant, or the baseline when ``params.of == "baseline"``). Test code adds a kind with
    :func:`aelab.study.claims.register_claim_kind` and its judge here."""
    def add(judge: Callable) -> Callable:
        JUDGES[kind] = judge
        return judge
    return add


def _who(of: str) -> str:
    return f"The {of}'s"


def _measured(metric: str, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict | float:
    missing = _not_measured(metric, run, baseline)
    return missing if missing is not None else resolve(run, metric)


@register_judge("value_near")
def _value_near(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
    v = _measured(p.metric, run, baseline)
    if isinstance(v, Verdict):
        return v
    target, tol = float(p.value), float(p.rel_tol)
    rel = abs(v - target) / abs(target) if target != 0 else (0.0 if v == 0 else math.inf)
    ok = _finite(v) and abs(v - target) <= tol * abs(target)
    measured = f"{p.metric} = {fmt_num(v)} (target {fmt_num(target)}, off by {fmt_num(100 * rel, 3)}%)"
    detail = (f"{_who(p.of)} {p.metric} of {fmt_num(v)} is {'within' if ok else 'not within'} "
              f"{fmt_num(100 * tol, 3)}% of {fmt_num(target)}.")
    return _verdict(ok, measured, detail)


def _threshold(word: str) -> Callable:
    def judge(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
        v = _measured(p.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        target = float(p.value)
        ok = _finite(v) and (v < target if word == "below" else v > target)
        measured = f"{p.metric} = {fmt_num(v)} (threshold {fmt_num(target)})"
        detail = f"{_who(p.of)} {p.metric} of {fmt_num(v)} is {'' if ok else 'not '}{word} {fmt_num(target)}."
        return _verdict(ok, measured, detail)
    return judge


register_judge("below")(_threshold("below"))
register_judge("above")(_threshold("above"))


@register_judge("plateau")
def _plateau_claim(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
    return _plateau(run, p.history, p.after, float(p.max_rel_drop), p.of)


def _versus(less: bool) -> Callable:
    def judge(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
        v = _measured(p.metric, run, baseline)
        if isinstance(v, Verdict):
            return v
        b = resolve(baseline, p.metric)
        ok = _finite(v, b) and (v < b if less else v > b)
        word, m = ("lower" if less else "higher"), p.metric
        return _verdict(ok, f"{m}: variant {fmt_num(v)} vs baseline {fmt_num(b)}",
                        f"The variant's {m} ({fmt_num(v)}) is {'' if ok else 'not '}{word} than the baseline's ({fmt_num(b)}).")
    return judge


register_judge("less_than_baseline")(_versus(True))
register_judge("greater_than_baseline")(_versus(False))


def _ratio(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict | tuple[float, str, str]:
    v = _measured(p.metric, run, baseline)
    if isinstance(v, Verdict):
        return v
    b = resolve(baseline, p.metric)
    r = ratio(v, b)
    shown = fmt_ratio(r) if _finite(r) else "undefined (the baseline is 0)" if b == 0 else fmt_num(r)
    return r, shown, f"{p.metric}: variant {fmt_num(v)} / baseline {fmt_num(b)} = {shown}"


@register_judge("ratio_at_least")
def _ratio_at_least(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
    got = _ratio(p, run, baseline)
    if isinstance(got, Verdict):
        return got
    r, shown, measured = got
    lo = float(p.min)
    ok = not math.isnan(r) and r >= lo
    return _verdict(ok, measured, f"The variant/baseline ratio of {p.metric} is {shown}, "
                                  f"{'at least' if ok else 'below'} {fmt_ratio(lo)}.")


@register_judge("ratio_between")
def _ratio_between(p: Any, run: Mapping[str, Any], baseline: Mapping[str, Any]) -> Verdict:
    got = _ratio(p, run, baseline)
    if isinstance(got, Verdict):
        return got
    r, shown, measured = got
    lo, hi = float(p.min), float(p.max)
    ok = not math.isnan(r) and lo <= r <= hi
    where = "inside" if ok else ("below" if not math.isnan(r) and r < lo else "outside")
    return _verdict(ok, measured, f"The variant/baseline ratio of {p.metric} is {shown}, {where} the range "
                                  f"{fmt_ratio(lo)}–{fmt_ratio(hi)}.")


# --------------------------------------------------------------------------------------------
# judging
# --------------------------------------------------------------------------------------------
def judge(claim: Any, baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> Verdict:
    """The :class:`Verdict` on ``claim`` (a :class:`~aelab.study.claims.Claim`, or a mapping as a study
    writes it, validated by :func:`~aelab.study.claims.parse_claim`) from the numbers of two run records.

    Raises :class:`~aelab.study.claims.ClaimError` (a ValueError) for a malformed claim or a kind
    without a judge, ValueError for a path the runs lack."""
    c = parse_claim(claim)
    decide = JUDGES.get(c.kind)
    if decide is None:
        raise ClaimError(f"claim kind {c.kind!r} has no judge in the report (aelab.report.claims.register_judge)")
    run = baseline_run if c.params.of == "baseline" else variant_run
    return decide(c.params, run, baseline_run)


def evaluate_claim(claim: Any, baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> dict[str, str]:
    """:func:`judge` as ``{"status": "confirmed" | "not confirmed" | NOT_JUDGED, "measured": <the
    numbers, formatted>, "detail": <one sentence>}``."""
    return judge(claim, baseline_run, variant_run).as_dict()


# --------------------------------------------------------------------------------------------
# claims on other data
# --------------------------------------------------------------------------------------------
#: numbers whose scale is the data's own (a loss per pixel on 8×8 images or on a table is not one on
#: 28×28 images): a claim quoting such a number for one data set cannot be judged on another
_DATA_SCALED = re.compile(r"^(final\.|first\.|history\.|metrics\.(noisy\.)?(bce|mse|psnr)$)")


def data_bound(claim: Mapping[str, Any]) -> bool:
    """Whether ``claim`` compares a number with a fixed value on a scale the data sets (a target or
    threshold on a loss, BCE, MSE or PSNR): such a value is the one measured on the data the claim
    was written for, and means nothing on other data. Ratios between two runs, SSIM, diversity and
    the shape of a curve carry over."""
    claim = claim.to_dict() if isinstance(claim, Claim) else claim
    kind = claim.get("kind")
    params = claim.get("params") if isinstance(claim.get("params"), Mapping) else {}
    if kind not in ("value_near", "below", "above"):
        return False
    return bool(_DATA_SCALED.match(str(params.get("metric", ""))))


def not_judged_elsewhere(claim: Mapping[str, Any], verdict: Mapping[str, str], written_for: Sequence[str],
                         data: Sequence[str]) -> dict[str, str]:
    """The verdict of a :func:`data_bound` claim on other data than it was written for: not judged,
    with what was measured and why."""
    claim = claim.to_dict() if isinstance(claim, Claim) else claim
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


