"""Claims and observations: judge a question's claims from the saved numbers, in words.

This module holds everything that turns the numbers of a run record (one entry of
``results.json["runs"]``: ``{"name", "dir", "config", "history", "metrics"}``) into a verdict or a
sentence. It never reads files, trains or draws; :mod:`aelab.report.render` calls it.

* :func:`resolve` reads one number out of a run record by a *path*:

  ============================  =====================================================
  ``final.loss``                last epoch of ``history["loss"]`` (any history key works:
                                ``final.val_loss``, ``final.penalty``, ...)
  ``first.loss``                first epoch of a history key
  ``history.<key>[i]``          epoch *i* of a history key, 0-based; negative counts from the end
  ``metrics.<key>``             a top-level metric (``bce``, ``mse``, ``psnr``, ``ssim``, ``diversity``)
  ``metrics.code.<key>``        a code diagnostic (``dead_units``, ``zero_fraction``, ...)
  ``metrics.noisy.<key>``       a noisy-input metric (``ssim``, ``input_psnr``, ...)
  ============================  =====================================================

* :func:`evaluate_claim` judges one claim ``{"text", "kind", "params"}`` against a baseline and a
  variant run. The kinds (the variant run is the one judged; "ratio" is variant / baseline):

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
  model's own "≈0.09" loss). A non-finite number never confirms a claim. A malformed claim (unknown kind, missing or unknown
  parameter, unknown path) raises :class:`ValueError` naming the problem.

* :func:`observe` writes a short paragraph from the numbers of a question's two runs.

* :func:`fmt_num` / :func:`fmt_ratio` / :func:`fmt_pct` format numbers the same way everywhere in
  the report.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

__all__ = [
    "CLAIM_KINDS",
    "evaluate_claim",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "history_curve",
    "noise_factor",
    "observe",
    "ratio",
    "resolve",
    "units_text",
]

CONFIRMED = "confirmed"
NOT_CONFIRMED = "not confirmed"

#: claim kind -> the names of its required parameters (no others allowed but OPTIONAL_PARAMS).
CLAIM_KINDS: dict[str, tuple[str, ...]] = {
    "value_near": ("metric", "value", "rel_tol"),
    "ratio_at_least": ("metric", "min"),
    "ratio_between": ("metric", "min", "max"),
    "plateau": ("history", "after", "max_rel_drop"),
    "less_than_baseline": ("metric",),
    "greater_than_baseline": ("metric",),
    "below": ("metric", "value"),
    "above": ("metric", "value"),
}

#: optional in every claim: "of": "variant" (default) or "baseline" — judge that run instead
#: (only for the kinds that need one run: ABSOLUTE_KINDS).
OPTIONAL_PARAMS = ("of",)
ABSOLUTE_KINDS = ("value_near", "below", "above", "plateau")

_HISTORY_INDEX = re.compile(r"^history\.([A-Za-z_][A-Za-z0-9_]*)\[(-?\d+)\]$")
_FIRST_FINAL = re.compile(r"^(first|final)\.([A-Za-z_][A-Za-z0-9_]*)$")
_METRIC = re.compile(r"^metrics\.(?:(code|noisy)\.)?([A-Za-z_][A-Za-z0-9_]*)$")


# --------------------------------------------------------------------------------------------
# number formatting
# --------------------------------------------------------------------------------------------
def fmt_num(x: Any, digits: int = 4) -> str:
    """Format a number with ``digits`` significant digits, fixed-point where readable.

    ``None`` -> ``"—"``; integers (and integral floats that came from counts) stay integers when
    passed as ``int``; NaN/inf -> ``"nan"``/``"inf"``/``"-inf"``; very small or large -> ``1.234e-05``.
    """
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0.0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if -3 <= mag < 5:
        decimals = max(digits - 1 - mag, 0)
        return f"{x:.{decimals}f}"
    return f"{x:.{digits - 1}e}"


def fmt_ratio(r: Any) -> str:
    """Format a ratio as ``2.82×`` (3 significant digits)."""
    if r is None:
        return "—"
    return f"{fmt_num(r, 3)}×"


def fmt_pct(x: Any, digits: int = 3) -> str:
    """Format a fraction as a signed percentage: ``0.0123`` -> ``+1.23%``."""
    if x is None:
        return "—"
    x = float(x)
    if not math.isfinite(x):
        return fmt_num(x)
    s = fmt_num(100.0 * x, digits)
    return (s if s.startswith("-") or s == "0" else "+" + s) + "%"


def ratio(variant: float, baseline: float) -> float:
    """variant / baseline; ``inf`` for a positive variant over a zero baseline, NaN for 0/0."""
    variant, baseline = float(variant), float(baseline)
    if baseline == 0.0:
        if variant == 0.0 or math.isnan(variant):
            return math.nan
        return math.copysign(math.inf, variant)
    return variant / baseline


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
    raise ValueError(
        f"unknown metric path {path!r}: use final.<history key>, first.<history key>, "
        f"history.<key>[i], metrics.<key>, metrics.code.<key> or metrics.noisy.<key>"
    )


# --------------------------------------------------------------------------------------------
# claims
# --------------------------------------------------------------------------------------------
def _params(claim: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(claim, Mapping):
        raise ValueError(f"a claim must be a mapping with 'text', 'kind' and 'params', got {claim!r}")
    kind = claim.get("kind")
    if kind not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {kind!r}; known kinds: {', '.join(CLAIM_KINDS)}")
    params = claim.get("params", {})
    if not isinstance(params, Mapping):
        raise ValueError(f"claim {kind!r}: 'params' must be a mapping, got {params!r}")
    wanted = CLAIM_KINDS[kind]
    missing = [p for p in wanted if p not in params]
    unknown = [p for p in params if p not in wanted and p not in OPTIONAL_PARAMS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(map(str, unknown))}")
        raise ValueError(f"claim {kind!r} takes params {', '.join(wanted)}: {'; '.join(parts)}")
    for name in wanted:
        if name in ("metric", "history"):
            if not isinstance(params[name], str):
                raise ValueError(f"claim {kind!r}: param {name!r} must be a string, got {params[name]!r}")
        elif name == "after":
            if isinstance(params[name], bool) or not isinstance(params[name], int) or params[name] < 2:
                raise ValueError(f"claim {kind!r}: param 'after' must be an epoch number >= 2, got {params[name]!r}")
        elif isinstance(params[name], bool) or not isinstance(params[name], (int, float)):
            raise ValueError(f"claim {kind!r}: param {name!r} must be a number, got {params[name]!r}")
    if kind == "ratio_between" and params["min"] > params["max"]:
        raise ValueError(f"claim 'ratio_between': min {params['min']} is above max {params['max']}")
    if kind == "value_near" and params["rel_tol"] < 0:
        raise ValueError(f"claim 'value_near': rel_tol must be >= 0, got {params['rel_tol']}")
    if kind == "plateau" and params["max_rel_drop"] < 0:
        raise ValueError(f"claim 'plateau': max_rel_drop must be >= 0, got {params['max_rel_drop']}")
    return kind, dict(params)


def _verdict(ok: bool, measured: str, detail: str) -> dict[str, str]:
    return {"status": CONFIRMED if ok else NOT_CONFIRMED, "measured": measured, "detail": detail}


def _finite(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def evaluate_claim(
    claim: Mapping[str, Any], baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]
) -> dict[str, str]:
    """Judge ``claim`` on the numbers of two run records.

    Returns ``{"status": "confirmed" | "not confirmed", "measured": <the numbers, formatted>,
    "detail": <one sentence>}``. Raises ValueError for an unknown kind, bad params or a bad path.
    """
    kind, p = _params(claim)
    # "of": "baseline" judges a claim about the baseline itself (e.g. the lab AE's ≈0.09 val loss);
    # only the absolute kinds make sense there.
    of = p.pop("of", "variant")
    if of not in ("variant", "baseline"):
        raise ValueError(f"claim {kind!r}: 'of' must be 'variant' or 'baseline', got {of!r}")
    if of == "baseline":
        if kind not in ABSOLUTE_KINDS:
            raise ValueError(
                f"claim {kind!r}: 'of = baseline' only works with {', '.join(ABSOLUTE_KINDS)}"
            )
        variant_run = baseline_run
    who = f"The {of}'s"

    if kind == "plateau":
        return _plateau(variant_run, p["history"], p["after"], float(p["max_rel_drop"]), of)

    metric = p["metric"]
    v = resolve(variant_run, metric)

    if kind == "value_near":
        target, tol = float(p["value"]), float(p["rel_tol"])
        rel = abs(v - target) / abs(target) if target != 0 else (0.0 if v == 0 else math.inf)
        ok = _finite(v) and abs(v - target) <= tol * abs(target)
        measured = f"{metric} = {fmt_num(v)} (target {fmt_num(target)}, off by {fmt_num(100 * rel, 3)}%)"
        detail = (
            f"{who} {metric} of {fmt_num(v)} is {'within' if ok else 'not within'} "
            f"{fmt_num(100 * tol, 3)}% of {fmt_num(target)}."
        )
        return _verdict(ok, measured, detail)

    if kind in ("below", "above"):
        target = float(p["value"])
        ok = _finite(v) and (v < target if kind == "below" else v > target)
        rel_word = "below" if kind == "below" else "above"
        measured = f"{metric} = {fmt_num(v)} (threshold {fmt_num(target)})"
        detail = f"{who} {metric} of {fmt_num(v)} is {'' if ok else 'not '}{rel_word} {fmt_num(target)}."
        return _verdict(ok, measured, detail)

    b = resolve(baseline_run, metric)

    if kind in ("less_than_baseline", "greater_than_baseline"):
        less = kind == "less_than_baseline"
        ok = _finite(v, b) and (v < b if less else v > b)
        word = "lower" if less else "higher"
        measured = f"{metric}: variant {fmt_num(v)} vs baseline {fmt_num(b)}"
        detail = f"The variant's {metric} ({fmt_num(v)}) is {'' if ok else 'not '}{word} than the baseline's ({fmt_num(b)})."
        return _verdict(ok, measured, detail)

    r = ratio(v, b)
    measured = f"{metric}: variant {fmt_num(v)} / baseline {fmt_num(b)} = {fmt_ratio(r)}"
    if kind == "ratio_at_least":
        lo = float(p["min"])
        ok = not math.isnan(r) and r >= lo
        detail = f"The variant/baseline ratio of {metric} is {fmt_ratio(r)}, {'at least' if ok else 'below'} {fmt_ratio(lo)}."
        return _verdict(ok, measured, detail)
    # ratio_between
    lo, hi = float(p["min"]), float(p["max"])
    ok = not math.isnan(r) and lo <= r <= hi
    where = "inside" if ok else ("below" if not math.isnan(r) and r < lo else "outside")
    detail = (
        f"The variant/baseline ratio of {metric} is {fmt_ratio(r)}, {where} the range "
        f"{fmt_ratio(lo)}–{fmt_ratio(hi)}."
    )
    return _verdict(ok, measured, detail)


def _plateau(run: Mapping[str, Any], key: str, after: int, max_rel_drop: float, of: str = "variant") -> dict[str, str]:
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


# --------------------------------------------------------------------------------------------
# observations
# --------------------------------------------------------------------------------------------
def _get(run: Mapping[str, Any], path: str) -> float | None:
    """resolve() that returns None when the run lacks the path."""
    try:
        return resolve(run, path)
    except ValueError:
        return None


def noise_factor(run: Mapping[str, Any]) -> float | None:
    """The run's noise factor from its config (``data.noise_factor``), or None."""
    config = run.get("config")
    if isinstance(config, Mapping):
        for block in (config.get("data"), config):
            if isinstance(block, Mapping):
                nf = block.get("noise_factor")
                if isinstance(nf, (int, float)) and not isinstance(nf, bool):
                    return float(nf)
    return None


def _signed(x: float) -> str:
    """A difference with its sign: +0.120, -8.00, 0."""
    s = fmt_num(x, 3)
    return s if s.startswith("-") or s in ("0", "nan") else "+" + s


def _compare_word(v: float, b: float, rel: float = 0.01) -> str:
    """'higher' / 'lower' / 'about the same' for v against b (within ``rel``)."""
    if not _finite(v, b):
        return "not comparable"
    scale = max(abs(v), abs(b))
    if scale == 0 or abs(v - b) <= rel * scale:
        return "about the same"
    return "higher" if v > b else "lower"


def _late_drop(run: Mapping[str, Any], key: str) -> tuple[float, int] | None:
    """Relative drop of ``key`` over the second half of training, and the epoch it is measured from."""
    try:
        curve = history_curve(run, key)
    except ValueError:
        return None
    if len(curve) < 3:
        return None
    start = len(curve) // 2  # 0-based index of the middle epoch
    a, z = curve[start], curve[-1]
    if not _finite(a, z) or a == 0:
        return None
    return (a - z) / abs(a), start + 1


def units_text(dead: float, units: float | None) -> str:
    """'3 of 32' (or just '3' when the unit count is unknown)."""
    if not math.isfinite(dead):
        return fmt_num(dead)
    s = fmt_num(int(dead))
    if units is not None and math.isfinite(units):
        s += f" of {fmt_num(int(units))}"
    return s


def observe(question: Mapping[str, Any], baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> str:
    """A short paragraph describing what the numbers of a question's two runs show.

    Every sentence is generated from the numbers (losses, their ratio, SSIM/PSNR change, dead units,
    output diversity, noisy-input metrics); no conclusion is written in advance. Sentences whose
    numbers are missing are left out.
    """
    b, v = baseline_run, variant_run
    out: list[str] = []

    bv, vv = _get(b, "final.val_loss"), _get(v, "final.val_loss")
    bt, vt = _get(b, "final.loss"), _get(v, "final.loss")
    if bv is not None and vv is not None:
        s = f"The variant ends at val loss {fmt_num(vv, 3)} vs {fmt_num(bv, 3)} for the baseline ({fmt_ratio(ratio(vv, bv))})"
        if bt is not None and vt is not None:
            s += f", and at train loss {fmt_num(vt, 3)} vs {fmt_num(bt, 3)} ({fmt_ratio(ratio(vt, bt))})"
        out.append(s + ".")
    elif bt is not None and vt is not None:
        out.append(
            f"The variant ends at train loss {fmt_num(vt, 3)} vs {fmt_num(bt, 3)} for the baseline "
            f"({fmt_ratio(ratio(vt, bt))})."
        )

    bp, vp = _get(b, "final.penalty"), _get(v, "final.penalty")
    if vp is not None and vt is not None and vp > 0:
        s = f"The activity penalty is {fmt_num(vp, 3)} of the variant's final train loss"
        if bp is not None and bt is not None and bp > 0:
            s += f" ({fmt_num(bp, 3)} of the baseline's)"
        out.append(s + ".")

    vdrop, bdrop = _late_drop(v, "val_loss"), _late_drop(b, "val_loss")
    if vdrop is not None:
        s = f"From epoch {vdrop[1]} to the end the variant's val loss changed by {fmt_pct(-vdrop[0])}"
        if bdrop is not None:
            s += f" (baseline {fmt_pct(-bdrop[0])} from epoch {bdrop[1]})"
        out.append(s + ".")

    bs, vs = _get(b, "metrics.ssim"), _get(v, "metrics.ssim")
    bq, vq = _get(b, "metrics.psnr"), _get(v, "metrics.psnr")
    parts = []
    if bs is not None and vs is not None:
        parts.append(f"SSIM {fmt_num(vs, 3)} vs {fmt_num(bs, 3)} ({_compare_word(vs, bs)}, {_signed(vs - bs)})")
    if bq is not None and vq is not None:
        parts.append(f"PSNR {fmt_num(vq, 3)} vs {fmt_num(bq, 3)} dB ({_signed(vq - bq)} dB)")
    if parts:
        out.append("On the clean test images the variant's reconstructions have " + " and ".join(parts) + ".")

    bd, vd = _get(b, "metrics.code.dead_units"), _get(v, "metrics.code.dead_units")
    bu, vu = _get(b, "metrics.code.units"), _get(v, "metrics.code.units")
    if bd is not None and vd is not None:
        out.append(f"{units_text(vd, vu)} code units are dead in the variant vs {units_text(bd, bu)} in the baseline.")

    bz, vz = _get(b, "metrics.code.zero_fraction"), _get(v, "metrics.code.zero_fraction")
    if bz is not None and vz is not None:
        out.append(f"A fraction {fmt_num(vz, 3)} of the variant's code activations are zero (baseline {fmt_num(bz, 3)}).")

    bdv, vdv = _get(b, "metrics.diversity"), _get(v, "metrics.diversity")
    if bdv is not None and vdv is not None:
        out.append(
            f"Output diversity (1 = as varied as the test digits) is {fmt_num(vdv, 3)} vs {fmt_num(bdv, 3)} "
            f"({_compare_word(vdv, bdv)}, {fmt_ratio(ratio(vdv, bdv))})."
        )

    vns, bns = _get(v, "metrics.noisy.ssim"), _get(b, "metrics.noisy.ssim")
    if vns is not None:
        vnf, bnf = noise_factor(v), noise_factor(b)
        vin = _get(v, "metrics.noisy.input_ssim")
        s = "From noisy inputs"
        if vnf is not None:
            s += f" (noise factor {fmt_num(vnf, 3)}"
            s += f" vs {fmt_num(bnf, 3)})" if bnf is not None and bns is not None else ")"
        s += f" the variant reaches SSIM {fmt_num(vns, 3)}"
        if bns is not None:
            s += f" vs {fmt_num(bns, 3)} for the baseline"
        if vin is not None:
            s += f", where the noisy input itself scores {fmt_num(vin, 3)}"
            bin_ = _get(b, "metrics.noisy.input_ssim")
            if bin_ is not None and bns is not None:
                s += f" ({fmt_num(bin_, 3)} for the baseline's)"
        vnb, bnb = _get(v, "metrics.noisy.bce"), _get(b, "metrics.noisy.bce")
        if vnb is not None:
            s += f"; its BCE against the clean images is {fmt_num(vnb, 3)}"
            if bnb is not None:
                s += f" vs {fmt_num(bnb, 3)} ({fmt_ratio(ratio(vnb, bnb))})"
        out.append(s + ".")

    if not out:
        return "No numbers were recorded for these runs."
    return " ".join(out)
