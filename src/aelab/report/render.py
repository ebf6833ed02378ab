"""Report assembly: read a study's (or sweep's) saved artifacts and write report.html + report.md.

What belongs here: loading ``results.json`` and each run's ``samples.npz`` (paths relative to the
study directory, never training anything), arranging numbers into tables, asking
:mod:`aelab.report.claims` for verdicts and observations and :mod:`aelab.report.figures` for
PNGs, and rendering the Jinja2 templates in ``report/templates/``. Every output is written
atomically (:mod:`aelab._atomic`): ``figures/*.png`` first, then ``report.md``, then the single
self-contained ``report.html`` (figures embedded as ``data:image/png;base64`` URIs, inline CSS,
no scripts, no external resources).

Entry points: :func:`build_report` for a study directory and :func:`build_sweep_report` for a
sweep directory. Both return ``{"html": Path, "md": Path, "figures": [Path, ...]}``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import statistics
import zipfile
from pathlib import Path
from typing import Any, Mapping

import jinja2
import numpy as np

from .. import _atomic
from ..errors import ConfigError, DataError
from . import claims as C
from . import figures as F

__all__ = ["build_report", "build_sweep_report", "METHOD_NOTES"]

#: The seed's protocol flaws (see the seed guide); every study report states them.
METHOD_NOTES = {
    "scaling": (
        "The seed min–max scales the test set with statistics fitted on the test set itself "
        "(scaler.fit_transform(x_test) after fitting on the training set), so every validation loss "
        "and test metric is computed on images scaled differently from the training images."
    ),
    "noisy_validation": (
        "Question 4.1 trains on noisy → clean pairs but validates on clean → clean test images, while "
        "the reconstructions it shows are of noisy test inputs: its val loss measures clean-input "
        "reconstruction, not denoising. The 'noisy:' rows of the tables measure what the figure shows "
        "(reconstruction of the noisy test input compared with the clean image)."
    ),
    "section4_wording": (
        "Section 4's introduction says \"sparse autoencoder\" where it means the denoising "
        "autoencoder; this report calls it the denoising autoencoder."
    ),
}

_TEMPLATES = jinja2.PackageLoader("aelab.report", "templates")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _load_results(directory: Path) -> dict[str, Any]:
    path = directory / "results.json"
    if not path.is_file():
        raise DataError(f"{path} not found: run the study (or sweep) first, or point at its output directory")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc}); re-run the study to rewrite it") from exc
    if not isinstance(results, dict) or not isinstance(results.get("runs"), dict):
        raise DataError(f"{path} has no 'runs' mapping: it is not an aelab results.json")
    for key, run in results["runs"].items():
        if not isinstance(run, dict):
            raise DataError(f"{path}: run {key!r} is not a record; re-run the study to rewrite it")
    return results


class _Samples:
    """Loads each run's samples.npz once; a missing file is reported in the page, not fatal."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.cache: dict[str, dict[str, np.ndarray] | None] = {}
        self.missing: list[str] = []

    def get(self, run: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        rel = run.get("dir")
        if not isinstance(rel, str):
            self._note(f"run {run.get('name', '?')!r} has no 'dir' in results.json")
            return None
        if rel in self.cache:
            return self.cache[rel]
        path = self.directory / rel / "samples.npz"
        arrays: dict[str, np.ndarray] | None = None
        if not path.is_file():
            self._note(f"{Path(rel) / 'samples.npz'} not found: reconstructions of this run are not shown")
        else:
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{path} is corrupt ({exc}); re-run that run to rewrite it") from exc
            if "original" not in arrays or "recon" not in arrays:
                raise DataError(f"{path} lacks 'original'/'recon' arrays; re-run that run to rewrite it")
        self.cache[rel] = arrays
        return arrays

    def _note(self, msg: str) -> None:
        if msg not in self.missing:
            self.missing.append(msg)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _get(run: Mapping[str, Any], path: str) -> float | None:
    try:
        return C.resolve(run, path)
    except ValueError:
        return None


def _slug(text: str, taken: set[str]) -> str:
    base = "q" + (re.sub(r"[^A-Za-z0-9]+", "_", str(text)).strip("_") or "x")
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}_{i}", i + 1
    taken.add(slug)
    return slug


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt_seconds(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s):
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{s:.0f} s ({h} h {m} min {sec} s)" if h else f"{s:.0f} s ({m} min {sec} s)"


def _ratio_str(v: float | None, b: float | None) -> str:
    if v is None or b is None:
        return "—"
    r = C.ratio(v, b)
    return "—" if math.isnan(r) else C.fmt_ratio(r)


def _has_noisy(run: Mapping[str, Any]) -> bool:
    return isinstance((run.get("metrics") or {}).get("noisy"), Mapping)


def _epochs(run: Mapping[str, Any]) -> int | None:
    loss = (run.get("history") or {}).get("loss")
    return len(loss) if isinstance(loss, list) else None


def _train_seconds(run: Mapping[str, Any]) -> float | None:
    secs = (run.get("history") or {}).get("epoch_seconds")
    if isinstance(secs, list) and secs and all(isinstance(s, (int, float)) for s in secs):
        return float(sum(secs))
    return None


def _dead_units(run: Mapping[str, Any]) -> str:
    d, u = _get(run, "metrics.code.dead_units"), _get(run, "metrics.code.units")
    if d is None:
        return "—"
    return C.units_text(d, u).replace(" of ", " / ")


def _metric_docs() -> list[dict[str, str]]:
    """The metric definitions of :mod:`aelab.metrics`, as (name, text) rows for the appendix."""
    from aelab.metrics import METRIC_DOCS  # imported here: the metrics module pulls in torch

    rows = []
    for name, doc in METRIC_DOCS.items():
        if isinstance(doc, Mapping):
            text = "; ".join(f"{k}: {v}" for k, v in doc.items())
        else:
            text = " ".join(str(doc).split())
        rows.append({"name": str(name), "text": text})
    return rows


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
_METRIC_ROWS: list[tuple[str, str]] = [
    ("final train loss", "final.loss"),
    ("final val loss", "final.val_loss"),
    ("BCE", "metrics.bce"),
    ("MSE", "metrics.mse"),
    ("PSNR (dB)", "metrics.psnr"),
    ("SSIM", "metrics.ssim"),
    ("mean activation", "metrics.code.mean_activation"),
    ("zero fraction", "metrics.code.zero_fraction"),
    ("diversity", "metrics.diversity"),
]
_NOISY_ROWS: list[tuple[str, str]] = [
    ("noisy: BCE", "metrics.noisy.bce"),
    ("noisy: MSE", "metrics.noisy.mse"),
    ("noisy: PSNR (dB)", "metrics.noisy.psnr"),
    ("noisy: SSIM", "metrics.noisy.ssim"),
    ("noisy: diversity", "metrics.noisy.diversity"),
    ("noisy input itself: PSNR (dB)", "metrics.noisy.input_psnr"),
    ("noisy input itself: SSIM", "metrics.noisy.input_ssim"),
]


def _compare_rows(b: Mapping[str, Any], v: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows of the baseline-vs-variant table: label, baseline, variant, ratio."""
    rows: list[dict[str, str]] = []

    def add(label: str, bv: Any, vv: Any, bs: str | None = None, vs: str | None = None, with_ratio: bool = True):
        rows.append({
            "label": label,
            "baseline": bs if bs is not None else C.fmt_num(bv),
            "variant": vs if vs is not None else C.fmt_num(vv),
            "ratio": _ratio_str(vv, bv) if with_ratio else "—",
        })

    for label, path in _METRIC_ROWS[:2]:
        add(label, _get(b, path), _get(v, path))
    bp, vp = _get(b, "final.penalty"), _get(v, "final.penalty")
    if (bp or 0) > 0 or (vp or 0) > 0:
        add("final train penalty (in the loss)", bp, vp)
    for label, path in _METRIC_ROWS[2:6]:
        add(label, _get(b, path), _get(v, path))
    add("dead code units", _get(b, "metrics.code.dead_units"), _get(v, "metrics.code.dead_units"),
        _dead_units(b), _dead_units(v))
    for label, path in _METRIC_ROWS[6:]:
        add(label, _get(b, path), _get(v, path))
    if _has_noisy(b) or _has_noisy(v):
        add("noise factor", C.noise_factor(b), C.noise_factor(v))
        for label, path in _NOISY_ROWS:
            add(label, _get(b, path), _get(v, path))
    add("epochs", _epochs(b), _epochs(v), with_ratio=False)
    add("training time (s)", _train_seconds(b), _train_seconds(v))
    return rows


def _replicates(results: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    block = results.get("replicates")
    if not isinstance(block, Mapping) or not isinstance(block.get("runs"), Mapping):
        return []
    reps = block["runs"].get(key)
    return list(reps) if isinstance(reps, list) else []


def _across_seeds(results: Mapping[str, Any], claim: Mapping[str, Any], bkey: str, vkey: str) -> str:
    """"confirmed for k of K seeds" when the study trained seed replicates, else ""."""
    bs, vs = _replicates(results, bkey), _replicates(results, vkey)
    if len(bs) < 2 or len(bs) != len(vs):
        return ""
    ok = sum(C.evaluate_claim(claim, b, v)["status"] == C.CONFIRMED for b, v in zip(bs, vs))
    return f"confirmed for {ok} of {len(bs)} seeds"


def _seed_rows(results: Mapping[str, Any], bkey: str, vkey: str) -> list[dict[str, str]]:
    """Min–max over the seed replicates of the final losses: how much the seed alone moves them."""
    bs, vs = _replicates(results, bkey), _replicates(results, vkey)
    if len(bs) < 2 or len(vs) < 2:
        return []
    rows = []
    for label, path in (("final train loss", "final.loss"), ("final val loss", "final.val_loss")):
        def span(reps):
            vals = [x for x in (_get(r, path) for r in reps) if x is not None]
            return f"{C.fmt_num(min(vals))} – {C.fmt_num(max(vals))}" if vals else "—"
        rows.append({"label": f"{label}, {len(bs)} seeds (min – max)", "baseline": span(bs), "variant": span(vs),
                     "ratio": "—"})
    return rows


def _recon_rows(
    b_samples: Mapping[str, np.ndarray] | None,
    v_samples: Mapping[str, np.ndarray] | None,
    b_run: Mapping[str, Any],
    v_run: Mapping[str, Any],
) -> list[tuple[str, np.ndarray]]:
    """The rows of a question's reconstruction figure.

    originals / baseline / variant; for denoising runs: clean / noisy / baseline denoised / variant
    denoised, and when the two runs saw different noisy inputs (different noise factors) each
    run's noisy input is shown above its own denoised row.
    """
    first = b_samples or v_samples
    if first is None:
        return []

    def noisy(s: Mapping[str, np.ndarray] | None) -> bool:
        return s is not None and "noisy" in s and "recon_noisy" in s

    def tag(run: Mapping[str, Any]) -> str:
        nf = C.noise_factor(run)
        return f" ({C.fmt_num(nf, 3)})" if nf is not None else ""

    rows: list[tuple[str, np.ndarray]] = [("original", first["original"])]
    shared = (
        noisy(b_samples) and noisy(v_samples)
        and b_samples["noisy"].shape == v_samples["noisy"].shape
        and bool(np.array_equal(b_samples["noisy"], v_samples["noisy"]))
    )
    if shared:
        rows.append((f"noisy input{tag(v_run)}", v_samples["noisy"]))
    for role, s, run in (("baseline", b_samples, b_run), ("variant", v_samples, v_run)):
        if s is None:
            continue
        if noisy(s):
            if not shared:
                rows.append((f"{role} noisy input{tag(run)}", s["noisy"]))
            rows.append((f"{role} denoised", s["recon_noisy"]))
        else:
            rows.append((role, s["recon"]))
    return rows


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _md_cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _md_text(value: Any) -> Any:
    """Markdown output: angle brackets in values would be read as raw HTML, so escape them."""
    return str(value).replace("<", "&lt;").replace(">", "&gt;") if value is not None else value


def _environment(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_TEMPLATES,
        autoescape=html,
        finalize=None if html else _md_text,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _md_cell
    return env


def _write(directory: Path, context: dict[str, Any], figures: dict[str, bytes]) -> dict[str, Any]:
    html_text = _environment(True).get_template("report.html.j2").render(**context)
    md_text = _environment(False).get_template("report.md.j2").render(**context)
    fig_paths = []
    for name, png in figures.items():
        path = directory / name
        _write_file(path, png)
        fig_paths.append(path)
    md_path, html_path = directory / "report.md", directory / "report.html"
    _write_file(md_path, md_text.encode("utf-8"))
    _write_file(html_path, html_text.encode("utf-8"))
    return {"html": html_path, "md": md_path, "figures": fig_paths}


def _write_file(path: Path, data: bytes) -> None:
    """Write atomically; readable by others (a report is meant to be shared), as a plain write would be."""
    with _atomic.atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)


def _figure(figures: dict[str, bytes], name: str, png: bytes, alt: str) -> dict[str, str]:
    figures[name] = png
    return {"file": name, "data_uri": _data_uri(png), "alt": alt}


def _header(results: Mapping[str, Any], default_title: str) -> dict[str, Any]:
    return {
        "title": str(results.get("title") or default_title),
        "study": str(results.get("study") or results.get("sweep") or ""),
        "protocol": str(results.get("protocol") or "unknown"),
        "quick": bool(results.get("quick", False)),
        "wall_time": _fmt_seconds(results.get("wall_seconds")),
        "wall_total": (_fmt_seconds(results["wall_seconds_total"])
                       if isinstance(results.get("wall_seconds_total"), (int, float)) else None),
        "description": str(results.get("description") or ""),
        "device": str(results.get("device") or ""),
        "engine": str(results.get("engine") or ""),
        "created": str(results.get("created") or "—"),
        "version": str(results.get("aelab_version") or "—"),
    }


def _protocol_sentence(protocol: str) -> str:
    if protocol == "seed":
        return ("Seed protocol: the test set is min–max scaled with its own statistics, as the seed does "
                "(see Method notes).")
    if protocol == "corrected":
        return ("Corrected protocol: the min–max scaler is fitted on the training split only and applied "
                "unchanged to the test split.")
    return f"Protocol: {protocol}."


def _runs_appendix(runs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for key, run in runs.items():
        cfg = run.get("config") or {}
        out.append({
            "key": str(key),
            "name": str(run.get("name", "—")),
            "dir": str(run.get("dir", "—")),
            "hash": str(cfg.get("config_hash", "—")) if isinstance(cfg, Mapping) else "—",
            "epochs": C.fmt_num(_epochs(run)),
        })
    return out


def _corrected_effect(results: Mapping[str, Any]) -> dict[str, Any] | None:
    block = results.get("corrected")
    if not isinstance(block, Mapping) or not isinstance(block.get("runs"), Mapping):
        return None
    runs, corrected = results["runs"], block["runs"]
    rows, rels = [], []
    for key, run in runs.items():
        other = corrected.get(key)
        if not isinstance(other, Mapping):
            continue
        a, c = _get(run, "final.val_loss"), _get(other, "final.val_loss")
        rel = None if a is None or c is None or a == 0 else (c - a) / abs(a)
        if rel is not None and math.isfinite(rel):
            rels.append(rel)
        rows.append({
            "key": str(key), "name": str(run.get("name", key)),
            "seed": C.fmt_num(a), "corrected": C.fmt_num(c), "rel": C.fmt_pct(rel),
        })
    missing = [str(k) for k in runs if k not in corrected]
    if rels:
        summary = (
            f"Over {len(rels)} run(s), fitting the scaler on the training split changes the final val loss "
            f"by {C.fmt_pct(min(rels))} to {C.fmt_pct(max(rels))} "
            f"(median {C.fmt_pct(statistics.median(rels))}, median size {C.fmt_num(100 * statistics.median(map(abs, rels)), 3)}%)."
        )
    else:
        summary = "No run has a final val loss under both protocols."
    description = block.get("description") or (
        "the same runs under the corrected protocol, with the min–max scaler fitted on the training split only"
    )
    return {"rows": rows, "summary": summary, "missing": missing, "description": str(description),
            "label": str(results.get("protocol") or "seed")}


# --------------------------------------------------------------------------------------------
# study report
# --------------------------------------------------------------------------------------------
def build_report(study_dir: str | Path) -> dict[str, Any]:
    """Build ``report.html``, ``report.md`` and ``figures/*.png`` for the study in ``study_dir``.

    Reads ``<study_dir>/results.json`` and every run's ``samples.npz`` (paths relative to
    ``study_dir``); never trains. Returns ``{"html": Path, "md": Path, "figures": [Path, ...]}``.
    Raises :class:`DataError` for a missing/corrupt results.json or samples file and
    :class:`ConfigError` for a malformed claim.
    """
    study_dir = Path(study_dir)
    results = _load_results(study_dir)
    runs: dict[str, dict[str, Any]] = results["runs"]
    questions = results.get("questions") or []
    if not isinstance(questions, list):
        raise DataError(f"{study_dir / 'results.json'}: 'questions' is not a list; re-run the study")
    samples = _Samples(study_dir)
    figures: dict[str, bytes] = {}
    taken: set[str] = set()
    sections, summary = [], []

    for q in questions:
        qid = str(q.get("id", "?"))
        bkey, vkey = q.get("baseline"), q.get("variant")
        for role, key in (("baseline", bkey), ("variant", vkey)):
            if key not in runs:
                raise DataError(
                    f"{study_dir / 'results.json'}: question {qid} names {role} run {key!r}, which is not "
                    f"in 'runs'; re-run the study"
                )
        b, v = runs[bkey], runs[vkey]
        slug = _slug(qid, taken)
        labels = (f"baseline: {b.get('name', bkey)}", f"variant: {v.get('name', vkey)}")

        verdicts = []
        for claim in q.get("claims") or []:
            try:
                verdict = C.evaluate_claim(claim, b, v)
            except ValueError as exc:
                raise ConfigError(f"question {qid}: bad claim {claim.get('text', '')!r}: {exc}") from exc
            verdicts.append({"text": str(claim.get("text", "")), "kind": str(claim.get("kind")), **verdict,
                             "seeds": _across_seeds(results, claim, bkey, vkey)})
        n_ok = sum(1 for x in verdicts if x["status"] == C.CONFIRMED)

        curves = _figure(figures, f"figures/{slug}-loss.png", F.loss_curves(b, v, labels),
                         f"Loss curves for question {qid}")
        rows = _recon_rows(samples.get(b), samples.get(v), b, v)
        recon = (_figure(figures, f"figures/{slug}-recon.png", F.recon_grid(rows),
                         f"Reconstructions for question {qid}") if rows else None)

        bval, vval = _get(b, "final.val_loss"), _get(v, "final.val_loss")
        summary.append({
            "id": qid, "anchor": slug, "question": str(q.get("question", "")),
            "baseline_val": C.fmt_num(bval), "variant_val": C.fmt_num(vval),
            "ratio": _ratio_str(vval, bval),
            "claims": f"{n_ok}/{len(verdicts)}", "all_ok": n_ok == len(verdicts),
        })
        sections.append({
            "id": qid, "anchor": slug, "section": str(q.get("section", "")),
            "question": str(q.get("question", "")),
            "baseline_key": str(bkey), "variant_key": str(vkey),
            "baseline_name": str(b.get("name", bkey)), "variant_name": str(v.get("name", vkey)),
            "rows": _compare_rows(b, v) + _seed_rows(results, bkey, vkey), "curves": curves, "recon": recon,
            "observation": C.observe(q, b, v), "claims": verdicts,
        })

    header = _header(results, "aelab study report")
    notes = [METHOD_NOTES["scaling"], METHOD_NOTES["noisy_validation"], METHOD_NOTES["section4_wording"]]
    context = {
        "kind": "study",
        **header,
        "protocol_sentence": _protocol_sentence(header["protocol"]),
        "n_runs": len(runs),
        "summary": summary,
        "sections": sections,
        "notes": notes,
        "effect": _corrected_effect(results),
        "missing": samples.missing,
        "metric_docs": _metric_docs(),
        "runs": _runs_appendix(runs),
    }
    return _write(study_dir, context, figures)


# --------------------------------------------------------------------------------------------
# sweep report
# --------------------------------------------------------------------------------------------
_SWEEP_COLUMNS: list[tuple[str, str]] = [
    ("final train loss", "final.loss"),
    ("final val loss", "final.val_loss"),
    ("BCE", "metrics.bce"),
    ("PSNR (dB)", "metrics.psnr"),
    ("SSIM", "metrics.ssim"),
    ("diversity", "metrics.diversity"),
]


def _fmt_value(value: Any) -> str:
    """A swept value as written in a config: 0.3, 1e-04, 100, relu."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def build_sweep_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Build ``report.html``, ``report.md`` and ``figures/*.png`` for the sweep in ``sweep_dir``.

    ``results.json`` of a sweep: ``{"sweep", "parameter", "values", "runs", "points": [{"value",
    "run"}], "baseline": run key or null}``. The report shows a sweep plot (final train/val loss,
    SSIM, diversity, dead units against the value), one table row per point and reconstruction rows
    per value. Returns ``{"html": Path, "md": Path, "figures": [Path, ...]}``.
    """
    sweep_dir = Path(sweep_dir)
    results = _load_results(sweep_dir)
    runs: dict[str, dict[str, Any]] = results["runs"]
    where = sweep_dir / "results.json"
    points = results.get("points")
    if not isinstance(points, list) or not points:
        raise DataError(f"{where} has no 'points' list: it is not an aelab sweep results.json")
    for p in points:
        if not isinstance(p, Mapping) or p.get("run") not in runs or "value" not in p:
            raise DataError(f"{where}: sweep point {p!r} does not name a run in 'runs'; re-run the sweep")
    parameter = str(results.get("parameter") or "value")
    short = parameter.rsplit(".", 1)[-1]
    bkey = results.get("baseline")
    if bkey is not None and bkey not in runs:
        raise DataError(f"{where}: baseline run {bkey!r} is not in 'runs'; re-run the sweep")
    base = runs[bkey] if bkey is not None else None
    point_runs = [runs[p["run"]] for p in points]
    values = [p["value"] for p in points]
    noisy = any(_has_noisy(r) for r in point_runs)

    series: dict[str, list[float | None]] = {
        "loss/train": [_get(r, "final.loss") for r in point_runs],
        "loss/val": [_get(r, "final.val_loss") for r in point_runs],
    }
    if noisy:
        series["SSIM/clean input"] = [_get(r, "metrics.ssim") for r in point_runs]
        series["SSIM/noisy input"] = [_get(r, "metrics.noisy.ssim") for r in point_runs]
    else:
        series["SSIM"] = [_get(r, "metrics.ssim") for r in point_runs]
    series["diversity"] = [_get(r, "metrics.diversity") for r in point_runs]
    series["dead code units"] = [_get(r, "metrics.code.dead_units") for r in point_runs]
    path_of = {"loss/train": "final.loss", "loss/val": "final.val_loss", "SSIM": "metrics.ssim",
               "SSIM/clean input": "metrics.ssim", "SSIM/noisy input": "metrics.noisy.ssim",
               "diversity": "metrics.diversity", "dead code units": "metrics.code.dead_units"}
    # the baseline as dotted reference lines, unless it is one of the points (then its row is marked)
    base_lines = base is not None and all(p["run"] != bkey for p in points)
    baselines = {name: _get(base, path_of[name]) for name in series} if base_lines else None

    figures: dict[str, bytes] = {}
    plot = _figure(figures, "figures/sweep.png",
                   F.sweep_plot(values, series, parameter, results.get("log_x"), baselines=baselines),
                   f"Final losses and diagnostics against {parameter}")

    columns = [label for label, _ in _SWEEP_COLUMNS] + ["dead code units"]
    if noisy:
        columns += ["noisy: SSIM", "noisy: PSNR (dB)"]
    table = []

    def row(label: str, run: Mapping[str, Any], key: str, is_base: bool) -> dict[str, Any]:
        cells = [C.fmt_num(_get(run, path)) for _, path in _SWEEP_COLUMNS] + [_dead_units(run)]
        if noisy:
            cells += [C.fmt_num(_get(run, "metrics.noisy.ssim")), C.fmt_num(_get(run, "metrics.noisy.psnr"))]
        return {"value": label, "run": str(run.get("name", key)), "cells": cells, "baseline": is_base}

    for p, r in zip(points, point_runs):
        table.append(row(_fmt_value(p["value"]), r, p["run"], p["run"] == bkey))
    if base is not None and all(p["run"] != bkey for p in points):
        table.append(row("baseline", base, bkey, True))

    samples = _Samples(sweep_dir)
    recon_rows: list[tuple[str, np.ndarray]] = []
    for p, r in zip(points, point_runs):
        s = samples.get(r)
        if s is None:
            continue
        if not recon_rows:
            recon_rows.append(("original", s["original"]))
        label = f"{short}={_fmt_value(p['value'])}"
        if "noisy" in s and "recon_noisy" in s:
            recon_rows.append((f"{label} noisy input", s["noisy"]))
            recon_rows.append((f"{label} denoised", s["recon_noisy"]))
        else:
            recon_rows.append((label, s["recon"]))
    recon = (_figure(figures, "figures/sweep-recon.png", F.recon_grid(recon_rows),
                     f"Reconstructions for each value of {parameter}") if recon_rows else None)

    vals = series["loss/val"]
    finite = [(x, i) for i, x in enumerate(vals) if x is not None and math.isfinite(x)]
    if finite:
        lo, hi = min(finite), max(finite)
        observation = (
            f"The final val loss is lowest at {short}={_fmt_value(values[lo[1]])} ({C.fmt_num(lo[0], 3)}) and "
            f"highest at {short}={_fmt_value(values[hi[1]])} ({C.fmt_num(hi[0], 3)}), a factor of "
            f"{C.fmt_ratio(C.ratio(hi[0], lo[0]))}; from the first to the last value it goes from "
            f"{C.fmt_num(vals[0], 3)} to {C.fmt_num(vals[-1], 3)}."
        )
    else:
        observation = "No final val loss was recorded."

    notes = [METHOD_NOTES["scaling"]] + ([METHOD_NOTES["noisy_validation"]] if noisy else [])
    name = str(results.get("sweep") or "")
    header = _header(results, f"Sweep {name}" + ("" if parameter in name else f" over {parameter}"))
    context = {
        "kind": "sweep",
        **header,
        "protocol_sentence": _protocol_sentence(header["protocol"]),
        "n_runs": len(runs),
        "parameter": parameter,
        "values": [_fmt_value(x) for x in values],
        "plot": plot,
        "baseline_lines": base_lines,
        "columns": columns,
        "table": table,
        "recon": recon,
        "observation": observation,
        "notes": notes,
        "effect": _corrected_effect(results),
        "missing": samples.missing,
        "metric_docs": _metric_docs(),
        "runs": _runs_appendix(runs),
    }
    return _write(sweep_dir, context, figures)
