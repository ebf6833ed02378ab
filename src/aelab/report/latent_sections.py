"""The report's latent parts: code maps side by side, a table of every run, a curve over one setting.

What belongs here: reading each run's ``codes.npz`` (through :mod:`aelab.latent_io`, never
training or encoding anything), laying the codes out in 2-D (:mod:`aelab.latent`), and the
rows and figures :mod:`aelab.report.render` puts into a study report:

- :func:`pair_map`: a question's baseline and variant codes side by side, coloured by label;
- :func:`gallery` and :func:`overview`: every run's map, and one table of loss, SSIM, probe
  accuracy, active code dimensions and time;
- :func:`quality_rows`: the code-quality rows of a question's table (``metrics.latent``);
- :func:`series`: when a study holds several runs that differ from a question's baseline in the
  one setting its variant changes (exercise 4.1's noise factor over 0.1…1.0), those runs as a
  curve, with a reconstruction row for each value.

Generic: nothing here knows a study, a family or a data set.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .. import latent as L
from .. import numfmt as N
from . import claims as C
from . import figures as F
from . import prose as P
from .records import Codes, sample_shape
from ..plots import latent as LF

#: test codes drawn per map (a seeded subsample; PCA of a few thousand points takes milliseconds)
MAP_POINTS = 2000


def _stochastic(run: Mapping[str, Any]) -> bool:
    return P.code_is_mean(run)


def _panel(run: Mapping[str, Any], arrays: dict, title: str) -> dict:
    z = arrays["test_codes"]
    if P.code_is_discrete(run):  # codebook indices: how often each entry is used, never a map of indices
        return LF.usage_panel(L.code_usage(z, _int(_family_number(run, "codebook_size"))), int(z.shape[1]),
                              title=title)
    idx = L.subsample(len(z), MAP_POINTS, 0)
    labels = arrays["test_labels"][idx] if "test_labels" in arrays else np.zeros(len(idx), dtype=int)
    dims = int(z.shape[1])
    method = "code" if dims <= 2 else "pca"
    return LF.map_panel(method, L.embed_2d(z[idx], method, 0), labels, dims, _stochastic(run), title=title)


def _family_number(run: Mapping[str, Any], key: str) -> Optional[float]:
    try:
        x = C.resolve(run, f"metrics.family.{key}")
    except ValueError:
        return None
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _int(x: Optional[float]) -> Optional[int]:
    return None if x is None else int(x)


def _note(run: Mapping[str, Any]) -> str:
    p, k = _num(run, "probe_accuracy"), _num(run, "knn_accuracy")
    if p is None:
        return ""
    return f"linear probe {p:.2f} · k-NN {k:.2f}" if k is not None else f"linear probe {p:.2f}"


def _num(run: Mapping[str, Any], key: str) -> Optional[float]:
    try:
        x = C.resolve(run, f"metrics.latent.{key}")
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def map_caption(runs: Sequence[Mapping[str, Any]]) -> str:
    chance = next((c for c in (_num(r, "chance") for r in runs) if c is not None), None)
    shape = _shape(*runs)
    one = "sample" if shape is not None and len(shape) == 1 else "image"  # a table's row is no image
    s = (f"Each dot is a test {one}, placed by its code and coloured by its true class (the code itself when it has "
         "two dimensions, else the first two principal components of the code). Look for separate colour groups: "
         "the code keeps what tells the classes apart. One blob, or every dot on one point, means nearly the same "
         f"code for every {one}. The axes are each code's own units, so compare shapes, not scales.")
    if chance is not None:
        s += (f" Under each map: how often a linear classifier (probe) and a 5-nearest-neighbour vote read the label "
              f"from the code (chance {chance:.2f}).")
    return s


def pair_map(codes: Codes, b: Mapping[str, Any], v: Mapping[str, Any], labels: Sequence[str]) -> Optional[bytes]:
    """Baseline and variant test codes side by side, or None when neither run saved codes."""
    panels, notes = [], []
    for run, label in ((b, labels[0]), (v, labels[1])):
        arrays = codes.get(run)
        if arrays is not None and arrays["test_codes"].size:
            panels.append(_panel(run, arrays, label))
            notes.append(_note(run))
    if not panels:
        return None
    return LF.latent_maps(panels, notes=notes, panel_size=3.6, class_names=codes.names(b, v))


def gallery(codes: Codes, runs: Mapping[str, Mapping[str, Any]]) -> Optional[bytes]:
    """Every run's map in one figure (4 per row), or None when no run saved codes."""
    panels, notes = [], []
    for key, run in runs.items():
        arrays = codes.get(run)
        if arrays is not None and arrays["test_codes"].size:
            panels.append(_panel(run, arrays, str(run.get("name", key))))
            notes.append(_note(run))
    if not panels:
        return None
    return LF.latent_maps(panels, notes=notes, ncols=min(4, len(panels)), panel_size=3.0,
                          class_names=codes.names(*runs.values()))


_QUALITY = [("linear-probe accuracy (code)", "probe_accuracy"), ("k-NN accuracy (code)", "knn_accuracy"),
            ("k-means ARI with the labels", "ari"), ("k-means NMI with the labels", "nmi"),
            ("code dimensions in use (variance > 0.01 for μ, else > 1% of the top one)", "active_dims")]


def quality_rows(b: Mapping[str, Any], v: Mapping[str, Any]) -> list[dict[str, str]]:
    """The question table's rows for what the code holds; none when neither run recorded it."""
    if _num(b, "probe_accuracy") is None and _num(v, "probe_accuracy") is None:
        return []
    rows = []
    for label, key in _QUALITY:
        bx, vx = _num(b, key), _num(v, key)
        count = key == "active_dims"
        rows.append({"label": label, "baseline": N.fmt_num(int(bx) if count and bx is not None else bx, 3),
                     "variant": N.fmt_num(int(vx) if count and vx is not None else vx, 3),
                     "ratio": N.fmt_change(vx, bx, "count" if count else "diff")})
    chance = _num(v, "chance") or _num(b, "chance")
    if chance is not None:
        rows.append({"label": "chance accuracy (the most frequent class)", "baseline": N.fmt_num(_num(b, "chance"), 3),
                     "variant": N.fmt_num(_num(v, "chance"), 3), "ratio": "—"})
    return rows


def _cell(run: Mapping[str, Any], path: str, digits: int = 4) -> str:
    try:
        x = C.resolve(run, path)
    except ValueError:
        return "—"
    return N.fmt_num(x, digits)


def _precision_recall(run: Mapping[str, Any]) -> str:
    p, r = _cell(run, "metrics.samples.precision", 2), _cell(run, "metrics.samples.recall", 2)
    return "—" if p == "—" else f"{p} / {r}"


def overview(runs: Mapping[str, Mapping[str, Any]], seconds: Callable[[Mapping[str, Any]], Optional[float]],
             group: Callable[[Mapping[str, Any]], Optional[list]]) -> dict[str, Any]:
    """One row per run: family, data set, epochs, final val loss, test BCE per pixel, SSIM, probe
    and k-NN accuracy, active code dimensions, the quality of a generative model's prior samples
    (``metrics.samples``: Fréchet distance, precision / recall), training time (its group's; marked
    when shared). A column no run has a value in is left out."""
    columns = ["run", "family", "data", "epochs", "final val loss", "test BCE (per pixel)", "SSIM",
               "linear probe", "k-NN", "active code dims", "prior samples: Fréchet distance",
               "prior samples: precision / recall", "training time (s)"]
    rows = []
    for key, run in runs.items():
        cfg = run.get("config") or {}  # a JSON object where recorded (checked as results were read)
        model, data = cfg.get("model") or {}, cfg.get("data") or {}
        hist = run.get("history") or {}
        secs, grp = seconds(run), group(run)
        t = "—" if secs is None else N.fmt_num(secs, 3) + (f" ({len(grp)} models)" if grp and len(grp) > 1 else "")
        active = _num(run, "active_dims")
        units = None
        try:
            units = int(C.resolve(run, "metrics.latent.dims"))
        except ValueError:
            pass
        rows.append({"key": str(key), "cells": [
            str(run.get("name", key)), str(model.get("family", "ae")), str(data.get("dataset", "—")),
            str(len(hist.get("loss") or [])) if hist.get("loss") else "—",
            _cell(run, "final.val_loss"), _cell(run, "metrics.bce"), _cell(run, "metrics.ssim", 3),
            _cell(run, "metrics.latent.probe_accuracy", 3), _cell(run, "metrics.latent.knn_accuracy", 3),
            "—" if active is None else f"{int(active)}" + (f" of {units}" if units else ""),
            _cell(run, "metrics.samples.frechet", 3), _precision_recall(run), t]})
    keep = [i for i in range(len(columns)) if any(r["cells"][i] != "—" for r in rows)]
    return {"columns": [columns[i] for i in keep],
            "rows": [{"key": r["key"], "cells": [r["cells"][i] for i in keep]} for r in rows]}


def series(runs: Mapping[str, Mapping[str, Any]], bkey: str, vkey: str) -> Optional[tuple[str, list]]:
    """``(setting, [(value, run key), ...] sorted by value)`` when the variant changes one numeric
    setting of the baseline and at least three runs of the study (baseline and variant included)
    differ from the baseline in that setting alone; else None."""
    b, v = runs[bkey], runs[vkey]
    changes = P.config_changes(b, v)
    if len(changes) != 1:
        return None
    key = changes[0][0]

    def value(run: Mapping[str, Any]) -> Any:
        node: Any = run.get("config")
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    pts = []
    for k, r in runs.items():
        ch = P.config_changes(b, r)
        if k == bkey or (len(ch) == 1 and ch[0][0] == key):
            x = value(r)
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                pts.append((x, k))
    if len(pts) < 3:
        return None
    return key, sorted(pts)


def series_figures(runs: Mapping[str, Mapping[str, Any]], key: str, pts: list, samples: Callable,
                   bkey: str, vkey: str) -> dict[str, Any]:
    """The curve over ``key`` (val loss or its reconstruction part, SSIM, denoised SSIM and the noisy
    input's own SSIM, probe accuracy) and a reconstruction row per value."""
    values = [x for x, _ in pts]
    rs = [runs[k] for _, k in pts]
    penal = P.has_penalty(*rs)
    s: dict[str, list] = {("val loss, reconstruction part" if penal else "val loss"): [P.recon_val_loss(r) for r in rs]}
    noisy = any(_has(r, "metrics.noisy.ssim") for r in rs)
    if noisy:
        s["SSIM/clean input"] = [_val(r, "metrics.ssim") for r in rs]
        s["SSIM/noisy input, denoised"] = [_val(r, "metrics.noisy.ssim") for r in rs]
        s["SSIM/noisy input itself"] = [_val(r, "metrics.noisy.input_ssim") for r in rs]
    else:
        s["SSIM"] = [_val(r, "metrics.ssim") for r in rs]
    if any(_num(r, "probe_accuracy") is not None for r in rs):
        s["linear-probe accuracy"] = [_num(r, "probe_accuracy") for r in rs]
    short = key.rsplit(".", 1)[-1]
    plot = F.sweep_plot(values, s, key, ylims={"linear-probe accuracy": ACCURACY_AXIS})
    shape = _shape(*rs)
    recon, recon_caption = _series_recon(runs, pts, samples, bkey, vkey, short, shape)
    caption = (f"Every run of this study that differs from the baseline only in {key}, by value. "
               + ("Left: the val loss (on clean inputs, as trained). SSIM panel: the denoised output compared with "
                  "the clean image, beside the noisy input's own SSIM — the gap between those two lines is what "
                  "denoising recovers. " if noisy else "")
               + ("Linear-probe accuracy: how well the code tells the classes apart. " if "linear-probe accuracy" in s
                  else "") + "Each y-axis spans at least a fifth of its values, so small wiggles stay small.")
    return {"plot": plot, "recon": recon, "recon_caption": recon_caption, "caption": caption, "key": key,
            "value_list": ", ".join(f"{x:g}" for x in values), "n": len(values)}


#: the y-range of an accuracy panel: all of it, so that 0.98 and 1.0 do not look far apart (nor 1.0 like a count)
ACCURACY_AXIS = (0.0, 1.02)


def _shape(*runs: Mapping[str, Any]) -> Optional[tuple[int, ...]]:
    return sample_shape(*runs)


def _series_recon(runs: Mapping[str, Mapping[str, Any]], pts: list, samples: Callable, bkey: str, vkey: str,
                  short: str, shape: Optional[tuple[int, ...]]) -> tuple[Optional[bytes], str]:
    """The reconstructions over a series: for denoising runs one compact row per value (the noisy
    inputs of the first test images beside what the model made of them), else one row per value;
    for vectors (a table) the per-feature error of each value instead. ``(png or None, caption)``."""
    got = [(x, k, samples(runs[k])) for x, k in pts]
    got = [(x, k, smp) for x, k, smp in got if smp is not None]
    if not got:
        return None, ""

    def label(x: Any, k: str) -> str:
        return f"{short}={x:g}" + (" (baseline)" if k == bkey else " (variant)" if k == vkey else "")

    if shape is not None and len(shape) == 1:
        errs = [(label(x, k), (runs[k].get("metrics") or {}).get("feature_mse")) for x, k, _ in got]
        errs = [(lab, e) for lab, e in errs if isinstance(e, list) and e]
        if not errs:
            return None, ""
        return (F.feature_error_plot(errs), f"The mean squared reconstruction error of each feature over the test "
                f"split, one bar colour for each value of {short}.")
    noisy = [(x, k, smp) for x, k, smp in got if "noisy" in smp and "recon_noisy" in smp]
    if len(noisy) >= 2:
        n = 5
        rows = [(label(x, k), smp["noisy"], smp["recon_noisy"]) for x, k, smp in noisy]
        clean = [(x, k, smp) for x, k, smp in got if k not in {kk for _, kk, _ in noisy}]
        top = ("clean original", got[0][2]["original"])
        if clean:  # a noise-free run of the series: its clean inputs and outputs head the grid
            x0, k0, smp0 = clean[0]
            rows.insert(0, (label(x0, k0), smp0["original"], smp0["recon"]))
            top = None
        png = F.paired_grid(rows, ("what the model was given", "what it made of it"), n=n, shape=shape, top=top)
        return png, (f"The first {n} test images at each value of {short}, one row per value: on the left the input "
                     "the model was given (the clean image plus noise), on the right its output. Read down a column "
                     "to see the same image under more and more noise.")
    rows = [("original", got[0][2]["original"])]
    for x, k, smp in got:
        if "noisy" in smp and "recon_noisy" in smp:
            rows.append((f"{label(x, k)}: input", smp["noisy"]))
            rows.append((f"{short}={x:g}: output", smp["recon_noisy"]))
        else:
            rows.append((label(x, k), smp["recon"]))
    return F.recon_grid(rows, shape=shape), (f"The first 10 test images, then for each value of {short} what the "
                                             "model made of them, all on one brightness scale.")


def _has(run: Mapping[str, Any], path: str) -> bool:
    return _val(run, path) is not None


def _val(run: Mapping[str, Any], path: str) -> Optional[float]:
    try:
        x = C.resolve(run, path)
    except ValueError:
        return None
    return x if math.isfinite(x) else None
