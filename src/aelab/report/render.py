"""Report assembly: read a study's (or sweep's) saved artifacts and write report.html + report.md.

What belongs here: reading the records :mod:`aelab.report.records` loaded (``results.json`` and each
run's saved arrays, paths relative to the study directory, never training anything), arranging
numbers into the typed sections of :mod:`aelab.report.sections`, asking :mod:`aelab.report.claims`
for verdicts, :mod:`aelab.report.prose` for sentences and :mod:`aelab.report.figures` for PNGs. Each
section turns itself into :mod:`aelab.report.blocks`, which render as HTML and as Markdown: one
source for both formats, and the page's shell (CSS) here. Every output is written
atomically (:mod:`aelab._atomic`): ``figures/*.png`` first, then ``report.md``, then the single
self-contained ``report.html`` (figures embedded as ``data:image/png;base64`` URIs, inline CSS,
no scripts, no external resources).

Entry points: :func:`build_report` for a study directory and :func:`build_sweep_report` for a
sweep directory. Both return ``{"html": Path, "md": Path, "figures": [Path, ...]}``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from markupsafe import escape

from .. import _atomic, _display
from .. import latent as L
from ..config import RunConfig
from ..data import shapes
from ..data.registry import DATASETS
from ..disentangle import mig
from ..metrics import METRIC_DOCS
from ..study.spec import find_study, load_study, shipped_studies
from ..errors import ConfigError, DataError
from ..numfmt import fmt_seconds, fmt_value
from .. import numfmt as N
from . import claims as C
from . import prose as P
from . import figures as F
from . import latent_sections as LS
from . import blocks as B
from . import sections as S
from .records import Codes, Results, Samples, load_results, results_of, sample_shape, setting

__all__ = ["Report", "build_report", "build_sweep_report", "compose_report", "study_report", "sweep_report",
           "write_report"]

# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
_CSS = """
  body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
         margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
  h1 { margin-bottom: 0.2em; }
  h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
  table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
  th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
  th { background: #f3f3f3; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  tr.baseline td { background: #f7f7ff; }
  .meta { color: #555; font-size: 0.92em; }
  .warn { background: #fff4e0; border: 1px solid #e0b060; padding: 0.6em 1em; border-radius: 4px; }
  .notes { background: #f6f8fa; border: 1px solid #c8d0d8; padding: 0.4em 1.2em 0.8em; border-radius: 4px; }
  .question { font-size: 1.08em; }
  .ok { color: #116611; font-weight: bold; }
  .no { color: #aa2222; font-weight: bold; }
  .nj { color: #666; font-weight: bold; }
  .none { color: #555; }
  .measured { color: #444; font-size: 0.92em; }
  figure { margin: 1em 0; }
  figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
  figcaption { color: #555; font-size: 0.9em; }
  ul.claims li { margin-bottom: 0.5em; }
  p.lead { font-size: 1.04em; }
  ul.evidence { color: #333; font-size: 0.94em; }
  code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _page(title: str, body: str) -> str:
    """One self-contained page: inline CSS, images as data URIs, no scripts, no external resources."""
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


@dataclass(frozen=True)
class Report:
    """A report's content, built from saved results without writing anything.

    ``kind``: ``"study"`` or ``"sweep"``. ``header`` and ``sections``: typed objects
    (:mod:`aelab.report.sections`), each of which turns itself into blocks that render as HTML and as
    Markdown (:mod:`aelab.report.blocks`): one source for both. ``figures``: file name under the output
    directory (``figures/…png``) → PNG bytes. :meth:`html` and :meth:`markdown` render it;
    :func:`write_report` writes it."""

    kind: str
    header: S.Header
    sections: tuple[S.Section, ...] = ()
    figures: Mapping[str, bytes] = field(default_factory=dict)

    def blocks(self) -> list[B.Block]:
        """The whole report as blocks, in page order."""
        return self.header.blocks() + S.all_blocks(self.sections)

    def html(self) -> str:
        """The self-contained HTML page (figures embedded as data URIs)."""
        return _page(self.header.title, B.html(self.blocks()))

    def markdown(self) -> str:
        """The Markdown page (figures linked as ``figures/*.png`` beside it)."""
        return B.markdown(self.blocks()) + "\n"

    def section(self, kind: type) -> Any:
        """The first section of type ``kind`` (``report.section(SweepSection)``), or None."""
        return next((s for s in self.sections if isinstance(s, kind)), None)

    @property
    def questions(self) -> list[S.QuestionSection]:
        """A study's question sections, in order."""
        return [s for s in self.sections if isinstance(s, S.QuestionSection)]

    def _repr_html_(self) -> str:
        """The report inline in a notebook: :meth:`html`'s body with its figures (data URIs) and its
        styles scoped to the report's own ``<div>`` (a page's ``body``/``h2`` rules would restyle the
        notebook around it). Self-contained: no script, no network resource."""
        return (f'<div class="aelab-report"><style>{_display.scope_css(_CSS, ".aelab-report")}</style>'
                f"{B.html(self.blocks())}</div>")

    def _repr_png_(self) -> bytes | None:
        """The report's first figure (a study's first question's loss curves, a sweep's panel), as PNG bytes."""
        return next(iter(self.figures.values()), None)


def _results(source: Any) -> Results:
    if isinstance(source, Results):
        return source
    return load_results(source) if isinstance(source, (str, Path)) else results_of(source)


def compose_report(source: str | Path | Mapping[str, Any] | Results) -> Report:
    """The content of the report on ``source``: a study's or sweep's output directory (its
    results.json and each run's saved arrays), a results.json's content (no saved arrays: no
    reconstructions or code maps), or :class:`~aelab.report.records.Results`. Never writes a file."""
    results = _results(source)
    return sweep_report(results) if results.kind == "sweep" else study_report(results)


def write_report(report: Report, out_dir: str | Path) -> dict[str, Any]:
    """Write ``figures/*.png``, then ``report.md``, then ``report.html`` into ``out_dir``, each atomically.
    Returns ``{"html": Path, "md": Path, "figures": [Path, ...]}``."""
    return _write(Path(out_dir), report)


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


def _ratio_str(v: float | None, b: float | None, mode: str | None = "ratio", unit: str = "") -> str:
    """The comparison cell: a ratio where it means something, else a difference or "—" (:func:`N.fmt_change`)."""
    return N.fmt_change(v, b, mode, unit)


def _has_noisy(run: Mapping[str, Any]) -> bool:
    return run["metrics"].get("noisy") is not None


def _epochs(run: Mapping[str, Any]) -> int | None:
    loss = (run.get("history") or {}).get("loss")
    return len(loss) if isinstance(loss, list) else None


def _train_seconds(run: Mapping[str, Any]) -> float | None:
    """Training time of the run's *group*: the sum of its epoch times (the group's, see :func:`_group`).

    Falls back to ``run.json``'s ``group_wall_seconds`` (which also counts evaluation and saving).
    """
    secs = (run.get("history") or {}).get("epoch_seconds")
    if isinstance(secs, list) and secs and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in secs):
        return float(sum(secs))
    wall = run["run"].get("group_wall_seconds")
    if isinstance(wall, (int, float)) and not isinstance(wall, bool) and math.isfinite(wall):
        return float(wall)
    return None


def _group(run: Mapping[str, Any]) -> list[str] | None:
    """The names of the models trained side by side with this one (itself included), if recorded."""
    names = run["run"].get("trained_with")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    return None


def _time_rows(b: Mapping[str, Any], v: Mapping[str, Any]) -> tuple[list[dict[str, str]], str]:
    """Rows for the training time, labelled for what they are, and a sentence explaining them.

    Runs of the same layer sizes train side by side in one stacked group: each step updates all
    of them at once, so a model's own time cannot be measured. We show the group's training time
    with the number of models in it, and the group time divided evenly among them (a fair share,
    not a measurement). A ratio is given only when both runs trained alone.
    """
    bs, vs = _train_seconds(b), _train_seconds(v)
    bg, vg = _group(b), _group(v)

    def cell(secs: float | None, group: list[str] | None) -> str:
        if secs is None:
            return "—"
        if group is None:
            return f"{N.fmt_num(secs, 3)} (group size not recorded)"
        return f"{N.fmt_num(secs, 3)} ({'trained alone' if len(group) == 1 else f'{len(group)} models'})"

    def share(secs: float | None, group: list[str] | None) -> str:
        return "—" if secs is None or group is None else N.fmt_num(secs / len(group), 3)

    alone = bg is not None and vg is not None and len(bg) == 1 and len(vg) == 1
    same = bg is not None and vg is not None and len(bg) > 1 and sorted(bg) == sorted(vg)
    rows = [
        {"label": "training time of its group (s)", "baseline": cell(bs, bg), "variant": cell(vs, vg),
         "ratio": _ratio_str(vs, bs) if alone else ("same group" if same else "—")},
    ]
    if not alone and (bg is not None or vg is not None):
        rows.append({"label": "≈ share per model (s): group time ÷ models", "baseline": share(bs, bg),
                     "variant": share(vs, vg), "ratio": "—"})
    if alone:
        note = "Both runs trained alone, so their training times compare directly."
    elif bg is None and vg is None:
        note = ("Training time is the sum of the epoch times; whether other models trained side by side with "
                "these runs was not recorded, so it may be a group's time rather than one model's.")
    else:
        note = ("Models of the same layer sizes train side by side in one stacked group, every step updating "
                "all of them at once, so one model's own time cannot be measured: the table shows the group's "
                "training time (sum of its epoch times) and that time divided evenly among its models."
                + (" Both runs were in the same group." if same else
                   " The two runs were in different groups, so their times are not compared."))
    return rows, note


def _term_cell(run: Mapping[str, Any], key: str, value: float | None) -> str:
    """A loss term's cell: its number, "none" when the run's loss has named terms but not this one."""
    if value is None and key != P.LEGACY_PENALTY and P.penalty_terms(run) != [P.LEGACY_PENALTY]:
        if "terms" in run["history"]:  # a dict of series when present (checked as the file was read)
            return "none"
    return N.fmt_num(value)


def _code_note(b: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """A label suffix for the code statistics when a run's code is the posterior mean μ of a stochastic encoder."""
    bm, vm = P.code_is_mean(b), P.code_is_mean(v)
    if bm and vm:
        return " (of μ)"
    if vm:
        return " (variant: of μ)"
    if bm:
        return " (baseline: of μ)"
    return ""


def _dead_units(run: Mapping[str, Any]) -> str:
    d, u = _get(run, "metrics.code.dead_units"), _get(run, "metrics.code.units")
    if d is None:
        return "—"
    return N.units_text(d, u).replace(" of ", " / ")


def _metric_docs() -> tuple[S.Doc, ...]:
    """The metric definitions of :mod:`aelab.metrics`, for the appendix."""
    rows = []
    for name, doc in METRIC_DOCS.items():
        text = ("; ".join(f"{k}: {v}" for k, v in doc.items()) if isinstance(doc, dict)
                else " ".join(str(doc).split()))
        rows.append(S.Doc(str(name), text))
    return tuple(rows)


_LOSS_NAMES = {"bce": "binary cross-entropy (Keras' definition)", "torch_bce": "binary cross-entropy (PyTorch's)",
               "mse": "mean squared error"}


def _loss_intro(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """The appendix's first sentence: what the reported losses are, read from the runs."""
    records = list(runs.values())
    kinds = []
    for r in records:
        loss = setting(r, "train", "loss")
        if isinstance(loss, str) and _LOSS_NAMES.get(loss, loss) not in kinds:
            kinds.append(_LOSS_NAMES.get(loss, loss))
    error = " or ".join(kinds) if kinds else "the reconstruction error"
    s = f"Losses are as reported per epoch (the mean over the epoch's batches): {error}"
    terms = P.penalty_terms(*records)
    if terms:
        s += (", plus the model's other loss terms where it has them (the " + P.term_phrase(terms)
              + ", defined below)")
    s += "."
    if not P.comparable_losses(*records):
        s += (" Some runs sum the reconstruction error over an image's pixels (a loss per image) where others "
              "average it (a loss per pixel), so their losses differ in scale by hundreds and are compared only "
              "within one kind; BCE, MSE, PSNR and SSIM are computed the same way for every run.")
    return s + " All metrics are on the test split."


def _appendix(runs: Mapping[str, Mapping[str, Any]]) -> S.Appendix:
    """The appendix: what the losses are, the definitions of the metrics, loss terms and family
    diagnostics the runs have, and every run's directory."""
    records = list(runs.values())
    return S.Appendix(
        loss_intro=_loss_intro(runs), metric_docs=_metric_docs(),
        term_docs=tuple(S.Doc(d["key"], d["text"], d["name"]) for d in P.term_docs(*records)),
        family_docs=tuple(S.Doc(d["name"], d["text"]) for d in P.family_docs(*records)),
        runs=tuple(S.RunRow(key=str(key), name=str(run.get("name", "—")), dir=str(run.get("dir", "—")),
                            hash=str(setting(run, "config_hash", default="—")), epochs=N.fmt_num(_epochs(run)))
                   for key, run in runs.items()))


def _curves_caption(b: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """The loss-curve figure's caption: what each panel and line style shows."""
    s = "Loss per epoch: train solid, validation dashed"
    terms = P.penalty_terms(b, v)
    if terms:
        s += (f". Right: the {P.term_phrase(terms)} alone (part of the loss on the left), in the same styles"
              + ("; each term with its own marker" if len(terms) > 1 else ""))
    if not P.comparable_losses(b, v):
        s += ". The two runs' losses are on different scales (log axis)"
    notes = [n for n in (_training_control(b), _training_control(v)) if n]
    return s + "." + "".join(f" {n}" for n in dict.fromkeys(notes))


def _training_control(run: Mapping[str, Any]) -> str:
    """What early stopping and a learning-rate schedule did to a run, from its history (``stopped_epoch``,
    ``restored_epoch``, ``lr``) and config; "" when neither acted."""
    hist = run["history"]
    name, out = str(run.get("name") or "the run"), []
    stopped, restored = hist.get("stopped_epoch"), hist.get("restored_epoch")
    es = setting(run, "train", "early_stopping", default=None) or {}
    if isinstance(stopped, int):
        out.append(f"Early stopping ({es.get('monitor', 'val_loss')}, patience {es.get('patience', '?')}) stopped "
                   f"{name} after epoch {stopped} of {setting(run, 'train', 'epochs', default='?')}")
    if isinstance(restored, int):
        out.append(f"{name} ends with the weights of epoch {restored}, its best")
    lr = [x for x in (hist.get("lr") or []) if isinstance(x, (int, float))]
    if lr and max(lr) != min(lr):
        sched = setting(run, "train", "lr_schedule", default=None) or {}
        out.append(f"{name}'s learning rate went from {fmt_value(lr[0])} to {fmt_value(lr[-1])}"
                   + (f" ({sched.get('kind')} schedule)" if sched.get("kind") else ""))
    return "; ".join(out) + "." if out else ""


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
#: how the comparison column compares a row: "diff" for dB, SSIM, fractions (ratios of those mean
#: little); every other row is "ratio" (falling back to a difference where the ratio is meaningless).
_ROW_MODE = {
    "metrics.psnr": "diff", "metrics.ssim": "diff", "metrics.code.zero_fraction": "diff",
    "metrics.noisy.psnr": "diff", "metrics.noisy.ssim": "diff", "metrics.noisy.input_psnr": "diff",
    "metrics.noisy.input_ssim": "diff",
}
_ROW_UNIT = {"metrics.psnr": "dB", "metrics.noisy.psnr": "dB", "metrics.noisy.input_psnr": "dB"}
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
    """Rows of the baseline-vs-variant table: label, baseline, variant, comparison.

    The comparison is a ratio only for positive quantities where a ratio reads naturally (losses,
    MSE, diversity, ...) and only when :func:`N.meaningful_ratio` allows it; a difference ``Δ``
    otherwise, and always for dB, SSIM, fractions and counts. Losses on different scales (a sum per
    image beside a mean per pixel) are not compared at all.

    Under each final loss: its named terms (the reconstruction part, then every other term either
    run has; "none" for a run whose loss lacks it). After the code statistics (labelled "of μ" for a
    stochastic encoder): the model family and its diagnostics (``metrics.family``), by key.
    """
    rows: list[dict[str, str]] = []

    def add(label: str, bv: Any, vv: Any, bs: str | None = None, vs: str | None = None,
            mode: str | None = "ratio", unit: str = ""):
        rows.append({
            "label": label,
            "baseline": bs if bs is not None else N.fmt_num(bv),
            "variant": vs if vs is not None else N.fmt_num(vv),
            "ratio": _ratio_str(vv, bv, mode, unit),
        })

    terms = P.penalty_terms(b, v)
    comparable = P.comparable_losses(b, v)
    loss_mode = "ratio" if comparable else None  # a sum per image beside a mean per pixel: no comparison
    # a loss with a penalty beside one without: the totals hold different terms, only their shared
    # reconstruction term (the rows below them) is compared
    apart = P.loss_terms_differ(b, v) if comparable else None
    for (label, path), val in zip(_METRIC_ROWS[:2], (False, True)):
        add(label, _get(b, path), _get(v, path), mode=loss_mode)
        if apart:
            rows[-1]["ratio"] = f"not compared: {apart}"
        # the loss's named terms under it: its reconstruction part and every other term either run has
        if terms == [P.LEGACY_PENALTY]:  # results written before named terms: only the penalty is known
            if not val:
                add("final train penalty (in the loss)", _get(b, "final.penalty"), _get(v, "final.penalty"))
            continue
        if terms:
            which = "val" if val else "train"
            rec = P.term_path(P.RECONSTRUCTION, val)
            add(f"final {which} reconstruction term", _get(b, rec), _get(v, rec), mode=loss_mode)
            for key in terms:
                path = P.term_path(key, val)
                bx, vx = _get(b, path), _get(v, path)
                add(f"final {which} {P.term_phrase([key])}", bx, vx, _term_cell(b, key, bx), _term_cell(v, key, vx),
                    mode=loss_mode)
    for label, path in _METRIC_ROWS[2:6]:
        add(label, _get(b, path), _get(v, path), mode=_ROW_MODE.get(path, "ratio"), unit=_ROW_UNIT.get(path, ""))
    code = _code_note(b, v)
    add("dead code units" + code, _get(b, "metrics.code.dead_units"), _get(v, "metrics.code.dead_units"),
        _dead_units(b), _dead_units(v), mode="count")
    for label, path in _METRIC_ROWS[6:]:
        add(label + (code if path.startswith("metrics.code.") else ""), _get(b, path), _get(v, path),
            mode=_ROW_MODE.get(path, "ratio"))
    if P.family_block(b) is not None or P.family_block(v) is not None:
        rows.append({"label": "model family", "baseline": P.family_name(b) or "—",
                     "variant": P.family_name(v) or "—", "ratio": "—"})
        for key in P.family_keys(b, v):
            mode = P.diagnostic_mode(key, b, v)
            add(P.family_label(key, b, v), P.family_number(b, key), P.family_number(v, key),
                P.family_cell(b, key), P.family_cell(v, key), mode=mode)
    if _has_noisy(b) or _has_noisy(v):
        add("noise factor", P.noise_factor(b), P.noise_factor(v))
        for label, path in _NOISY_ROWS:
            add(label, _get(b, path), _get(v, path), mode=_ROW_MODE.get(path, "ratio"), unit=_ROW_UNIT.get(path, ""))
    add("epochs", _epochs(b), _epochs(v), mode="count")
    rows.extend(_time_rows(b, v)[0])
    return rows


def _replicates(results: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    block = results.get("replicates")
    return list((block.get("runs") or {}).get(key) or []) if block is not None else []


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
            return f"{N.fmt_num(min(vals))} – {N.fmt_num(max(vals))}" if vals else "—"
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
        nf = P.noise_factor(run)
        return f" ({N.fmt_num(nf, 3)})" if nf is not None else ""

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


def _recon_caption(shape: tuple[int, ...] | None, per_value: str | None = None) -> str:
    """What a reconstruction figure shows, in the data's terms."""
    if shape is not None and len(shape) == 1:
        s = (f"Each of the {shape[0]} features' mean squared reconstruction error over the test split (bars), then "
             "the first test samples as heat strips (one row per sample, one column per feature, one colour scale "
             "for all), the originals above the reconstructions. Look for features whose bars stand out: those the "
             "code keeps least.")
        return s
    what = ("images" if shape is None else
            f"{shape[1]}×{shape[2]} {'colour' if shape[0] == 3 else 'grayscale'} images")
    s = f"The first 10 test {what} and their reconstructions"
    if per_value:
        s += f", one row for each value of {per_value}"
    return s + ", all on one brightness scale."


def _feature_errors(run: Mapping[str, Any]) -> list[float] | None:
    errs = run["metrics"].get("feature_mse")
    if errs and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in errs):
        return [float(e) for e in errs]
    return None


def _recon_png(rows: list[tuple[str, np.ndarray]], runs: list[tuple[str, Mapping[str, Any]]]) -> bytes:
    """A reconstruction figure in the runs' own sample shape: image rows (8×8, 28×28, RGB …), or for
    vectors (a table) the per-feature error of each run (``metrics.feature_mse``) above heat strips
    of the samples. ``runs``: ``(label, run record)`` of the runs the rows show."""
    shape = sample_shape(*(r for _, r in runs))
    if shape is not None and len(shape) == 1:
        value = strip_value_label(*(r for _, r in runs))
        errs = [(label, e) for label, e in ((label, _feature_errors(r)) for label, r in runs) if e is not None]
        if errs:
            return F.feature_error_plot(errs if len(errs) > 1 else errs[0][1], rows, value_label=value)
        return F.recon_grid(rows, shape=shape, value_label=value)
    return F.recon_grid(rows, shape=shape)


#: what a table's heat-strip colours are, by the runs' ``data.scaling``
_STRIP_VALUE = {"unit": "feature value (÷ the declared maximum, if any)",
                "minmax": "feature value after min–max scaling", "standard": "feature value after standardising"}


def strip_value_label(*runs: Mapping[str, Any]) -> str:
    """The colour bar's title of a table's heat strips: a feature's value as the model saw it, after
    the runs' scaling (one wording when they share it)."""
    found = set()
    for r in runs:
        found.add(setting(r, "data", "scaling"))
    return _STRIP_VALUE.get(found.pop(), F.STRIP_VALUE) if len(found) == 1 else F.STRIP_VALUE


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------
def _write(directory: Path, report: Report) -> dict[str, Any]:
    html_text, md_text = report.html(), report.markdown()
    fig_paths = []
    for name, png in report.figures.items():
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


def _figure(figures: dict[str, bytes], name: str, png: bytes, alt: str, caption: B.Text = "") -> B.Figure:
    """A figure of the report: its PNG kept under ``name`` for writing, and the block that shows it."""
    figures[name] = png
    return B.Figure(name, png, alt, caption)


def _header(results: Results, kind: str, default_title: str, missing: list[str], data_sentence: str = "",
            claims_sentence: str = "") -> S.Header:
    derived = _protocol_from_configs(results["runs"])
    named = results.get("protocol")
    protocol_derived = not named
    head = "Protocol (read from the runs' configs)" if protocol_derived else f"Protocol {named}"
    sentence = f"{head}: {derived['scaling']}" + (f"; {derived['data']}" if derived["data"] else "") + "."
    total = results.get("wall_seconds_total")
    return S.Header(
        kind=kind,
        title=str(results.get("title") or default_title),
        study=str(results.get("study") or results.get("sweep") or ""),
        protocol=str(named) if named else derived["label"],
        protocol_derived=protocol_derived,
        protocol_sentence=sentence,
        quick=bool(results.get("quick", False)),
        wall_time=fmt_seconds(results.get("wall_seconds")),
        wall_total=fmt_seconds(total) if isinstance(total, (int, float)) else None,
        n_runs=len(results["runs"]),
        description=str(results.get("description") or ""),
        data_sentence=data_sentence,
        claims_sentence=claims_sentence,
        device=str(results.get("device") or ""),
        engine=str(results.get("engine") or ""),
        created=str(results.get("created") or "—"),
        version=str(results.get("aelab_version") or "—"),
        missing=tuple(missing),
    )


_SCALING_TEXT = {
    ("unit", None): ("÷ the data's maximum", "values are divided by the data's nominal maximum (255 for 8-bit "
                     "images; a table that declares none is kept as it is), with no fitted scaler"),
    ("minmax", "per_split"): ("min–max, fitted per split",
                              "min–max scaling fitted on each split separately, so the test split is scaled "
                              "with its own statistics"),
    ("minmax", "train"): ("min–max, fitted on train",
                          "min–max scaling fitted on the training split only and applied unchanged to the test "
                          "split"),
}


def _bites(limit: Any, n: Any) -> Any:
    """A data limit, or None where the run records fewer images than it (the limit cut nothing: the
    data set is smaller than the limit: a slice of 3000 asked of 1,437 images is all 1,437)."""
    return None if (limit and isinstance(n, (int, float)) and n < limit) else limit


def _protocol_from_configs(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What the runs' own configs say about the data protocol: ``{"label", "scaling", "data"}``.

    ``label`` is short (for the header line), ``scaling`` a clause on how pixels were scaled and
    ``data`` a clause on the data slice ("" when the full splits were used).
    """
    seen: dict[tuple, int] = {}
    limits: set[tuple] = set()
    for run in runs.values():
        data = setting(run, "data")
        if not isinstance(data, Mapping) or "scaling" not in data:
            continue
        scaling = str(data.get("scaling"))
        key = (scaling, str(data.get("scaler_fit")) if scaling == "minmax" else None)
        seen[key] = seen.get(key, 0) + 1
        # held-out classes shrink the recorded sizes below a limit that did cut: then trust the limit
        sizes = ((None, None) if data.get("exclude_labels") else
                 (run["run"].get("n_train"), run["metrics"].get("n_test")))
        limits.add((_bites(data.get("limit"), sizes[0]), _bites(data.get("test_limit"), sizes[1])))
    if not seen:
        return {"label": "not recorded", "scaling": "the runs' configs do not record the data scaling", "data": ""}
    texts = [_SCALING_TEXT.get(k, (f"{k[0]}" + (f", fitted {k[1]}" if k[1] else ""),) * 2) for k in seen]
    if len(seen) == 1:
        label, scaling = texts[0]
    else:
        label = "mixed"
        scaling = "the runs differ: " + "; ".join(f"{n} with {t[1]}" for t, n in zip(texts, seen.values()))
    data = ""
    if len(limits) == 1:
        lim, tlim = next(iter(limits))
        if lim or tlim:
            parts = []
            if lim:
                parts.append(f"the first {lim} training images")
            if tlim:
                parts.append(f"the first {tlim} test images")
            data = "trained and evaluated on a slice of the data: " + " and ".join(parts)
    elif limits:
        data = "the runs use different slices of the data"
    return {"label": label, "scaling": scaling, "data": data}


def _dataset_of(run: Mapping[str, Any]) -> str | None:
    name = setting(run, "data", "dataset")
    return str(name) if name is not None else None


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    if len(shape) == 1:
        return f"vectors of {shape[0]} features"
    c, h, w = shape
    return f"{h}×{w} {'colour' if c == 3 else 'grayscale' if c == 1 else f'{c}-channel'} images"


_URL_IN_PARENS = re.compile(r"\s*\((?:https?://)[^)\s]+\)")


def _npm_link(spec: str) -> str:
    """``name@version`` (or ``@scope/name@version``) → the package's page on npmjs.com."""
    name = spec.rsplit("@", 1)[0] if spec.rfind("@") > 0 else spec
    return f"https://www.npmjs.com/package/{name}"


def _source_text(src: Mapping[str, Any]) -> str:
    """Where a run's files came from, as a clause with a link ("files from the npm package …"), from
    ``run.json`` data_source: its ``source`` ("npm", "mirror:<url>", "files", "cache", "+"-joined
    when several were needed) and the exact ``files`` origins; "source: …" for any other source
    (a built-in set); "" when nothing was recorded."""
    source = src.get("source")
    if not isinstance(source, str) or not source:
        return ""
    files = src.get("files") if isinstance(src.get("files"), Mapping) else {}
    origins = [str(o) for o in files.values()]
    out = []
    for part in source.split("+"):
        if part == "npm":
            specs = sorted({o.split(":", 1)[0] for o in origins if ":package/" in o})
            out += [f"the npm package {sp} ({_npm_link(sp)})" for sp in specs] or ["an npm package"]
        elif part.startswith("mirror:"):
            out.append(f"the mirror {part.split(':', 1)[1]}")
        elif part == "files":
            local = sorted({str(Path(o).parent) for o in origins if "://" not in o and ":package/" not in o})
            out.append("local files" + (f" in {', '.join(local)}" if local else ""))
        elif part == "cache":
            cache = src.get("cache_dir")
            first = _cache_origin(cache) if cache else ""
            out.append("the local cache" + (f" {cache}" if cache else "") + " (verified against the pinned hashes"
                       + (f"; first fetched from {first}" if first else "") + ")")
        else:
            return f"source: {source}"
    return "files from " + " and ".join(out)


def _cache_origin(cache_dir: Any) -> str:
    """Where a data cache's files first came from, from its ``source.json`` (written when they were
    fetched: ``{"files": {name: {"source", "origin"}}}``), in :func:`_source_text`'s words; "" when
    it cannot be read (a report built elsewhere, a cache since removed)."""
    try:
        doc = json.loads((Path(str(cache_dir)) / "source.json").read_text(encoding="utf-8"))
        files = {str(k): v for k, v in doc["files"].items() if isinstance(v, Mapping)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    kinds = list(dict.fromkeys(str(v.get("source")) for v in files.values() if v.get("source")))
    if not kinds or "cache" in kinds:
        return ""
    text = _source_text({"source": "+".join(kinds), "files": {k: v.get("origin") for k, v in files.items()}})
    return text.removeprefix("files from ") if text.startswith("files from ") else ""


def _describe_data(name: str, runs: list[Mapping[str, Any]]) -> str:
    """One data set in plain words: its name, what it is (the registry's line, or what the run
    recorded of a folder or a table) and where the samples came from (``run.json`` data_source)."""
    src = next((r["run"]["data_source"] for r in runs if isinstance(r.get("run"), Mapping)
                and isinstance(r["run"].get("data_source"), Mapping)), {})
    shape = sample_shape(*runs)
    if name in DATASETS:
        # the registry's line names where the data set is published; the files may have come from
        # elsewhere (a package, a mirror, a local copy): the line says the source actually used
        what = _URL_IN_PARENS.sub("", DATASETS[name].description)
        origin = _source_text(src)
        return f"{name} — {what}" + (f"; {origin}" if origin else "")
    kind = src.get("kind")
    parts = [_shape_text(shape)] if shape else []
    if kind == "images" or (shape is not None and len(shape) == 3):
        what = "a folder of images" if src.get("source") == "folder" else "a file of images"
        if isinstance(src.get("files"), int):
            parts.insert(0, f"{src['files']:,} files")
    else:
        what = f"a table ({src['source']})" if src.get("source") else "a table"
        if isinstance(src.get("samples"), int):
            parts.insert(0, f"{src['samples']:,} samples")
    if src.get("split"):
        parts.append(f"split: {src['split']}")
    return f"{name} — {what}" + (": " + ", ".join(parts) if parts else "")


def _written_for(results: Mapping[str, Any]) -> list[str]:
    """The data sets a shipped study's own runs name (what its claims were written for), [] when the
    results are not a shipped study's or it cannot be read."""
    name = results.get("study")
    if not name or "questions" not in results:
        return []
    try:
        if str(name) not in shipped_studies():
            return []
        spec = load_study(str(find_study(str(name))))
    except (ConfigError, OSError, ValueError):
        return []
    ids = [str(q.get("id")) for q in results["questions"]]
    if [q.id for q in spec.questions] != ids:  # a namesake, not this study
        return []
    return sorted({str(c.data.dataset) for c in spec.runs.values()})


def _data_block(results: Mapping[str, Any]) -> dict[str, Any]:
    """What the report says about its data at the top: ``{"sentence", "datasets", "written_for",
    "moved"}``; ``moved`` when the runs are on other data than the study was written for."""
    runs = list(results["runs"].values())
    by: dict[str, list] = {}
    for r in runs:
        name = _dataset_of(r)
        if name is not None:
            by.setdefault(name, []).append(r)
    if not by:
        return {"sentence": "", "datasets": [], "written_for": [], "moved": False}
    texts = [_describe_data(n, rs) for n, rs in by.items()]
    if len(texts) == 1:
        sentence = f"Data: {texts[0]}."
    else:
        sentence = "Data: " + "; ".join(f"{t}, {len(rs)} run(s)" for t, rs in zip(texts, by.values())) + "."
    written = _written_for(results)
    moved = bool(written) and not set(by) <= set(written)
    if moved:
        sentence += (f" This study was written for {' and '.join(written)}: its description, notes and claims speak "
                     f"of that data, and these runs are on {' and '.join(by)}.")
    return {"sentence": sentence, "datasets": list(by), "written_for": written, "moved": moved}


def _claims_sentence(block: Mapping[str, Any], sections: list[S.QuestionSection]) -> str:
    """On other data than the study's own: which of its claims still hold, which do not, which cannot
    be judged, in one sentence (question ids, with how many of each question's claims)."""
    if not block.get("moved"):
        return ""
    groups: dict[str, dict[str, int]] = {C.CONFIRMED: {}, C.NOT_CONFIRMED: {}, C.NOT_JUDGED: {}}
    total = 0
    for sec in sections:
        for c in sec.claims:
            groups.setdefault(c.status, {})
            groups[c.status][sec.id] = groups[c.status].get(sec.id, 0) + 1
            total += 1
    if not total:
        return ""

    def which(g: dict[str, int]) -> str:
        n = sum(g.values())
        if not n:
            return "none"
        return f"{n} ({', '.join(q + (f' ×{k}' if k > 1 else '') for q, k in g.items())})"

    data = " and ".join(block["datasets"])
    return (f"On {data}, of the study's {total} claims about {' and '.join(block['written_for'])}, "
            f"{which(groups[C.CONFIRMED])} still hold, {which(groups[C.NOT_CONFIRMED])} do not, and "
            f"{which(groups[C.NOT_JUDGED])} cannot be judged on this data (a measure it does not have, or a "
            "loss value quoted for the other data, whose scale differs); the claims under each question say which.")


def _notes(results: Mapping[str, Any]) -> tuple[S.Note, ...]:
    """The study's own method notes: ``results["notes"]`` (written from the study spec's ``[[notes]]``).

    results.json files written before that field existed: the notes of the shipped study spec named
    by ``results["study"]``, when there is one. A sweep (no ``"study"``) has none.
    """
    raw = results.get("notes")
    if raw is None and results.get("study") and "questions" in results:
        try:
            name = str(results["study"])
            if name in shipped_studies():
                spec = load_study(str(find_study(name)))
                ids = [str(q.get("id")) for q in results["questions"]]
                if [q.id for q in spec.questions] == ids:  # the same study, not a namesake
                    raw = spec.notes
        except (ConfigError, OSError, ValueError):
            raw = None
    out = []
    for n in raw if isinstance(raw, list) else []:
        if isinstance(n, str) and n.strip():
            out.append(S.Note("", n))
        elif isinstance(n, dict) and str(n.get("text") or "").strip():
            out.append(S.Note(str(n.get("title") or ""), str(n["text"])))
    return tuple(out)


def _protocol_effect(results: Results) -> S.ProtocolEffect | None:
    """The runs' final val loss under the study's protocol beside the same trained runs evaluated
    again under another (``results["reevaluated"]``, a study's ``reevaluate`` protocol)."""
    block = results.get("reevaluated")
    if block is None:
        return None
    runs, again = results["runs"], block.get("runs") or {}
    other = str(block.get("protocol") or "other")
    rows, rels = [], []
    for key, run in runs.items():
        rerun = again.get(key)
        if rerun is None:
            continue
        a, c = _get(run, "final.val_loss"), _get(rerun, "final.val_loss")
        rel = None if a is None or c is None or a == 0 else (c - a) / abs(a)
        if rel is not None and math.isfinite(rel):
            rels.append(rel)
        rows.append(S.ReevaluatedRow(key=str(key), name=str(run.get("name", key)), base=N.fmt_num(a),
                                     other=N.fmt_num(c), rel=N.fmt_pct(rel)))
    if rels:
        summary = (
            f"Over {len(rels)} run(s), evaluating under the {other} protocol changes the final val loss "
            f"by {N.fmt_pct(min(rels))} to {N.fmt_pct(max(rels))} "
            f"(median {N.fmt_pct(statistics.median(rels))}, median size {N.fmt_num(100 * statistics.median(map(abs, rels)), 3)}%)."
        )
    else:
        summary = "No run has a final val loss under both protocols."
    description = block.get("description") or f"each trained run evaluated again under protocol {other}"
    return S.ProtocolEffect(label=str(results.get("protocol") or "base"), other=other, description=str(description),
                            rows=tuple(rows), summary=summary, missing=tuple(str(k) for k in runs if k not in again))


# --------------------------------------------------------------------------------------------
# study report
# --------------------------------------------------------------------------------------------
def build_report(study_dir: str | Path) -> dict[str, Any]:
    """Build and write ``report.html``, ``report.md`` and ``figures/*.png`` for the study in
    ``study_dir`` (:func:`study_report`, then :func:`write_report`). Returns ``{"html": Path, "md":
    Path, "figures": [Path, ...]}``."""
    return write_report(study_report(load_results(study_dir)), study_dir)


def study_report(results: Results) -> Report:
    """The content of a study's report: reads ``results`` and every run's ``samples.npz`` and
    ``codes.npz`` (paths relative to ``results.directory``); never trains or writes. Raises
    :class:`DataError` for a malformed results or samples file and :class:`ConfigError` for a
    malformed claim."""
    runs: dict[str, dict[str, Any]] = results["runs"]
    questions = results.get("questions") or []
    samples = Samples(results.directory)
    codes = Codes(results.directory)
    figures: dict[str, bytes] = {}
    taken: set[str] = set()
    sections: list[S.QuestionSection] = []
    summary: list[S.SummaryRow] = []
    data = _data_block(results)

    for q in questions:
        qid = str(q.get("id", "?"))
        bkey, vkey = q.get("baseline"), q.get("variant")
        for role, key in (("baseline", bkey), ("variant", vkey)):
            if key not in runs:
                raise DataError(
                    f"{results.path}: question {qid} names {role} run {key!r}, which is not "
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
            if data["moved"] and C.data_bound(claim):
                verdict = C.not_judged_elsewhere(claim, verdict, data["written_for"], data["datasets"])
            verdicts.append(S.ClaimRow(text=str(claim.get("text", "")), kind=str(claim.get("kind")), **verdict,
                                       seeds="" if verdict["status"] == C.NOT_JUDGED
                                       else _across_seeds(results, claim, bkey, vkey)))
        n_ok = sum(1 for x in verdicts if x.status == C.CONFIRMED)
        n_nj = sum(1 for x in verdicts if x.status == C.NOT_JUDGED)

        curves = _figure(figures, f"figures/{slug}-loss.png", F.loss_curves(b, v, labels),
                         f"Loss curves for question {qid}", _curves_caption(b, v))
        rows = _recon_rows(samples.get(b), samples.get(v), b, v)
        recon = (_figure(figures, f"figures/{slug}-recon.png", _recon_png(rows, [("baseline", b), ("variant", v)]),
                         f"Reconstructions for question {qid}", _recon_caption(sample_shape(b, v)))
                 if rows else None)
        latent_png = LS.pair_map(codes, b, v, labels)
        latent = (_figure(figures, f"figures/{slug}-latent.png", latent_png, f"Test codes in 2-D for question {qid}",
                          "Inside the code, baseline and variant side by side. " + LS.map_caption([b, v]))
                  if latent_png else None)
        curve = None
        found = LS.series(runs, bkey, vkey)
        if found:
            got = LS.series_figures(runs, *found, samples.get, bkey, vkey)
            seen = P.sweep_observation(got["key"].rsplit(".", 1)[-1], [x for x, _ in found[1]],
                                       [runs[k] for _, k in found[1]])
            curve = S.Series(
                key=got["key"], n=got["n"], value_list=got["value_list"],
                plot=_figure(figures, f"figures/{slug}-series.png", got["plot"],
                             f"Results against {got['key']} for question {qid}", got["caption"]),
                recon=(_figure(figures, f"figures/{slug}-series-recon.png", got["recon"],
                               f"Reconstructions for each {got['key']}", got["recon_caption"])
                       if got["recon"] else None),
                observation=S.Observation(seen["lead"], tuple(seen["evidence"])))

        bval, vval = _get(b, "final.val_loss"), _get(v, "final.val_loss")
        summary.append(S.SummaryRow(
            id=qid, anchor=slug, question=str(q.get("question", "")),
            baseline_val=N.fmt_num(bval), variant_val=N.fmt_num(vval),
            ratio=P.val_loss_change(b, v),
            claims=(f"{n_ok}/{len(verdicts)}" + (f" ({n_nj} cannot be judged)" if n_nj else "")
                    if verdicts else "none stated"),
            all_ok=bool(verdicts) and n_ok == len(verdicts),
            # the cell's colour: green all confirmed, red any not confirmed, gray none stated or only unjudged
            status=("none" if not verdicts else "ok" if n_ok == len(verdicts)
                    else "no" if n_ok + n_nj < len(verdicts) else "nj"),
        ))
        reps = [r for r in (_replicates(results, bkey), _replicates(results, vkey)) if len(r) >= 2]
        noise = P.noise_level([b, v], reps or None)
        seen = P.observation(q, b, v, noise)
        sections.append(S.QuestionSection(
            id=qid, anchor=slug, section=str(q.get("section", "")),
            question=str(q.get("question", "")),
            baseline_key=str(bkey), variant_key=str(vkey),
            baseline_name=str(b.get("name", bkey)), variant_name=str(v.get("name", vkey)),
            rows=tuple(S.CompareRow(**r) for r in
                       _compare_rows(b, v) + LS.quality_rows(b, v) + _seed_rows(results, bkey, vkey)),
            curves=curves, recon=recon, latent=latent, series=curve,
            observation=S.Observation(seen["lead"], tuple(seen["evidence"])), claims=tuple(verdicts),
            time_note=_time_rows(b, v)[1],
        ))

    gallery_png = LS.gallery(codes, runs)
    gallery = (_figure(figures, "figures/latent-all.png", gallery_png, "Test codes of every run in 2-D",
                       "Inside every run's code. " + LS.map_caption(list(runs.values())))
               if gallery_png else None)
    overview = LS.overview(runs, _train_seconds, _group)
    family = _family_figures(results, figures)
    header = _header(results, "study", "aelab study report", samples.missing, data["sentence"],
                     _claims_sentence(data, sections))
    return Report("study", header, (
        S.StudySummary(tuple(summary), S.Overview(tuple(overview["columns"]),
                                                  tuple(tuple(r["cells"]) for r in overview["rows"]),
                                                  tuple(r["key"] for r in overview["rows"])), gallery),
        *sections,
        family,
        S.MethodNotes(_notes(results), _protocol_effect(results)),
        _appendix(runs),
    ), figures)


def _family_figures(results: Results, figures: dict[str, bytes]) -> S.ModelFigures:
    """Every run's own figures (``metrics.json["figures"]``: ``{name: {"file", "caption"}}``, files relative
    to the run's directory, drawn by its model family when it finished), copied under the report's
    ``figures/``; a figure whose file is missing or not a PNG is left out."""
    out = []
    taken: set[str] = set()
    for key, run in results["runs"].items():
        declared = run["metrics"].get("figures")
        rel = run.get("dir")
        if not isinstance(declared, dict) or not declared or results.directory is None or not isinstance(rel, str):
            continue
        slug = _slug(str(run.get("name", key)), taken)[1:]
        shown = []
        for name, entry in declared.items():
            file = entry.get("file") if isinstance(entry, dict) else None
            path = results.directory / rel / str(file) if file else None
            try:
                png = path.read_bytes() if path is not None else b""
            except OSError:
                png = b""
            if not png.startswith(b"\x89PNG"):
                continue
            shown.append(_figure(figures, f"figures/run-{slug}-{_slug(str(name), set())[1:]}.png", png,
                                 f"{name} of run {run.get('name', key)}", str(entry.get("caption") or name)))
        if shown:
            out.append(S.FamilyFigures(str(run.get("name", key)), str(key), tuple(shown)))
    return S.ModelFigures(tuple(out))


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
    ("linear probe (code)", "metrics.latent.probe_accuracy"),
]


def _anomaly(run: Mapping[str, Any], codes: Codes) -> dict[str, Any] | None:
    """A run trained without some classes (``data.exclude_labels``): how well its reconstruction error
    tells those classes' test images from the rest (:func:`aelab.latent.anomaly_scores`), from
    ``metrics.json["latent"]["anomaly"]`` when recorded, else from the run's ``codes.npz`` (the
    test errors and labels of its seeded test subsample). None for other runs or without codes."""
    held = setting(run, "data", "exclude_labels")
    if not held:
        return None
    got = (run["metrics"].get("latent") or {}).get("anomaly")
    if isinstance(got, Mapping) and isinstance(got.get("auc"), (int, float)):
        return dict(got)
    arrays = codes.get(run)
    if arrays is None or "test_errors" not in arrays or "test_labels" not in arrays:
        return None
    try:
        return L.anomaly_scores(arrays["test_errors"], arrays["test_labels"], held)
    except ValueError:  # the test subsample holds no image of the held-out class (or only those)
        return None


def _anomaly_note(anomaly: list[dict[str, Any] | None], names: tuple[str, ...] = ()) -> str:
    """The sentence under a sweep's table on held-out classes; ``names``: the classes' own names."""
    got = [a for a in anomaly if a]
    if not got:
        return ""
    best = max(got, key=lambda a: a["auc"])
    worst = min(got, key=lambda a: a["auc"])
    s = ("Anomaly detection: each run was trained without the held-out class(es) in its row, then every test sample "
         "was scored by its reconstruction error. The ROC-AUC is the chance that a random held-out sample "
         "reconstructs worse than a random sample of the trained classes: 0.5 is no better than guessing, 1 is a "
         "perfect detector.")
    if len(got) > 1:
        s += (f" Most detectable: {P.point_text(best['held_out'], names)} (AUC {best['auc']:.3f}); least: "
              f"{P.point_text(worst['held_out'], names)} (AUC {worst['auc']:.3f}).")
    return s


def _seed_stats(reps: list[list[Mapping[str, Any]]], get) -> tuple[list, list, list]:
    """Per point, the mean, min and max over its seed replicates of ``get(run)`` (None where none has it)."""
    mean, lo, hi = [], [], []
    for rs in reps:
        xs = [x for x in (get(r) for r in rs) if x is not None and math.isfinite(x)]
        mean.append(sum(xs) / len(xs) if xs else None)
        lo.append(min(xs) if xs else None)
        hi.append(max(xs) if xs else None)
    return mean, lo, hi


_ALL_INSIDE = "Across"  # how :func:`_seed_sentence` opens when every change is inside the seed spread
_SOME_OUTSIDE = "Over"


def _seed_sentence(short: str, values: list, reps: list[list[Mapping[str, Any]]], get, what: str) -> str:
    """In words, for each step between neighbouring values: is the change of ``what`` (mean over the
    seeds) inside the seeds' spread — the two values' ranges over the seeds overlap, so the seed
    alone could have made it — or outside it?"""
    order = list(range(len(values)))
    ordered = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if ordered:
        order.sort(key=lambda i: values[i])
    sep = " → " if ordered else " vs "  # classes or names have no direction to go in
    mean, lo, hi = _seed_stats(reps, get)
    inside, outside = [], []
    for a, b in zip(order, order[1:]):
        if None in (mean[a], mean[b], lo[a], lo[b], hi[a], hi[b]):
            continue
        step = f"{short}={fmt_value(values[a])}{sep}{fmt_value(values[b])}"
        if lo[b] <= hi[a] and lo[a] <= hi[b]:
            inside.append(step)
        else:
            outside.append(f"{step} ({N.fmt_change(mean[b], mean[a])})")
    k = len(reps[0])
    if not inside and not outside:
        return ""
    if not outside:
        return (f"{_ALL_INSIDE} {k} seeds per value, no change of the {what} between neighbouring values is larger than "
                f"the seed spread (the values' ranges over the seeds overlap for {'; '.join(inside)}), so none of "
                "them can be told from seed noise; the band in the loss panel is that range, the line the mean.")
    s = f"{_SOME_OUTSIDE} {k} seeds per value (the band in the loss panel is their range, the line their mean): "
    parts = []
    if outside:
        parts.append("the change of the " + what + " is larger than the seed spread for " + "; ".join(outside))
    if inside:
        parts.append(("the change is inside the seed spread, so not distinguishable from seed noise, for "
                      if not outside else "inside it, so not distinguishable from seed noise, for ") + "; ".join(inside))
    return s + ", and ".join(parts) + "."


def build_sweep_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Build and write ``report.html``, ``report.md`` and ``figures/*.png`` for the sweep in
    ``sweep_dir`` (:func:`sweep_report`, then :func:`write_report`). Returns ``{"html": Path, "md":
    Path, "figures": [Path, ...]}``."""
    return write_report(sweep_report(load_results(sweep_dir)), sweep_dir)


def sweep_report(results: Results) -> Report:
    """The content of a sweep's report (reads the runs' saved arrays; never trains or writes).

    ``results.json`` of a sweep: ``{"sweep", "parameter", "values", "runs", "points": [{"value",
    "run"}], "baseline": run key or null}``. The report shows a sweep plot (final train/val loss,
    SSIM, diversity, dead units against the value), one table row per point and reconstruction rows
    per value.
    """
    runs: dict[str, dict[str, Any]] = results["runs"]
    where = results.path
    points = results.get("points")
    if not isinstance(points, list) or not points:
        raise DataError(f"{where} has no 'points' list: it is not an aelab sweep results.json")
    for p in points:
        if p["run"] not in runs:  # each point is {"value", "run"} (checked as the file was read)
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
    # with other terms in the loss (an activity L1, a KL, ...), the reconstruction part on its own:
    # what the verdict reads
    penalised = P.has_penalty(*point_runs)
    judged = "loss/val reconstruction part" if penalised else "loss/val"
    if penalised:
        series[judged] = [P.recon_val_loss(r) for r in point_runs]
    if noisy:
        series["SSIM/clean input"] = [_get(r, "metrics.ssim") for r in point_runs]
        series["SSIM/noisy input"] = [_get(r, "metrics.noisy.ssim") for r in point_runs]
    else:
        series["SSIM"] = [_get(r, "metrics.ssim") for r in point_runs]
    series["diversity"] = [_get(r, "metrics.diversity") for r in point_runs]
    series["dead code units"] = [_get(r, "metrics.code.dead_units") for r in point_runs]
    series["linear-probe accuracy"] = [_get(r, "metrics.latent.probe_accuracy") for r in point_runs]
    codes = Codes(results.directory)
    anomaly = [_anomaly(r, codes) for r in point_runs]
    # a setting whose values are labels (held-out classes) is shown with the classes' own names
    names = codes.names(*point_runs) if P.names_labels(short) else ()
    series["held-out class ROC-AUC"] = [a["auc"] if a else None for a in anomaly]
    path_of = {"loss/train": "final.loss", "loss/val": "final.val_loss", "SSIM": "metrics.ssim",
               "SSIM/clean input": "metrics.ssim", "SSIM/noisy input": "metrics.noisy.ssim",
               "diversity": "metrics.diversity", "dead code units": "metrics.code.dead_units",
               "linear-probe accuracy": "metrics.latent.probe_accuracy",
               "loss/val reconstruction part": None, "held-out class ROC-AUC": None}
    # only what the runs recorded: a metric no run has gets no panel (and no column below)
    series = {name: ys for name, ys in series.items()
              if any(y is not None and math.isfinite(y) for y in ys)}
    # the baseline as dotted reference lines, unless it is one of the points (then its row is marked)
    base_lines = base is not None and all(p["run"] != bkey for p in points)
    baselines = ({name: (_get(base, path_of[name]) if path_of[name] else P.recon_val_loss(base))
                  for name in series if name in path_of}
                 if base_lines else None)

    # seed replicates (aelab sweep --seeds K): each point's line is the mean over its seeds, its band their range
    reps = [_replicates(results, p["run"]) for p in points]
    seeded = all(len(r) >= 2 for r in reps)
    spreads: dict[str, tuple[list, list]] = {}
    seed_words = ""
    if seeded:
        for name in list(series):
            path = path_of.get(name)
            if name == "held-out class ROC-AUC":
                get = lambda r: (_anomaly(r, codes) or {}).get("auc")  # noqa: E731
            else:
                get = (lambda r, _p=path: _get(r, _p)) if path else P.recon_val_loss
            mean, lo, hi = _seed_stats(reps, get)
            series[name], spreads[name] = mean, (lo, hi)
        seed_words = _seed_sentence(short, values, reps, P.recon_val_loss,
                                    "reconstruction part of the final val loss" if penalised else "final val loss")
    noise = P.noise_level(point_runs, reps if seeded else None)
    seen = P.sweep_observation(short, values, point_runs, noise, class_names=names)
    # with seeds, a difference inside the seeds' spread is no finding: then that is the answer
    lead = (seed_words if seed_words and seed_words.startswith(_ALL_INSIDE)
            else seen["lead"] + (" " + seed_words if seed_words else ""))
    # "noise" only where seeds measured it; else the band is the 1% under which a change is read as none
    within = "change within noise" if noise.get("measured") else f"change under {N.fmt_pct(noise['rel']).lstrip('+')}"
    panel_notes = ({"loss": f"{judged.split('/')[1]}: {within}"} if seen["within_noise"] else None)
    band_of = "reconstruction part of the val loss" if penalised else "val loss"
    band_pct = N.fmt_pct(noise["rel"]).lstrip("+")
    band_text = (f"the run-to-run noise band of the {band_of} (±{band_pct})" if noise.get("measured") else
                 f"±{band_pct} around the {band_of}, under which a change is read as none (run-to-run noise was "
                 "not measured: no replicate seeds)")
    figures: dict[str, bytes] = {}
    k_seeds = len(reps[0]) if seeded else 0
    plot_caption = (
        f"Final losses and diagnostics against {parameter}; "
        + (f"each line is the mean over {k_seeds} seeds per value and the shaded band around it their range (lowest "
           "to highest): a change between two values whose bands overlap could come from the seed alone"
           if seeded else f"shaded: {band_text}")
        + ("; dotted lines: the baseline run" if base_lines else "")
        + ". Accuracies and ROC-AUC are drawn on their whole range, 0 to 1; every other y-axis spans at least "
        f"{100 * F.MIN_REL_SPAN:g}% of its values, so a wiggle of a few percent stays small.")
    plot = (_figure(figures, "figures/sweep.png",
                    F.sweep_plot([P.point_text(x, names) for x in values] if names else values, series, parameter,
                                 results.get("log_x"), baselines=baselines,
                                 bands={judged: noise["rel"]} if judged in series and not seeded else None,
                                 band_label="noise band" if noise.get("measured") else f"±{band_pct}: no change",
                                 panel_notes=panel_notes, spreads=spreads or None,
                                 ylims={"linear-probe accuracy": LS.ACCURACY_AXIS,
                                        "held-out class ROC-AUC": LS.ACCURACY_AXIS}),
                    f"Final losses and diagnostics against {parameter}", plot_caption) if series else None)

    every = point_runs + ([base] if base is not None else [])
    # the model's own diagnostics (metrics.family), one column each; ranges of per-unit lists are left to
    # the question tables
    fam_keys = [k for k in P.family_keys(*every)
                if not any(isinstance(P.family_value(r, k), (list, tuple)) for r in every)]
    stochastic = [P.code_is_mean(r) for r in every]
    code = " (of μ)" if all(stochastic) else " (of μ where the encoder is stochastic)" if any(stochastic) else ""
    # with seeds, the metric columns are each value's mean over its seeds (as the plot's lines); the
    # columns that are one run's own (its code units, diagnostics, held-out AUC) show the first seed
    mean_of = f" (mean of {k_seeds} seeds)" if seeded else ""
    first = " (first seed)" if seeded else ""
    columns = [label + mean_of for label, _ in _SWEEP_COLUMNS] + ["dead code units" + code + first]
    if noisy:
        columns += ["noisy: SSIM" + mean_of, "noisy: PSNR (dB)" + mean_of]
    columns += [P.family_label(k, *every) + first for k in fam_keys]
    columns += ["held-out class ROC-AUC (reconstruction error)" + first, "held-out test images / the rest"]
    if seeded:
        columns += [f"final val loss over {k_seeds} seeds: mean (min – max)"]
    # on data whose factors of variation are known: how disentangled each run's code is (MIG)
    migs = [_mig(r, codes) for r in point_runs]
    base_mig = _mig(base, codes) if base is not None and bkey not in [p["run"] for p in points] else None
    columns += ["MIG (known factors)" + first]
    table: list[S.SweepRow] = []

    def metric(run: Mapping[str, Any], path: str, i: int | None) -> str:
        """A metric's cell: the run's value, or with seeds the mean over the point's seed runs."""
        if not seeded or i is None:
            return N.fmt_num(_get(run, path))
        return N.fmt_num(_seed_stats([reps[i]], lambda r: _get(r, path))[0][0])

    def row(label: str, run: Mapping[str, Any], key: str, is_base: bool, i: int | None = None) -> S.SweepRow:
        cells = [metric(run, path, i) for _, path in _SWEEP_COLUMNS] + [_dead_units(run)]
        if noisy:
            cells += [metric(run, "metrics.noisy.ssim", i), metric(run, "metrics.noisy.psnr", i)]
        cells += [P.family_cell(run, k) for k in fam_keys]
        a = anomaly[i] if i is not None else None
        cells += [N.fmt_num(a["auc"], 3) if a else "—",
                  f"{a['n_held_out']} / {a['n_rest']}" if a else "—"]
        if seeded:
            vals = [x for x in (_get(r, "final.val_loss") for r in reps[i]) if x is not None] if i is not None else []
            cells.append(f"{N.fmt_num(sum(vals) / len(vals))} ({N.fmt_num(min(vals))} – {N.fmt_num(max(vals))})"
                         if vals else "—")
        m = migs[i] if i is not None else base_mig
        cells.append(N.fmt_num(m, 3))
        return S.SweepRow(value=label, run=str(run.get("name", key)), cells=tuple(cells), baseline=is_base)

    for i, (p, r) in enumerate(zip(points, point_runs)):
        table.append(row(P.point_text(p["value"], names), r, p["run"], p["run"] == bkey, i))
    if base is not None and all(p["run"] != bkey for p in points):
        table.append(row("baseline", base, bkey, True))
    # a column no run has a number for is left out
    keep = [i for i in range(len(columns)) if any(r.cells[i] != "—" for r in table)]
    columns = [columns[i] for i in keep]
    table = [S.SweepRow(r.value, r.run, tuple(r.cells[i] for i in keep), r.baseline) for r in table]

    samples = Samples(results.directory)
    recon_rows: list[tuple[str, np.ndarray]] = []
    for p, r in zip(points, point_runs):
        s = samples.get(r)
        if s is None:
            continue
        if not recon_rows:
            recon_rows.append(("original", s["original"]))
        label = f"{short}={fmt_value(p['value'])}"
        if "noisy" in s and "recon_noisy" in s:
            recon_rows.append((f"{label} noisy input", s["noisy"]))
            recon_rows.append((f"{label} denoised", s["recon_noisy"]))
        else:
            recon_rows.append((label, s["recon"]))
    recon = (_figure(figures, "figures/sweep-recon.png",
                     _recon_png(recon_rows, [(f"{short}={fmt_value(p['value'])}", r)
                                             for p, r in zip(points, point_runs)]),
                     f"Reconstructions for each value of {parameter}",
                     _recon_caption(sample_shape(*point_runs), per_value=parameter)) if recon_rows else None)

    mig_fig, mig_sentence = None, ""
    if sum(m is not None for m in migs) >= 2:
        recon_name = ("val loss, reconstruction part" if penalised else "val loss")
        recon_vals = [P.recon_val_loss(r) for r in point_runs]
        mig_fig = _figure(
            figures, "figures/sweep-mig.png",
            F.sweep_plot([P.point_text(x, names) for x in values] if names else values,
                         {"MIG (known factors)": migs, recon_name: recon_vals}, parameter, results.get("log_x"),
                         ylims={"MIG (known factors)": (0.0, min(1.02, max(0.1, 1.25 * max(
                             m for m in migs if m is not None))))}),
            f"MIG and reconstruction against {parameter}",
            f"Left: the mutual information gap (MIG, Chen et al. 2018) of each run's test codes against the data's "
            f"known factors of variation, from 0 (no code dimension holds a factor alone) to 1 (each factor in one "
            f"dimension of its own), its axis from 0; right: the {recon_name}, against {parameter}, its axis spanning "
            f"at least {100 * F.MIN_REL_SPAN:g}% of its values.")
        mig_sentence = _mig_sentence(short, values, migs, recon_vals,
                                     "reconstruction part of the val loss" if penalised else "val loss", noise["rel"])

    name = str(results.get("sweep") or "")
    header = _header(results, "sweep", f"Sweep {name}" + ("" if parameter in name else f" over {parameter}"),
                     samples.missing, _data_block(results)["sentence"])
    sweep = S.SweepSection(
        parameter=parameter, values=tuple(P.point_text(x, names) for x in values), plot=plot,
        columns=tuple(columns), table=tuple(table), observation=S.Observation(lead, tuple(seen["evidence"])),
        anomaly_note=_anomaly_note(anomaly, names), recon=recon, mig=mig_fig, mig_sentence=mig_sentence)
    return Report("sweep", header, (sweep, _family_figures(results, figures),
                                    S.MethodNotes(_notes(results), _protocol_effect(results)), _appendix(runs)), figures)


#: data sets whose factors of variation are known, by ``data.dataset``: how to get a split's factors from a
#: data config, and their names
_FACTORS = {"shapes": (shapes.factors, shapes.FACTOR_NAMES)}


def _mig(run: Mapping[str, Any], codes: Codes) -> float | None:
    """MIG (:func:`aelab.disentangle.mig`) of a run's saved test codes against the known factors of the same
    test images; None where the data's factors are unknown or the run saved no codes."""
    known = _FACTORS.get(str(setting(run, "data", "dataset")))
    arrays = codes.get(run) if known is not None else None
    if arrays is None or "test_codes" not in arrays or "test_index" not in arrays:
        return None
    try:
        data = RunConfig.from_dict({k: v for k, v in run["config"].items() if k != "config_hash"}).data
        factors = known[0](data, "test")[np.asarray(arrays["test_index"])]
        return float(mig(np.asarray(arrays["test_codes"]), factors, names=known[1])["mig"])
    except (ConfigError, ValueError, IndexError):  # a config this version cannot read, codes of other images
        return None


def _mig_sentence(short: str, values: list, migs: list, recon: list, recon_name: str, noise: float) -> str:
    """What the sweep shows about disentanglement against reconstruction, in plain words, from the numbers:
    MIG and the reconstruction error at the lowest and the highest value of the setting (and MIG's peak)."""
    pts = [(x, m, r) for x, m, r in zip(values, migs, recon)
           if m is not None and isinstance(x, (int, float)) and not isinstance(x, bool)]
    if len(pts) < 2:
        return ""
    pts.sort(key=lambda t: t[0])
    (x0, m0, r0), (x1, m1, r1) = pts[0], pts[-1]
    dm = m1 - m0
    mig_words = ("rises" if dm > MIG_STEP else "falls" if dm < -MIG_STEP else "stays about the same")
    s = (f"As {short} goes from {fmt_value(x0)} to {fmt_value(x1)}, MIG {mig_words} "
         f"({N.fmt_num(m0, 3)} → {N.fmt_num(m1, 3)})")
    top = max(pts, key=lambda t: t[1])
    if top not in (pts[0], pts[-1]) and top[1] - max(m0, m1) > MIG_STEP:
        s += f", highest at {short}={fmt_value(top[0])} ({N.fmt_num(top[1], 3)})"
    worse = None
    if r0 is not None and r1 is not None and r0 > 0:
        rel = (r1 - r0) / r0
        worse = True if rel > noise else False if rel < -noise else None
        s += (f", and the {recon_name} {'gets worse' if worse else 'improves' if worse is False else 'barely moves'}"
              f" ({N.fmt_num(r0)} → {N.fmt_num(r1)})")
    s += "."
    if dm > MIG_STEP and worse:
        s += (f" That is the trade-off between disentanglement and reconstruction: as {short} rises, the code's "
              "dimensions each hold one factor of the data more cleanly, and the reconstructions pay for it.")
    elif dm > MIG_STEP:
        s += " Here the code grows more disentangled without a reconstruction cost larger than the noise."
    else:
        s += f" This sweep does not show a code growing more disentangled as {short} rises."
    return s


#: the change of MIG (on its 0–1 scale) read as a change: below it, the plug-in estimate's noise could explain it
MIG_STEP = 0.02
