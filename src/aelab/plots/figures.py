"""Figures of a run or a study from numbers and arrays: loss curves, image grids, heat strips, sweeps.

Every function takes numbers or arrays already loaded and returns the PNG file's bytes; nothing
here reads or writes a file, or knows what a family, a report or a run directory is (the callers
name things: a loss term's display name comes in as an argument).

Figures are drawn with matplotlib's object API on the Agg canvas (``Figure`` +
``FigureCanvasAgg``), never through ``pyplot``: no global backend is switched, no figure is
registered in pyplot's state, so nothing stays open after a call and the module is safe to
import in a notebook or a headless server alike. dpi 100 keeps a whole report well under a second
of drawing per question.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["feature_error_plot", "infer_shape", "loss_curves", "paired_grid", "png", "recon_grid", "sweep_plot",
           "sweep_ylim", "DPI", "LEGACY_TERM", "MIN_REL_SPAN", "STRIP_VALUE"]

DPI = 100
#: log y-axis for loss curves when the largest plotted loss is at least this many times the smallest.
LOG_Y_SPAN = 8.0
#: a sweep panel's y-axis spans at least this fraction of the size of its numbers, so that a wiggle
#: of a few percent does not fill the panel and look like a trend.
MIN_REL_SPAN = 0.2
_BASE_COLOR, _VAR_COLOR = "#1f77b4", "#d62728"
_PNG_META = {"Software": None}


def png(fig: Figure) -> bytes:
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


#: the history key of the one penalty curve runs recorded before loss terms were named
#: (``history["penalty"]``, ``history["val_penalty"]``)
LEGACY_TERM = "penalty"


def _term_curve(run: Mapping[str, Any], key: str, val: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """A loss term's curve: ``history["terms"][key]`` (``"val_terms"`` for validation), or for
    :data:`LEGACY_TERM` the history's own ``penalty`` / ``val_penalty`` list."""
    if key == LEGACY_TERM:
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
    *,
    terms: Sequence[str] = (),
    term_names: Optional[Mapping[str, str]] = None,
    terms_title: Optional[str] = None,
) -> bytes:
    """Train (solid) and validation (dashed) loss per epoch for both runs, as PNG bytes.

    A run is a mapping with a ``"history"``: ``{"loss": [...], "val_loss": [...], "epoch": [...],
    "terms": {name: [...]}, "val_terms": {name: [...]}}`` (lists of numbers, None where missing).
    ``terms``: the loss terms besides the reconstruction to show (an activity L1, a KL, ...); when
    given, a second panel on the right shows those terms alone, in the same colours and line
    styles (one marker per term, named by ``term_names``, titled ``terms_title``), so a small term
    stays readable beside a large loss. Each y-axis is logarithmic when its curves span a factor
    of :data:`LOG_Y_SPAN` or more (and are all positive), so curves of very different size stay
    readable.
    """
    terms = list(terms)
    names = dict(term_names or {})
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
            for run, _label, color in runs:
                for val, style in ((False, "-"), (True, "--")):
                    c = _term_curve(run, key, val)
                    if c is None:
                        continue
                    x, y = c
                    tax.plot(x, y, linestyle=style, color=color, marker=marker if len(x) <= 12 or len(terms) > 1
                             else None, markevery=max(1, len(x) // 12), markersize=3.5)
                    shown.extend(y[np.isfinite(y)].tolist())
        _log_or_linear(tax, shown, "term")
        tax.set_title(terms_title or "loss terms", fontsize=10)
        tax.set_xlabel("epoch")
        tax.xaxis.set_major_locator(MaxNLocator(integer=True))
        tax.grid(True, alpha=0.3, which="both")
        if len(terms) > 1:  # which marker is which term
            handles = [tax.plot([], [], color="0.35", marker=_TERM_MARKERS[i % len(_TERM_MARKERS)], linestyle="-",
                                markersize=4, label=names.get(k, k))[0] for i, k in enumerate(terms)]
            tax.legend(handles=handles, fontsize=8)
        if not shown:
            tax.text(0.5, 0.5, "no terms recorded per epoch", ha="center", va="center", transform=tax.transAxes)
    return png(fig)


def infer_shape(width: int) -> tuple[int, ...]:
    """The sample shape a flat row of ``width`` values most likely has, for figures of runs that did
    not record one: 784 → (1, 28, 28); a square → (1, s, s); three times a square → (3, s, s) (RGB);
    anything else → (width,), a vector."""
    side = math.isqrt(width)
    if side * side == width:
        return (1, side, side)
    if width % 3 == 0:
        side = math.isqrt(width // 3)
        if side * side * 3 == width:
            return (3, side, side)
    return (width,)


def _as_images(arr: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``(k, H, W, C)`` images (C = 1 or 3) from flat ``(k, D)`` rows or ``(k, C, H, W)`` / ``(k, H, W)``."""
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3:
        return a[..., None]
    if a.ndim == 4:
        return a.transpose(0, 2, 3, 1)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"expected images of shape (k, D), (k, H, W) or (k, C, H, W), got {a.shape}")
    shape = tuple(shape) if shape is not None else infer_shape(a.shape[1])
    if len(shape) != 3 or math.prod(shape) != a.shape[1]:
        raise ValueError(f"rows of {a.shape[1]} values are not images of shape {list(shape)}")
    return a.reshape(len(a), *shape).transpose(0, 2, 3, 1)


def recon_grid(rows: Sequence[tuple[str, Any]], n: int = 10, shape: tuple[int, ...] | None = None,
               value_label: str | None = None) -> bytes:
    """A grid of images: one labelled row per ``(label, images)``, ``n`` columns, as PNG bytes.

    ``images`` is flat ``(k, D)`` in the sample ``shape`` (C, H, W) — inferred from D when not
    given (784 → 28×28, see :func:`infer_shape`) — or ``(k, H, W)`` / ``(k, C, H, W)``; the first
    ``min(n, k)`` are shown, grayscale (C = 1) or in colour (C = 3), each cell the same size on the
    page whatever the resolution (8×8 digits are drawn as large blocks, not specks). No axes, every
    row on the same fixed [0, 1] intensity scale (values outside are clipped), so brightness is
    comparable across rows. Vectors (a table, ``shape`` = (D,)) are drawn as heat strips instead:
    one row of cells per sample, one column per feature, on a colour scale shared by all rows,
    with a colour bar titled ``value_label`` (what a colour means; :data:`STRIP_VALUE`).
    """
    rows = [(str(label), images) for label, images in rows]
    if not rows:
        raise ValueError("recon_grid needs at least one row")
    first = np.asarray(rows[0][1])
    if shape is None and first.ndim == 2:
        shape = infer_shape(first.shape[1])
    if shape is not None and len(shape) == 1:
        return _vector_grid([(label, np.asarray(imgs, dtype=np.float32).reshape(len(imgs), -1)) for label, imgs in rows], n,
                            value_label)
    rows = [(label, _as_images(images, shape)) for label, images in rows]
    cols = max(1, min(n, max(len(imgs) for _, imgs in rows)))
    h, w, c = rows[0][1].shape[1:]
    label_w = 0.12 + 0.075 * max(len(label) for label, _ in rows)
    cell = 0.7
    width, height = label_w + cols * cell, len(rows) * cell * max(1.0, h / w) + 0.1
    fig = Figure(figsize=(width, height))
    left = label_w / width
    fig.subplots_adjust(left=left, right=0.995, top=1 - 0.05 / height, bottom=0.05 / height, hspace=0.05)
    # the gap between images scales with them: 2 pixels at 28×28, at least 1 at 8×8
    gap = max(1, round(2 * w / 28))
    cmap = _gray()
    for i, (label, imgs) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        if c == 1:
            strip = np.full((h, cols * (w + gap) - gap), np.nan, dtype=np.float32)
            for j, img in enumerate(imgs[:cols]):
                strip[:, j * (w + gap): j * (w + gap) + w] = img[..., 0]
            ax.imshow(np.clip(strip, 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                      aspect="equal")
        else:  # RGB: white gaps (what NaN shows as in the grayscale strips)
            strip = np.ones((h, cols * (w + gap) - gap, 3), dtype=np.float32)
            for j, img in enumerate(imgs[:cols]):
                strip[:, j * (w + gap): j * (w + gap) + w] = img
            ax.imshow(np.clip(strip, 0.0, 1.0), interpolation="nearest", aspect="equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.text(-0.01, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=9)
    return png(fig)


#: what a heat strip's colour shows by default: a feature's value as the model was given it (and as
#: its reconstruction came out), i.e. after the run's data scaling, not in the file's own units
STRIP_VALUE = "feature value (after the run's scaling)"


def _strip_colorbar(fig: Figure, im: Any, rect: tuple[float, float, float, float], label: str) -> None:
    """The heat strips' colour bar in ``rect`` (figure fractions), titled with what a colour means."""
    cax = fig.add_axes(rect)
    bar = fig.colorbar(im, cax=cax)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)


def _vector_grid(rows: Sequence[tuple[str, np.ndarray]], n: int, value_label: str | None = None) -> bytes:
    """Heat strips of vectors: per labelled row, ``n`` samples × D features on one shared scale,
    and a colour bar saying what the colours mean (``value_label``, default :data:`STRIP_VALUE`)."""
    k = max(1, min(n, max(len(v) for _, v in rows)))
    d = rows[0][1].shape[1]
    vals = np.concatenate([v[:k].ravel() for _, v in rows])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    label_w = 0.12 + 0.075 * max(len(label) for label, _ in rows)
    width = label_w + min(12.0, max(4.0, 0.18 * d)) + 1.3
    height = max(1.7, len(rows) * max(0.5, 0.16 * k) + 0.6)  # 0.45 in at the bottom for the "feature" axis
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=label_w / width, right=1 - 1.3 / width, top=0.97, bottom=0.45 / height, hspace=0.15)
    im = None
    for i, (label, v) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 1, i + 1)
        im = ax.imshow(v[:k], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest", aspect="auto")
        ax.set_yticks([])
        if i < len(rows) - 1:
            ax.set_xticks([])
        else:
            ax.set_xlabel("feature")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.text(-0.01, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=9)
    _strip_colorbar(fig, im, (1 - 1.15 / width, 0.45 / height, 0.15 / width, 1 - 0.45 / height - 0.03),
                    value_label or STRIP_VALUE)
    return png(fig)


def feature_error_plot(feature_mse: Sequence[float] | Sequence[tuple[str, Sequence[float]]],
                       rows: Sequence[tuple[str, Any]] = (), n: int = 10, value_label: str | None = None) -> bytes:
    """For vector data (a table): the mean squared reconstruction error of each feature over the
    test split as bars, and below them (when ``rows`` are given) the first ``n`` test samples and
    their reconstructions as heat strips on one shared scale, with a colour bar titled
    ``value_label`` (default :data:`STRIP_VALUE`). PNG bytes.

    ``feature_mse``: one number per feature, or several labelled series ``[(label, numbers), ...]``
    (e.g. a baseline and a variant), drawn as grouped bars with a legend."""
    first = feature_mse[0] if len(feature_mse) else None
    if isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], str):
        series = [(str(label), np.asarray(v, dtype=float)) for label, v in feature_mse]
    else:
        series = [("", np.asarray(feature_mse, dtype=float))]
    d = len(series[0][1])
    if any(len(v) != d for _, v in series):
        raise ValueError("every feature-error series needs one number per feature, the same features")
    k = 0
    if rows:
        mats = [(str(label), np.asarray(v, dtype=np.float32).reshape(len(v), -1)) for label, v in rows]
        k = max(1, min(n, max(len(v) for _, v in mats)))
    label_w = 1.3 if not rows else max(1.3, 0.2 + 0.065 * max(len(label) for label, _ in rows))
    right = 1.2 if rows else 0.5  # the strips' colour bar and its title sit in the right margin
    width = min(12.0, max(5.0, 0.22 * d * max(1, len(series) * 0.7))) + label_w + right
    # room for the colour bar's scale: at least 1.2 in of strips
    strips = max(1.2, len(rows) * max(0.45, 0.15 * k)) if rows else 0.0
    height = 2.4 + strips + 0.4
    fig = Figure(figsize=(width, height))
    top_h = 2.4 / height
    ax = fig.add_axes((label_w / width, 1 - top_h + 0.45 / height, 1 - (label_w + right) / width,
                       top_h - 0.75 / height))
    bar_w = 0.8 / len(series)
    colors = (_BASE_COLOR, _VAR_COLOR) if len(series) == 2 else tuple(f"C{i}" for i in range(len(series)))
    for i, (label, err) in enumerate(series):
        ax.bar(np.arange(d) - 0.4 + bar_w * (i + 0.5), err, color=colors[i % len(colors)], width=bar_w,
               label=f"{label} (mean {err.mean():.4g})" if label else None)
    ax.set_ylabel("MSE per feature")
    ax.set_xlabel("feature", fontsize=8, labelpad=1)
    if len(series) == 1:
        title = f"reconstruction error of each of the {d} features (test split, mean {series[0][1].mean():.4g})"
    else:
        title = f"reconstruction error of each of the {d} features (test split)"
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.6, d - 0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    if rows:
        vals = np.concatenate([v[:k].ravel() for _, v in mats])
        vals = vals[np.isfinite(vals)]
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        band = (strips - 0.1) / height / len(mats)
        im = None
        for i, (label, v) in enumerate(mats):
            y0 = 1 - top_h - (i + 1) * band
            sax = fig.add_axes((label_w / width, y0 + 0.02 / height, 1 - (label_w + right) / width,
                                band - 0.04 / height))
            im = sax.imshow(v[:k], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest", aspect="auto",
                            extent=(-0.5, d - 0.5, k - 0.5, -0.5))
            sax.set_xlim(-0.6, d - 0.4)
            sax.set_yticks([])
            sax.set_xticks([])
            sax.text(-0.01, 0.5, label, transform=sax.transAxes, ha="right", va="center", fontsize=8)
        bottom = 1 - top_h - len(mats) * band
        _strip_colorbar(fig, im, (1 - (right - 0.15) / width, bottom + 0.02 / height, 0.12 / width,
                                  len(mats) * band - 0.04 / height),
                        value_label or STRIP_VALUE)
    return png(fig)


def paired_grid(rows: Sequence[tuple[str, Any, Any]], headings: tuple[str, str] = ("input", "output"),
                n: int = 5, shape: tuple[int, ...] | None = None, top: tuple[str, Any] | None = None) -> bytes:
    """A compact grid for many settings: one labelled row per ``(label, left images, right images)``,
    the first ``n`` images of each side by side (e.g. a noise level's noisy inputs, then what the
    model made of them), with the two ``headings`` over the halves. ``top`` (optional): a first
    row ``(label, images)`` drawn across the left half only (the clean originals). Images as in
    :func:`recon_grid`; every cell on the same [0, 1] scale. PNG bytes."""
    if not rows:
        raise ValueError("paired_grid needs at least one row")
    first = np.asarray(rows[0][1])
    if shape is None and first.ndim == 2:
        shape = infer_shape(first.shape[1])
    if shape is not None and len(shape) == 1:
        raise ValueError("paired_grid draws images; vectors (a table) have no picture")
    lines = ([(top[0], _as_images(top[1], shape), None)] if top is not None else []) + [
        (str(label), _as_images(a, shape), _as_images(b, shape)) for label, a, b in rows]
    k = max(1, min(n, max(len(a) for _, a, _ in lines)))
    h, w, c = lines[0][1].shape[1:]
    gap = max(1, round(2 * w / 28))
    mid = 3 * gap + w // 2  # the space between the halves: wider than a gap, so the halves read as two blocks
    half = k * (w + gap) - gap
    total = 2 * half + mid
    canvas = np.ones((len(lines) * (h + gap) - gap, total, 3), dtype=np.float32)
    for i, (_, a, b) in enumerate(lines):
        y = i * (h + gap)
        for side, imgs in ((0, a), (half + mid, b)):
            if imgs is None:
                continue
            for j, img in enumerate(imgs[:k]):
                x = side + j * (w + gap)
                canvas[y:y + h, x:x + w] = np.clip(img, 0.0, 1.0)  # (h, w, 1) gray broadcasts to RGB
    label_w = 0.15 + 0.07 * max(len(label) for label, _, _ in lines)
    cell = 0.55  # one image ≈ 0.55 inch whatever its resolution (8×8 digits as blocks, not specks)
    width = label_w + (total / (w + gap)) * cell + 0.1
    height = len(lines) * cell * (h / w) + 0.45
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((label_w / width, 0.05 / height, 1 - (label_w + 0.1) / width, 1 - 0.45 / height))
    ax.imshow(canvas, interpolation="nearest", aspect="equal")
    ax.set_xticks([half / 2, half + mid + half / 2], list(headings), fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_yticks([i * (h + gap) + h / 2 for i in range(len(lines))], [label for label, _, _ in lines], fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return png(fig)


def _gray():
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
    spreads: Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]] | None = None,
    ylims: Mapping[str, tuple[float, float]] | None = None,
    band_label: str = "noise band",
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
    the line (the run-to-run noise, or the tolerance read as no change), its legend entry
    ``band_label``. ``panel_notes`` (optional) adds a line under a panel's title.
    ``spreads`` (optional) maps series names to ``(low, high)``, one pair per value: the range over
    seed replicates, drawn as a shaded band around the line (which is then their mean); it replaces
    that series' ``bands`` entry. ``ylims`` (optional) maps panel names to fixed y-limits (an
    accuracy on [0, 1]). Otherwise each y-axis spans at least :data:`MIN_REL_SPAN` of its numbers'
    size (:func:`sweep_ylim`).
    """
    values = list(values)
    numeric = bool(values) and all(_is_number(v) for v in values)
    if numeric:
        x = np.asarray(values, dtype=float)
        pos = x[x > 0]
        # values from 0 up over decades (an L1 weight 0, 1e-4, 1e-2): linear near 0, logarithmic above
        symlog = (log_x is not False and bool(np.all(x >= 0)) and (x == 0).any() and len(pos) >= 2
                  and pos.max() / pos.min() >= 20)
        if log_x is None:
            log_x = bool(np.all(x > 0)) and x.max() / x.min() >= 20
        elif log_x and not np.all(x > 0):
            log_x = False
    else:
        x = np.arange(len(values), dtype=float)
        log_x = symlog = False

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
        return png(fig)
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
            # values without an order (classes, names): points, no line implying a trend between them
            ax.plot(x, y, marker="o", markersize=4 if numeric else 6, color=color, label=line or None,
                    linestyle="-" if numeric else "none")
            shown.extend(y[np.isfinite(y)].tolist())
            band = (bands or {}).get(name)
            spread = (spreads or {}).get(name)
            if spread is not None:
                lo_s, hi_s = floats(spread[0]), floats(spread[1])
                if len(lo_s) != len(values) or len(hi_s) != len(values):
                    raise ValueError(f"spread of {name!r} needs one low and one high per value")
                ax.fill_between(x, lo_s, hi_s, color=color, alpha=0.2, linewidth=0,
                                label=f"{line + ': ' if line else ''}seed range")
                shown.extend(v for v in np.concatenate([lo_s, hi_s]).tolist() if math.isfinite(v))
                band = None
            if band is not None and math.isfinite(float(band)) and band > 0:
                lo_b, hi_b = y - np.abs(y) * band, y + np.abs(y) * band
                ax.fill_between(x, lo_b, hi_b, color=color, alpha=0.15, linewidth=0,
                                label=band_label)
                shown.extend(lo_b[np.isfinite(lo_b)].tolist() + hi_b[np.isfinite(hi_b)].tolist())
            ref = (baselines or {}).get(name)
            if ref is not None and math.isfinite(float(ref)):
                ax.axhline(float(ref), color=color, linestyle=":", linewidth=1,
                           label=f"{line + ' ' if line else ''}baseline")
                shown.append(float(ref))
        finite = [float(v) for name, _ in lines for v in series[name] if v is not None and math.isfinite(float(v))]
        fixed = (ylims or {}).get(panel)
        if fixed is not None:  # e.g. an accuracy: its whole range, never read as a count
            ax.set_ylim(*fixed)
        else:
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
        elif symlog:
            ax.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.5)
        if not numeric:
            ax.set_xticks(x, [str(v) for v in values])
        elif len(values) <= 8:
            ax.set_xticks(x, [f"{v:g}" for v in x])
            ax.minorticks_off()
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        handles, _labels = ax.get_legend_handles_labels()
        if handles and (any(line for _, line in lines) or baselines or bands or spreads):
            ax.legend(fontsize=7)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    return png(fig)
