"""Report figures: draw loss curves, reconstruction grids and sweep plots, return PNG bytes.

Only drawing belongs here: every function takes numbers/arrays already loaded (by
:mod:`aelab.report.render`) and returns the PNG file's bytes. Nothing is written to disk here.

Figures are drawn with matplotlib's object API on the Agg canvas (``Figure`` +
``FigureCanvasAgg``), never through ``pyplot``: no global backend is switched, no figure is
registered in pyplot's state, so nothing stays open after a call and the module is safe to
import in a notebook or a headless server alike. dpi 100 keeps a whole report well under a second
of drawing per question.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["extra_terms", "loss_curves", "recon_grid", "sweep_plot", "sweep_ylim", "DPI", "MIN_REL_SPAN"]

DPI = 100
#: log y-axis for loss curves when the largest plotted loss is at least this many times the smallest.
LOG_Y_SPAN = 8.0
#: a sweep panel's y-axis spans at least this fraction of the size of its numbers, so that a wiggle
#: of a few percent does not fill the panel and look like a trend.
MIN_REL_SPAN = 0.2
_BASE_COLOR, _VAR_COLOR = "#1f77b4", "#d62728"
_PNG_META = {"Software": None}


def _png(fig: Figure) -> bytes:
    """Render ``fig`` on an Agg canvas and return PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    fig.clear()
    return buf.getvalue()


def _finite_positive(values: Sequence[float]) -> list[float]:
    return [float(x) for x in values if x is not None and math.isfinite(float(x)) and float(x) > 0]


def _curve(run: Mapping[str, Any], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    history = run.get("history") or {}
    ys = history.get(key)
    if not ys:
        return None
    y = np.array([math.nan if v is None else float(v) for v in ys], dtype=float)
    epochs = history.get("epoch")
    if epochs and len(epochs) == len(y):
        x = np.asarray(epochs, dtype=float)
    else:
        x = np.arange(1, len(y) + 1, dtype=float)
    return x, y


def extra_terms(*runs: Mapping[str, Any]) -> list[str]:
    """The loss terms besides the reconstruction that any of the runs recorded per epoch (see
    :func:`aelab.report.claims.penalty_terms`)."""
    from .claims import penalty_terms

    return penalty_terms(*runs)


def _term_curve(run: Mapping[str, Any], key: str, val: bool) -> tuple[np.ndarray, np.ndarray] | None:
    from .claims import LEGACY_PENALTY

    if key == LEGACY_PENALTY:
        return _curve(run, "val_penalty" if val else "penalty")
    history = run.get("history") or {}
    block = history.get("val_terms" if val else "terms")
    if not isinstance(block, Mapping) or not block.get(key):
        return None
    return _curve({"history": {key: block[key], "epoch": history.get("epoch")}}, key)


def _log_or_linear(ax, plotted: list[float], ylabel: str) -> None:
    pos = _finite_positive(plotted)
    if pos and len(pos) == len(plotted) and max(pos) / min(pos) >= LOG_Y_SPAN:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ylabel} (log scale)")
    else:
        ax.set_ylabel(ylabel)


_TERM_MARKERS = ("o", "s", "^", "D", "v")


def loss_curves(
    baseline_run: Mapping[str, Any],
    variant_run: Mapping[str, Any],
    labels: Sequence[str] = ("baseline", "variant"),
) -> bytes:
    """Train (solid) and validation (dashed) loss per epoch for both runs, as PNG bytes.

    When either run's loss has terms besides the reconstruction (an activity L1, a KL, ...), a
    second panel on the right shows those terms alone, in the same colours and line styles (one
    marker per term), so a small term stays readable beside a large loss. Each y-axis is
    logarithmic when its curves span a factor of :data:`LOG_Y_SPAN` or more (and are all
    positive), so curves of very different size stay readable.
    """
    from .claims import term_name, term_phrase

    terms = extra_terms(baseline_run, variant_run)
    fig = Figure(figsize=(10.4, 3.8) if terms else (6.4, 3.8), layout="constrained")
    if terms:
        ax, tax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    else:
        ax, tax = fig.add_subplot(), None
    runs = ((baseline_run, labels[0], _BASE_COLOR), (variant_run, labels[1], _VAR_COLOR))
    plotted: list[float] = []
    for run, label, color in runs:
        for key, style, what in (("loss", "-", "train"), ("val_loss", "--", "val")):
            c = _curve(run, key)
            if c is None:
                continue
            x, y = c
            ax.plot(x, y, linestyle=style, color=color, marker="o" if len(x) <= 12 else None,
                    markersize=3, label=f"{label} ({what})")
            plotted.extend(y[np.isfinite(y)].tolist())
    _log_or_linear(ax, plotted, "loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no history recorded", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, alpha=0.3, which="both")
    if tax is not None:
        ax.set_title("loss (all terms)", fontsize=10)
        shown: list[float] = []
        for i, key in enumerate(terms):
            marker = _TERM_MARKERS[i % len(_TERM_MARKERS)]
            for run, label, color in runs:
                for val, style in ((False, "-"), (True, "--")):
                    c = _term_curve(run, key, val)
                    if c is None:
                        continue
                    x, y = c
                    tax.plot(x, y, linestyle=style, color=color, marker=marker if len(x) <= 12 or len(terms) > 1
                             else None, markevery=max(1, len(x) // 12), markersize=3.5)
                    shown.extend(y[np.isfinite(y)].tolist())
        _log_or_linear(tax, shown, "term")
        tax.set_title(f"{term_phrase(terms)} (in the loss)", fontsize=10)
        tax.set_xlabel("epoch")
        tax.xaxis.set_major_locator(MaxNLocator(integer=True))
        tax.grid(True, alpha=0.3, which="both")
        if len(terms) > 1:  # which marker is which term
            handles = [tax.plot([], [], color="0.35", marker=_TERM_MARKERS[i % len(_TERM_MARKERS)], linestyle="-",
                                markersize=4, label=term_name(k))[0] for i, k in enumerate(terms)]
            tax.legend(handles=handles, fontsize=8)
        if not shown:
            tax.text(0.5, 0.5, "no terms recorded per epoch", ha="center", va="center", transform=tax.transAxes)
    return _png(fig)


def _as_images(arr: Any) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3 and a.shape[1:] == (28, 28):
        return a
    if a.ndim == 2 and a.shape[1] == 784:
        return a.reshape(-1, 28, 28)
    if a.ndim == 1 and a.size % 784 == 0:
        return a.reshape(-1, 28, 28)
    raise ValueError(f"expected images of shape (k, 784) or (k, 28, 28), got {a.shape}")


def recon_grid(rows: Sequence[tuple[str, Any]], n: int = 10) -> bytes:
    """A grid of 28×28 images: one labelled row per ``(label, images)``, ``n`` columns, as PNG bytes.

    ``images`` is ``(k, 784)`` or ``(k, 28, 28)``; the first ``min(n, k)`` are shown. Gray colormap,
    no axes, every row on the same fixed [0, 1] intensity scale (values outside are clipped), so
    brightness is comparable across rows.
    """
    rows = [(str(label), _as_images(images)) for label, images in rows]
    if not rows:
        raise ValueError("recon_grid needs at least one row")
    cols = max(1, min(n, max(len(imgs) for _, imgs in rows)))
    label_w = 0.12 + 0.075 * max(len(label) for label, _ in rows)
    cell = 0.7
    width, height = label_w + cols * cell, len(rows) * cell + 0.1
    fig = Figure(figsize=(width, height))
    left = label_w / width
    fig.subplots_adjust(left=left, right=0.995, top=1 - 0.05 / height, bottom=0.05 / height, hspace=0.05)
    gap = 2
    cmap = _gray()
    for i, (label, imgs) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        strip = np.full((28, cols * (28 + gap) - gap), np.nan, dtype=np.float32)
        for j, img in enumerate(imgs[:cols]):
            strip[:, j * (28 + gap): j * (28 + gap) + 28] = img
        ax.imshow(np.clip(strip, 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.text(-0.01, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=9)
    return _png(fig)


def _gray():
    import matplotlib

    return matplotlib.colormaps["gray"].with_extremes(bad="white")  # NaN = the gaps between images


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def sweep_ylim(finite: Sequence[float], integer: bool = False) -> tuple[float, float] | None:
    """The y-limits of a sweep panel showing ``finite``, or None to let matplotlib choose.

    Counts (``integer``): at least −0.5 … max+1, never below −0.5. Other numbers: when they span less
    than :data:`MIN_REL_SPAN` of their size, a window of that span centred on them, kept at or above
    0 for non-negative numbers and inside [0, 1] for numbers that all lie there (SSIM, fractions).
    """
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    if integer:
        if hi - lo >= 2:
            return None
        return (lo - 1 if lo >= 1 else -0.5, hi + 1)
    scale = max(abs(lo), abs(hi))
    need = MIN_REL_SPAN * scale
    if scale == 0 or hi - lo >= need:
        return None
    a, b = (lo + hi) / 2 - need / 2, (lo + hi) / 2 + need / 2
    if lo >= 0 and a < 0:
        a, b = 0.0, need
    if 0 <= lo and hi <= 1 and b > 1:
        a, b = max(0.0, 1 - need), 1.0
    return a, b


def sweep_plot(
    values: Sequence[Any],
    series: Mapping[str, Sequence[float | None]],
    xlabel: str,
    log_x: bool | None = None,
    baselines: Mapping[str, float | None] | None = None,
    bands: Mapping[str, float] | None = None,
    panel_notes: Mapping[str, str] | None = None,
) -> bytes:
    """Final losses and diagnostics against a swept parameter, several panels, as PNG bytes.

    ``series`` maps a name to one number per value (None/NaN: not recorded). A name of the form
    ``"panel/line"`` puts the line in the panel ``panel`` (e.g. ``"loss/train"`` and
    ``"loss/val"`` share the loss panel); any other name gets a panel of its own. A series with no
    finite number is left out, and so is a panel left with no line: no empty panels. ``log_x``: None
    picks a log x-axis when every value is positive and they span a factor of 20 or more.
    Non-numeric values (e.g. activation names) are spaced evenly and used as tick labels.
    ``baselines`` (optional) maps series names to a reference number drawn as a dotted line.
    ``bands`` (optional) maps series names to a relative half-width drawn as a shaded band around
    the line (the run-to-run noise). ``panel_notes`` (optional) adds a line under a panel's title.
    Each y-axis spans at least :data:`MIN_REL_SPAN` of its numbers' size (:func:`sweep_ylim`).
    """
    values = list(values)
    numeric = bool(values) and all(_is_number(v) for v in values)
    if numeric:
        x = np.asarray(values, dtype=float)
        if log_x is None:
            log_x = bool(np.all(x > 0)) and x.max() / x.min() >= 20
        elif log_x and not np.all(x > 0):
            log_x = False
    else:
        x = np.arange(len(values), dtype=float)
        log_x = False

    def floats(ys: Sequence[float | None]) -> np.ndarray:
        return np.array([math.nan if v is None else float(v) for v in ys], dtype=float)

    for name, ys in series.items():
        if len(ys) != len(values):
            raise ValueError(f"series {name!r} has {len(ys)} numbers for {len(values)} values")
    if not series:
        raise ValueError("sweep_plot needs at least one series")
    panels: dict[str, list[tuple[str, str]]] = {}
    for name in series:
        if not np.isfinite(floats(series[name])).any():
            continue  # nothing recorded: no line, and no panel for it alone
        panel, _, line = name.partition("/")
        panels.setdefault(panel, []).append((name, line))

    if not panels:
        fig = Figure(figsize=(3.6, 2.2), layout="constrained")
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no numbers recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _png(fig)
    ncols = 2 if len(panels) == 4 else min(3, len(panels))  # 4 panels: 2×2, not 3 + 1 and two blanks
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for k, (panel, lines) in enumerate(panels.items()):
        ax = axes[k // ncols][k % ncols]
        shown: list[float] = []
        for j, (name, line) in enumerate(lines):
            y = floats(series[name])
            color = f"C{j}"
            ax.plot(x, y, marker="o", markersize=4, color=color, label=line or None)
            shown.extend(y[np.isfinite(y)].tolist())
            band = (bands or {}).get(name)
            if band is not None and math.isfinite(float(band)) and band > 0:
                lo_b, hi_b = y - np.abs(y) * band, y + np.abs(y) * band
                ax.fill_between(x, lo_b, hi_b, color=color, alpha=0.15, linewidth=0,
                                label="noise band")
                shown.extend(lo_b[np.isfinite(lo_b)].tolist() + hi_b[np.isfinite(hi_b)].tolist())
            ref = (baselines or {}).get(name)
            if ref is not None and math.isfinite(float(ref)):
                ax.axhline(float(ref), color=color, linestyle=":", linewidth=1,
                           label=f"{line + ' ' if line else ''}baseline")
                shown.append(float(ref))
        finite = [float(v) for name, _ in lines for v in series[name] if v is not None and math.isfinite(float(v))]
        integer = bool(finite) and all(v.is_integer() for v in finite)  # counts (dead units)
        if integer:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        lim = sweep_ylim(shown, integer)
        if lim is not None:
            ax.set_ylim(*lim)
        note = (panel_notes or {}).get(panel)
        ax.set_title(panel + (f"\n{note}" if note else ""), fontsize=10 if not note else 9)
        ax.set_xlabel(xlabel, fontsize=9)
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values])
        elif len(values) <= 8:
            ax.set_xticks(x, [f"{v:g}" for v in x])
            ax.minorticks_off()
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        handles, _labels = ax.get_legend_handles_labels()
        if handles and (any(line for _, line in lines) or baselines or bands):
            ax.legend(fontsize=7)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    return _png(fig)
