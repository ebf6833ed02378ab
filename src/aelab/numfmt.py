"""Number formatting: how every number aelab shows a person is written.

One place for it, so a table cell, a sentence of the report and a CLI line write the same number
the same way. Pure functions of their arguments (no aelab imports):

* :func:`fmt_num` / :func:`fmt_ratio` / :func:`fmt_pct` / :func:`fmt_signed`: a number, a ratio
  (``2.82×``), a signed percentage (``+1.23%``), a signed difference (``+0.120``).
* :func:`fmt_change` compares a variant's number with a baseline's as a ratio only where the ratio
  means something (:func:`meaningful_ratio`: both positive and finite, the ratio within
  :data:`RATIO_RANGE`), otherwise as a difference ``Δ`` (:func:`fmt_diff`); :func:`fmt_vs` is the
  same pair written for a sentence.
* :func:`fmt_seconds` (a duration), :func:`fmt_value` (a swept value as a config writes it),
  :func:`fmt_setting` (a config setting), :func:`units_text` ("3 of 32").
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "RATIO_RANGE",
    "finite",
    "fmt_change",
    "fmt_diff",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "fmt_seconds",
    "fmt_setting",
    "fmt_signed",
    "fmt_value",
    "fmt_vs",
    "meaningful_ratio",
    "ratio",
    "units_text",
]

#: a ratio is shown only inside this range: beyond it one number is next to nothing beside the other,
#: and "0.0005×" or "2000×" says less than the difference itself.
RATIO_RANGE = (0.01, 100.0)


def finite(*xs: float) -> bool:
    """Whether every one of ``xs`` is a finite float."""
    return all(math.isfinite(x) for x in xs)


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


def fmt_signed(x: float) -> str:
    """A difference with its sign: +0.120, -8.00, 0."""
    s = fmt_num(x, 3)
    return s if s.startswith("-") or s in ("0", "nan") else "+" + s


def ratio(variant: float, baseline: float) -> float:
    """variant / baseline; ``inf`` for a positive variant over a zero baseline, NaN for 0/0."""
    variant, baseline = float(variant), float(baseline)
    if baseline == 0.0:
        if variant == 0.0 or math.isnan(variant):
            return math.nan
        return math.copysign(math.inf, variant)
    return variant / baseline


def meaningful_ratio(variant: Any, baseline: Any) -> float | None:
    """``variant / baseline`` when that ratio means something, else None.

    Both numbers must be finite and positive (a ratio of a negative or zero quantity, or across a
    sign change, says nothing), and the ratio must lie in :data:`RATIO_RANGE` (a tiny denominator
    turns any difference into a huge or vanishing factor).
    """
    try:
        v, b = float(variant), float(baseline)
    except (TypeError, ValueError):
        return None
    if not finite(v, b) or v <= 0 or b <= 0:
        return None
    r = v / b
    return r if RATIO_RANGE[0] <= r <= RATIO_RANGE[1] else None


def fmt_diff(d: Any, unit: str = "", digits: int = 3, count: bool = False) -> str:
    """A signed difference as a table cell: ``Δ +0.158``, ``Δ -1.46 dB``, ``Δ +20`` (``count``), ``Δ 0``."""
    if d is None:
        return "—"
    count = count or isinstance(d, int)
    d = float(d)
    if not math.isfinite(d):
        return "—"
    s = str(int(d)) if count and d.is_integer() and abs(d) < 1e15 else fmt_num(d, digits)
    if not s.startswith("-") and s != "0":
        s = "+" + s
    return f"Δ {s}" + (f" {unit}" if unit else "")


def fmt_change(variant: Any, baseline: Any, mode: str | None = "ratio", unit: str = "") -> str:
    """How a variant's number compares with the baseline's, as a table cell.

    ``mode="ratio"``: ``2.50×`` when :func:`meaningful_ratio` allows it, otherwise the difference
    (``Δ +0.12``); ``mode="diff"``: always the difference (for dB, SSIM and fractions, whose ratios
    mean little); ``mode="count"``: the difference of two counts (``Δ +20``); ``mode=None``: ``—``.
    A missing or non-finite number gives ``—``.
    """
    if mode is None or variant is None or baseline is None:
        return "—"
    count = mode == "count" or (isinstance(variant, int) and isinstance(baseline, int))
    try:
        v, b = float(variant), float(baseline)
    except (TypeError, ValueError):
        return "—"
    if not finite(v, b):
        return "—"
    if mode == "ratio":
        r = meaningful_ratio(v, b)
        if r is not None:
            return fmt_ratio(r)
    return fmt_diff(v - b, unit, count=count)


def fmt_vs(v: float, b: float, mode: str = "ratio", unit: str = "") -> str:
    """'0.866 vs 0.228 (3.79×)': a variant/baseline pair for a sentence."""
    u = f" {unit}" if unit else ""
    return f"{fmt_num(v, 3)}{u} vs {fmt_num(b, 3)}{u} ({fmt_change(v, b, mode, unit)})"


def fmt_seconds(s: Any) -> str:
    """A duration: ``12.3 s`` under a minute, else ``754 s (12 min 34 s)``; ``—`` when not a finite number."""
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{s:.0f} s ({h} h {m} min {sec} s)" if h else f"{s:.0f} s ({m} min {sec} s)"


def fmt_value(value: Any) -> str:
    """A swept value as written in a config: 0.3, 1e-04, 100, relu."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def fmt_setting(value: Any) -> str:
    """A config setting as a person writes it: ``[1, 2]``, ``true``, ``none``, ``0.001``, ``relu``."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_setting(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def units_text(dead: float, units: float | None) -> str:
    """'3 of 32' (or just '3' when the unit count is unknown)."""
    if not math.isfinite(dead):
        return fmt_num(dead)
    s = fmt_num(int(dead))
    if units is not None and math.isfinite(units):
        s += f" of {fmt_num(int(units))}"
    return s
