"""Latent-space figures: maps of codes coloured by label, image rows from decoded codes, manifold grids.

Only drawing belongs here: every function takes arrays already computed (by :mod:`aelab.latent`,
:mod:`aelab.runs.codes` and :mod:`aelab.analysis.latent`, or loaded by the report) and returns PNG
bytes, drawn with matplotlib's object API on the Agg canvas (no pyplot state), as
:mod:`aelab.plots.figures`.
Images are flat samples of a given shape ``(C, H, W)``: one channel is drawn in gray, three in
colour; vectors (a table's rows) have no picture, and callers skip the image figures for them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from .figures import DPI, png

__all__ = ["image_like", "legend_name", "map_panel", "usage_panel", "latent_maps", "image_rows", "manifold",
           "code_histogram"]

_METHOD_TITLES = {"code": "the code itself", "pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def image_like(shape: Sequence[int]) -> bool:
    """Whether samples of ``shape`` can be drawn as pictures: (1, H, W) or (3, H, W)."""
    return len(shape) == 3 and shape[0] in (1, 3)


def _picture(flat: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """One flat sample → (H, W) gray or (H, W, 3) colour, clipped to [0, 1]."""
    c, h, w = shape
    a = np.clip(np.asarray(flat, dtype=np.float32).reshape(c, h, w), 0.0, 1.0)
    return a[0] if c == 1 else np.transpose(a, (1, 2, 0))


def _class_colors(labels: Sequence[Any]) -> dict[Any, Any]:
    classes = sorted({x.item() if hasattr(x, "item") else x for x in labels})
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(classes)}


def legend_name(label: Any, class_names: Sequence[str] = ()) -> str:
    """A label as the legend shows it: its class's name when the data set names its classes."""
    if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(class_names):
        return str(class_names[int(label)])
    return str(label)


def map_panel(method: str, points: np.ndarray, labels: np.ndarray, dims: int, stochastic: bool = False,
              title: Optional[str] = None) -> dict[str, Any]:
    """A panel of :func:`latent_maps`: the 2-D ``points`` of one run's test codes and their labels,
    with the axis names and a title that say what was drawn."""
    code = "μ" if stochastic else "code"
    if method == "code":
        what = f"the {dims}-D {code} itself" if dims == 2 else f"the {dims}-D {code} (y = 0)"
        xl, yl = (f"{code} dimension 1", f"{code} dimension 2" if dims == 2 else "")
    else:
        name = _METHOD_TITLES.get(method, method)
        what = f"{name} of the {dims}-D {code}"
        xl, yl = (f"{name} 1", f"{name} 2") if method == "pca" else (f"{name} 1 (no units)", f"{name} 2 (no units)")
    return {"method": method, "points": np.asarray(points), "labels": np.asarray(labels),
            "title": f"{title}\n{what}" if title else what, "xlabel": xl, "ylabel": yl}


def usage_panel(counts: Sequence[int], positions: int, title: Optional[str] = None) -> dict[str, Any]:
    """A panel of :func:`latent_maps` for a *discrete* code (codebook indices): instead of a map, the
    histogram of how often each codebook entry is used over the test codes (``positions`` indices per
    image). Indices are names, not coordinates, so they are never laid out in 2-D."""
    c = np.asarray(counts, dtype=np.int64)
    used = int((c > 0).sum())
    what = f"codebook entries used: {used} of {len(c)} ({positions} indices per image)"
    return {"method": "usage", "counts": c, "points": np.zeros((0, 2)), "labels": np.zeros(0, dtype=int),
            "title": f"{title}\n{what}" if title else what, "xlabel": "codebook entry (index)",
            "ylabel": "uses over the test codes"}


def _draw_usage(ax, c: np.ndarray) -> None:
    ax.bar(np.arange(len(c)), c, width=1.0, color="#4c72b0", linewidth=0)
    dead = np.flatnonzero(c == 0)
    if len(dead):
        ax.plot(dead, np.zeros(len(dead)), "|", color="#aa2222", markersize=6, label="never used")
        ax.text(0.98, 0.95, f"{len(dead)} dead entries (red ticks)", transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="#aa2222", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    ax.set_xlim(-0.5, len(c) - 0.5)


def code_histogram(counts: Sequence[int], positions: int, title: Optional[str] = None) -> bytes:
    """The histogram of codebook usage (:func:`usage_panel`) alone, as PNG bytes."""
    return latent_maps([usage_panel(counts, positions)], title=title, panel_size=4.5)


def _thumb_points(points: np.ndarray, labels: np.ndarray, per_class: int = 1) -> list[int]:
    """For each class, the point nearest the median of its class: where a reader looks for it."""
    out = []
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        med = np.median(points[idx], axis=0)
        d = np.linalg.norm(points[idx] - med, axis=1)
        out.extend(int(i) for i in idx[np.argsort(d)[:per_class]])
    return out


def _place_boxes(anchors: np.ndarray, size: float) -> np.ndarray:
    """Centres (axes fraction) for square boxes of side ``size`` near each anchor, none overlapping:
    a box stays on its anchor when there is room, else it moves to the nearest free spot on rings
    around it (kept inside the axes). Greedy, in the given order; deterministic."""
    placed: list[np.ndarray] = []
    lo, hi = size / 2, 1 - size / 2
    angles = np.deg2rad(np.arange(0, 360, 20))
    for a in np.asarray(anchors, dtype=float):
        home = np.clip(a, lo, hi)
        spot = None
        for r in np.arange(0.0, 1.5, size / 3):
            for t in ([0.0] if r == 0 else angles):
                c = np.clip(home + r * np.array([math.cos(t), math.sin(t)]), lo, hi)
                if all(np.max(np.abs(c - q)) >= size for q in placed):
                    spot = c
                    break
            if spot is not None:
                break
        placed.append(home if spot is None else spot)
    return np.array(placed).reshape(-1, 2)


def latent_maps(panels: Sequence[Mapping[str, Any]], *, thumbs: Optional[np.ndarray] = None,
                image_shape: Optional[Sequence[int]] = None, title: Optional[str] = None, ncols: Optional[int] = None,
                panel_size: float = 4.0, notes: Optional[Sequence[str]] = None,
                class_names: Sequence[str] = ()) -> bytes:
    """Scatter plots of 2-D codes coloured by label, side by side, one legend for all, as PNG bytes.

    ``panels``: :func:`map_panel` dicts. ``thumbs`` (optional, ``(N, D)`` images in the order of
    every panel's points, with ``image_shape``): a small picture of one image per class is drawn
    at that image's point (the one nearest its class's median), so a reader sees which classes
    lie where. ``notes``: a line under each panel (e.g. its probe accuracy). ``class_names``: the
    data set's names of its classes (label ``i`` is ``class_names[i]``: a CSV's label values, an
    image folder's sub-folder names), shown in the legend instead of the label numbers.
    """
    if not panels:
        raise ValueError("latent_maps needs at least one panel")
    n = len(panels)
    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    colors = _class_colors([x for p in panels for x in np.asarray(p["labels"]).tolist()])
    fig = Figure(figsize=(panel_size * ncols + 1.3, panel_size * nrows + (0.5 if title else 0.1)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    draw_thumbs = thumbs is not None and image_shape is not None and image_like(image_shape)
    for k, p in enumerate(panels):
        ax = axes[k // ncols][k % ncols]
        pts, lab = np.asarray(p["points"], dtype=float), np.asarray(p["labels"])
        if p.get("method") == "usage":  # a discrete code: its codebook histogram, not a map
            _draw_usage(ax, np.asarray(p["counts"]))
            pts = np.zeros((0, 2))
        ax.scatter(pts[:, 0], pts[:, 1], c=[colors[x] for x in lab.tolist()], s=5 if len(pts) > 500 else 12,
                   alpha=0.7, linewidths=0, rasterized=True)
        if draw_thumbs and len(pts) == len(thumbs):
            gray = image_shape[0] == 1
            chosen = _thumb_points(pts, lab)
            # where each thumbnail goes, in axes fractions: on its point when free, else moved aside with a
            # line to its point, so that no two overlap (a box is ~18 pt of image plus its frame)
            span_x = np.ptp(pts[:, 0]) or 1.0
            span_y = np.ptp(pts[:, 1]) or 1.0
            margin = 0.05  # matplotlib's default data margin on each side
            frac = np.column_stack([(pts[chosen, 0] - pts[:, 0].min()) / span_x, (pts[chosen, 1] - pts[:, 1].min()) / span_y])
            frac = (frac + margin) / (1 + 2 * margin)
            size = 1.15 * (18.0 * DPI / 72 + 8) / (DPI * 0.78 * panel_size)
            spots = _place_boxes(frac, size)
            for i, anchor, spot in zip(chosen, frac, spots):
                img = OffsetImage(_picture(thumbs[i], image_shape), cmap="gray_r" if gray else None,
                                  zoom=18.0 / max(image_shape[1:]))
                moved = bool(np.max(np.abs(spot - anchor)) > 1e-9)
                box = AnnotationBbox(img, (pts[i, 0], pts[i, 1]), xybox=tuple(spot), boxcoords="axes fraction",
                                     frameon=True, pad=0.1,
                                     bboxprops={"edgecolor": colors[lab[i].item()], "linewidth": 1.5},
                                     arrowprops={"arrowstyle": "-", "color": colors[lab[i].item()], "linewidth": 1}
                                     if moved else None)
                ax.add_artist(box)
        if len(pts) and np.ptp(pts[:, 0]) == 0 and np.ptp(pts[:, 1]) == 0:
            ax.text(0.5, 0.08, "every image has the same code", transform=ax.transAxes, ha="center", fontsize=9,
                    color="#aa2222")
        t = p["title"] + (f"\n{notes[k]}" if notes and k < len(notes) and notes[k] else "")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel(p["xlabel"], fontsize=8)
        ax.set_ylabel(p["ylabel"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25, axis="y" if p.get("method") == "usage" else "both")
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, markersize=6, label=legend_name(lab, class_names))
               for lab, c in colors.items()]
    if handles:  # none when every panel is a codebook histogram
        fig.legend(handles=handles, title="class" if class_names else "label", loc="outside right center", fontsize=8,
                   title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return png(fig)


def image_rows(rows: Sequence[tuple[str, np.ndarray]], shape: Sequence[int], *, title: Optional[str] = None,
               columns: Optional[Sequence[str]] = None) -> bytes:
    """Rows of images (``(label, (k, D) images)``), each picture drawn at the same [0, 1] scale; an
    optional title and column headings (e.g. "start" … "end"), as PNG bytes."""
    if not rows:
        raise ValueError("image_rows needs at least one row")
    if not image_like(shape):
        raise ValueError(f"samples of shape {list(shape)} are not pictures; no image rows to draw")
    cols = max(len(r[1]) for r in rows)
    label_w = 0.2 + 0.075 * max(len(lab) for lab, _ in rows)
    cell = 0.75
    head = (0.35 if title else 0) + (0.25 if columns else 0)
    width, height = label_w + cols * cell, len(rows) * cell + head + 0.1
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=label_w / width, right=0.995, top=1 - head / height, bottom=0.05 / height,
                        hspace=0.05)
    # one Axes per row, its pictures side by side in one array (white gaps): a grid of one Axes per picture
    # spent most of aelab latent's time building and laying out Axes (111 of them for two figures)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    c, h, w = shape
    gap = max(1, round(h / 14))
    for i, (label, imgs) in enumerate(rows):
        canvas = np.ones((h, cols * w + (cols - 1) * gap) if c == 1 else (h, cols * w + (cols - 1) * gap, 3),
                         dtype=np.float32)
        for j in range(min(cols, len(imgs))):
            canvas[:, j * (w + gap):j * (w + gap) + w] = _picture(imgs[j], shape)
        ax = axes[i]
        ax.imshow(canvas, cmap="gray" if c == 1 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_yticks([])
        ax.set_xticks([])
        if i == 0 and columns:
            ticks = [(j * (w + gap) + (w - 1) / 2, columns[j]) for j in range(min(cols, len(columns))) if columns[j]]
            ax.set_xticks([t for t, _ in ticks], [n for _, n in ticks], fontsize=8)
            ax.xaxis.tick_top()
            ax.tick_params(axis="x", length=0, pad=2)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return png(fig)


def manifold(images: np.ndarray, xs: np.ndarray, ys: np.ndarray, shape: Sequence[int], prior: bool = True) -> bytes:
    """A 2-D latent decoded on a grid (keras.io's VAE figure): ``images`` in reading order
    (``len(ys)`` rows top to bottom, ``len(xs)`` columns), tiled, with the code values on the axes."""
    c, h, w = shape
    n, m = len(ys), len(xs)
    canvas = np.zeros((n * h, m * w) if c == 1 else (n * h, m * w, 3), dtype=np.float32)
    for i in range(n):
        for j in range(m):
            canvas[i * h:(i + 1) * h, j * w:(j + 1) * w] = _picture(images[i * m + j], shape)
    fig = Figure(figsize=(7.4, 7.4), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray" if c == 1 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    def tick(v: float) -> str:  # the middle quantile is 0 up to rounding: print it as 0
        return "0" if abs(v) < 1e-9 else f"{v:.2g}"

    ax.set_xticks([(j + 0.5) * w for j in range(m)], [tick(x) for x in xs], fontsize=7, rotation=90)
    ax.set_yticks([(i + 0.5) * h for i in range(n)], [tick(y) for y in ys], fontsize=7)
    how = "at the prior's 5 %…95 % quantiles" if prior else "over the 2nd…98th percentile of the test codes"
    ax.set_xlabel("z₁ (code dimension 1)", fontsize=9)
    ax.set_ylabel("z₂ (code dimension 2)", fontsize=9)
    ax.set_title(f"the decoder over a {m} × {n} grid of codes, {how}", fontsize=10)
    return png(fig)
