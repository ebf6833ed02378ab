"""Prose: what two runs' numbers say, in sentences, and the vocabulary the report writes them with.

It never reads files, trains or draws; the report's sections call it on run records (one entry of
``results.json["runs"]``: ``{"name", "dir", "config", "history", "metrics"}``).

* :func:`observation` answers a question from the numbers of its two runs: first plain sentences
  (what the variant changes, whether that made the reconstructions better or worse beyond the
  run-to-run noise, and what the code and family diagnostics show about why), then the numbers
  that back them; :func:`sweep_observation` does the same for a one-parameter sweep.
  :func:`noise_level` says how large a difference must be to count (seed replicates when there are
  any, else how much the val loss still moved over the last epoch; at least 1%).

* Named loss terms: a run's ``history["terms"]``/``["val_terms"]`` split its loss into the
  reconstruction and the other terms it has. :func:`penalty_terms` lists those other terms,
  :func:`term_phrase` names them in sentences, :func:`recon_val_loss` is the reconstruction part of
  the val loss that every verdict reads. A history without named terms (older results) has just
  "the penalty". :func:`comparable_losses` tells a loss summed over an image's pixels from one
  averaged over them (then the per-pixel BCE is compared instead).

* Family diagnostics (``metrics.family``) are shown, named and defined from the run's family
  (``aelab.models.FAMILIES``): :func:`family_keys`, :func:`family_cell`, :func:`family_docs`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from ..numfmt import fmt_change, fmt_num, fmt_pct, units_text
from ..numfmt import finite as _finite
from ..numfmt import fmt_setting as _fmt_setting
from ..numfmt import fmt_value as _fmt_point
from ..numfmt import fmt_vs as _vs
from ..models import FAMILIES, Family
from .claims import history_curve
from .claims import value_at as _get
from .records import setting


def noise_factor(run: Mapping[str, Any]) -> float | None:
    """The run's noise factor from its config (``data.noise_factor``), or None."""
    for nf in (setting(run, "data", "noise_factor"), setting(run, "noise_factor")):  # the latter: flat, older configs
        if isinstance(nf, (int, float)) and not isinstance(nf, bool):
            return float(nf)
    return None


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


# --------------------------------------------------------------------------------------------
# named loss terms: the reconstruction part and every other term of the loss
# --------------------------------------------------------------------------------------------
#: the reconstruction term's key in ``history["terms"]``; every other term is a penalty on top of it.
RECONSTRUCTION = "reconstruction"
#: the stand-in for the penalty of a history without named terms (results.json written before
#: ``history["terms"]``): ``history["penalty"]`` is then all we know.
LEGACY_PENALTY = "penalty"

#: what the report says of the two terms it knows without a family: the reconstruction, and the
#: penalty of a history without named terms. Every other term is a family's (``Family.terms``).
_GENERIC_TERM_DOCS: dict[str, str] = {
    RECONSTRUCTION: (
        "The reconstruction error of the loss, as the run's config sets it (binary cross-entropy or MSE): a mean "
        "over pixels for most models, a sum over an image's pixels for those that report a loss per image. The "
        "report judges better or worse reconstructions on this part of the val loss alone."),
    LEGACY_PENALTY: "Everything in the loss besides the reconstruction error (this run recorded no named terms).",
}


def _families_with(attr: str, key: str) -> Any:
    """``getattr(family, attr)[key]`` of the first registered family that has ``key`` there, else None:
    a loss term's label, purpose or doc (a term name belongs to the family that adds it)."""
    for fam in FAMILIES.values():
        table = getattr(fam, attr)
        if key in table:
            return table[key]
    return None


def term_name(key: str) -> str:
    """The display name of a loss term: ``"kl"`` -> ``"KL"``; an unknown key with spaces for underscores."""
    if key in (RECONSTRUCTION, LEGACY_PENALTY):
        return key
    label = _families_with("term_labels", key)
    return str(label) if label is not None else str(key).replace("_", " ")


def term_phrase(keys: Sequence[str]) -> str:
    """``["kl"]`` -> ``"KL term"``; ``["kl", "activity_l1"]`` -> ``"KL and activity L1 terms"``;
    the legacy penalty -> ``"penalty"``."""
    keys = list(keys)
    if not keys:
        return "penalty"
    if keys == [LEGACY_PENALTY]:
        return "penalty"
    names = [term_name(k) for k in keys if k != LEGACY_PENALTY]
    if len(names) == 1:
        return f"{names[0]} term"
    return ", ".join(names[:-1]) + f" and {names[-1]} terms"


def term_path(key: str, val: bool = False) -> str:
    """The :func:`resolve` path of a term's last epoch (``final.val_terms.kl``, or ``final.penalty`` for the
    legacy penalty)."""
    if key == LEGACY_PENALTY:
        return "final.val_penalty" if val else "final.penalty"
    return f"final.{'val_terms' if val else 'terms'}.{key}"


def _term_keys(run: Mapping[str, Any]) -> list[str] | None:
    """The named terms a run's history records (reconstruction included), or None when it has none."""
    history = run.get("history") or {}  # terms and val_terms: dicts of series (checked as results were read)
    keys: list[str] = []
    for block in ("terms", "val_terms"):
        keys += [str(k) for k in history.get(block) or {} if str(k) not in keys]
    return keys or None


def penalty_terms(*runs: Mapping[str, Any]) -> list[str]:
    """The loss terms besides the reconstruction that any of the runs has, in order of appearance.

    A run that records named terms contributes the terms it has (an autoencoder without an
    activity penalty has none); a run without named terms but with a positive ``penalty`` history
    contributes :data:`LEGACY_PENALTY`.
    """
    out: list[str] = []
    for r in runs:
        keys = _term_keys(r)
        if keys is None:
            ps = [_get(r, "final.val_penalty"), _get(r, "final.penalty")]
            keys = [LEGACY_PENALTY] if any(p is not None and math.isfinite(p) and p > 0 for p in ps) else []
        out += [k for k in keys if k != RECONSTRUCTION and k not in out]
    return out


def has_penalty(*runs: Mapping[str, Any]) -> bool:
    """True when any of the runs has a loss term besides the reconstruction (an activity L1, a KL, ...)."""
    if penalty_terms(*runs):
        return True
    for r in runs:  # a positive penalty history always counts, named terms or not
        p = _get(r, "final.val_penalty")
        if p is None:
            p = _get(r, "final.penalty")
        if p is not None and math.isfinite(p) and p > 0:
            return True
    return False


def recon_val_loss(run: Mapping[str, Any]) -> float | None:
    """The reconstruction part of the final val loss (``val_terms.reconstruction``, else
    ``val_loss - val_penalty``): the reconstruction error alone, which is what "better or worse
    reconstructions" is about."""
    r = _get(run, term_path(RECONSTRUCTION, val=True))
    if r is not None and math.isfinite(r):
        return r
    v = _get(run, "final.val_loss")
    if v is None:
        return None
    p = _get(run, "final.val_penalty")
    return v - p if p is not None and math.isfinite(p) else v


def _recon_val_curve(run: Mapping[str, Any]) -> list[float]:
    try:
        rec = history_curve(run, f"val_terms.{RECONSTRUCTION}")
    except ValueError:
        rec = None
    curve = history_curve(run, "val_loss")
    if rec is not None and len(rec) == len(curve):
        return rec
    try:
        pen = history_curve(run, "val_penalty")
    except ValueError:
        return curve
    if len(pen) != len(curve):
        return curve
    return [c - (q if math.isfinite(q) else 0.0) for c, q in zip(curve, pen)]


def loss_scale(run: Mapping[str, Any]) -> float | None:
    """How many times larger the run's reconstruction loss is than its per-pixel test BCE.

    About 1 for a loss averaged over pixels (0.3 or so for MSE), about the number of pixels for a
    loss summed over an image's pixels: two runs whose scales differ by :data:`SCALE_GAP` or more
    report their losses in different units. None when a number is missing.
    """
    rec, bce = recon_val_loss(run), _get(run, "metrics.bce")
    if rec is None or bce is None or not _finite(rec, bce) or rec <= 0 or bce <= 0:
        return None
    return rec / bce


#: two loss scales (:func:`loss_scale`) this many times apart are different units, not a difference.
SCALE_GAP = 20.0


def comparable_losses(*runs: Mapping[str, Any]) -> bool:
    """False when the runs' losses are on different scales (a sum per image beside a mean per pixel)."""
    scales = [s for s in (loss_scale(r) for r in runs) if s is not None]
    return not scales or max(scales) / min(scales) < SCALE_GAP


def val_loss_change(baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> str:
    """How the variant's final val loss compares with the baseline's, for a summary cell or line.

    A ratio (or difference, :func:`fmt_change`) only when both losses measure the same thing; when
    one holds a term the other lacks (:func:`loss_terms_differ`: a penalty), the reconstruction
    term they share is compared instead, and said so; losses on different scales
    (:func:`comparable_losses`) are not compared.
    """
    b, v = baseline_run, variant_run
    if not comparable_losses(b, v):
        return "not comparable (losses on different scales)"
    if loss_terms_differ(b, v):
        change = fmt_change(recon_val_loss(v), recon_val_loss(b))
        return "not comparable" if change == "—" else f"{change} (reconstruction term; the totals hold different terms)"
    return fmt_change(_get(v, "final.val_loss"), _get(b, "final.val_loss"))


def loss_terms_differ(baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> str | None:
    """Why two runs' *total* losses do not measure the same thing, or None when they do.

    A loss with a penalty (a KL sparsity term, an activity L1, a KL to the prior) beside one without
    it is the reconstruction plus something the other does not hold: their ratio mixes two
    quantities, so the totals are not compared; the reconstruction term both share is. Returns a
    clause such as ``"only the variant's loss includes the KL sparsity term"``.
    """
    b, v = penalty_terms(baseline_run), penalty_terms(variant_run)
    parts = []
    if [k for k in v if k not in b]:
        parts.append(f"only the variant's loss includes the {term_phrase([k for k in v if k not in b])}")
    if [k for k in b if k not in v]:
        parts.append(f"only the baseline's loss includes the {term_phrase([k for k in b if k not in v])}")
    return " and ".join(parts) or None


# --------------------------------------------------------------------------------------------
# family diagnostics (metrics.family)
# --------------------------------------------------------------------------------------------
def family_block(run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``metrics.family`` of a run, or None."""
    return (run.get("metrics") or {}).get("family")  # a {"name", ...} object (checked as results were read)


def family_name(run: Mapping[str, Any]) -> str | None:
    """The run's model family: ``metrics.family.name``, else ``config.model.family``, else None."""
    block = family_block(run)
    if block is not None and isinstance(block.get("name"), str):
        return block["name"]
    fam = setting(run, "model", "family")
    return fam if isinstance(fam, str) else None


def family_of_run(run: Mapping[str, Any]) -> Family | None:
    """The run's :class:`~aelab.models.family.Family` from the registry, or None (no name recorded, or
    a family not registered in this process)."""
    name = family_name(run)
    return FAMILIES.get(name) if name is not None else None


def _families(*runs: Mapping[str, Any]) -> list[Family]:
    """The runs' families, each once, in the runs' order."""
    out: list[Family] = []
    for r in runs:
        fam = family_of_run(r)
        if fam is not None and fam not in out:
            out.append(fam)
    return out


def _shown(key: str, *runs: Mapping[str, Any]) -> Mapping[str, Any]:
    """How diagnostic ``key`` is shown (``Family.shown``): from the runs' families, else any family's."""
    for fam in _families(*runs) or list(FAMILIES.values()):
        if key in fam.shown:
            return fam.shown[key]
    spec = _families_with("shown", key)
    return spec if spec is not None else {}


def _diagnostic_order(*runs: Mapping[str, Any]) -> list[str]:
    """Every diagnostic key the runs' families define, in their order."""
    order: list[str] = []
    for fam in _families(*runs):
        order += [k for k in fam.diagnostics if k not in order]
    return order


def diagnostic_mode(key: str, *runs: Mapping[str, Any]) -> str | None:
    """How two runs' values of diagnostic ``key`` compare (as :func:`fmt_change`; None: not compared)."""
    return _shown(key, *runs).get("mode", "ratio")


def code_is_mean(run: Mapping[str, Any]) -> bool:
    """True when the run's code is the mean of a posterior (``Family.code == "mean"``): its code
    statistics are about the posterior mean μ, not a deterministic code."""
    fam = family_of_run(run)
    return fam is not None and fam.code == "mean"


def code_is_discrete(run: Mapping[str, Any]) -> bool:
    """True when the run's code is discrete (``Family.code == "discrete"``, codebook
    indices): its values are names of codebook entries, not coordinates — no map, no distances."""
    fam = family_of_run(run)
    return fam is not None and fam.code == "discrete"


def family_keys(*runs: Mapping[str, Any]) -> list[str]:
    """The family diagnostics any of the runs has, each once: the known ones in table order, then the rest."""
    present: list[str] = []
    for r in runs:
        block = family_block(r) or {}
        present += [str(k) for k in block if k != "name" and str(k) not in present]
    order = _diagnostic_order(*runs)
    known = [k for k in order if k in present and _shown(k, *runs).get("table", True)]
    folded = {_shown(k, *runs)[f] for k in known for f in ("of", "target") if f in _shown(k, *runs)}
    known = [k for k in known if k not in folded]
    return known + [k for k in present if k not in order]


def family_label(key: str, *runs: Mapping[str, Any]) -> str:
    """How diagnostic ``key`` is named (its family's ``shown`` label; else the key with spaces)."""
    return str(_shown(key, *runs).get("label", key.replace("_", " ")))


def family_value(run: Mapping[str, Any], key: str) -> Any:
    """The raw value of ``metrics.family.<key>`` (None when absent)."""
    block = family_block(run)
    return None if block is None else block.get(key)


def family_number(run: Mapping[str, Any], key: str) -> float | None:
    """``metrics.family.<key>`` as a float when it is a (non-bool) number, else None."""
    v = family_value(run, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def family_cell(run: Mapping[str, Any], key: str) -> str:
    """A family diagnostic as a table cell: ``"2 / 2"``, ``"no"``, ``"0.0871 (ρ 0.05)"``, ``"0.03 – 0.67"``."""
    v = family_value(run, key)
    spec = _shown(key, run)
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        xs = [float(x) for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
        xs = [x for x in xs if math.isfinite(x)]
        return f"{fmt_num(min(xs), 3)} – {fmt_num(max(xs), 3)}" if xs else "—"
    if isinstance(v, (int, float)):
        s = fmt_num(v)
        of = family_number(run, spec["of"]) if "of" in spec else None
        if of is not None:
            s = f"{s} / {fmt_num(int(of)) if of.is_integer() else fmt_num(of)}"
        target = family_number(run, spec["target"]) if "target" in spec else None
        if target is not None:
            symbol = spec.get("target_symbol")
            s += f" ({symbol} {target:g})" if symbol else f" (target {target:g})"
        return s
    return str(v)


def family_docs(*runs: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{"name", "text"}]``: the definition of every family diagnostic the runs have (appendix)."""
    present: list[str] = []
    for r in runs:
        present += [str(k) for k in (family_block(r) or {}) if k != "name" and str(k) not in present]
    known = _diagnostic_order(*runs)
    docs: dict[str, str] = {}
    for fam in _families(*runs):
        docs.update({k: d for k, d in fam.diagnostics.items() if k not in docs})
    order = [k for k in known if k in present] + [k for k in present if k not in known]
    return [{"name": k, "text": str(docs.get(k, "A diagnostic of this model's family (no definition recorded)."))}
            for k in order]


def term_docs(*runs: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{"key", "name", "text"}]``: the definition of every loss term the runs have, reconstruction first
    (``key`` as in ``history["terms"]``, ``name`` as the report writes it)."""
    keys = penalty_terms(*runs)
    if not keys:
        return []
    def doc(k: str) -> str:
        return str(_GENERIC_TERM_DOCS.get(k) or _families_with("terms", k) or "A term of this model's loss.")

    return [{"key": k, "name": term_phrase([k]), "text": doc(k)}
            for k in [RECONSTRUCTION, *keys]]


# --------------------------------------------------------------------------------------------
# run-to-run noise
# --------------------------------------------------------------------------------------------
#: the smallest relative difference of two final losses that we read as a real difference.
NOISE_FLOOR = 0.01


def noise_level(runs: Sequence[Mapping[str, Any]],
                replicates: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """The relative size of a final-val-loss difference that counts as no difference, and whether
    run-to-run noise was measured at all.

    With seed replicates (``replicates``: for some configs, the run records of the same config
    trained with different seeds) the noise is measured: the median over those configs of the
    spread of the final val loss across seeds, ``(max - min) / mean``, at least
    :data:`NOISE_FLOOR`; a smaller difference between runs is noise. Without them nothing says
    how large run-to-run noise is: only differences under :data:`NOISE_FLOOR` (1%) are read as no
    difference, and a larger one is reported as measured, never called noise. How much the val
    loss still moved over its last epoch (``|v[-1] - v[-2]| / |v[-1]|``, median over ``runs``) is
    said beside it — stopping one epoch earlier would move a result that much — but it is how far
    training had settled, not a noise estimate. (Both on the reconstruction part of the val loss,
    :func:`recon_val_loss`.)

    Returns ``{"rel": fraction, "measured": bool, "how": one sentence saying how "rel" was set}``.
    """
    everything = [*runs, *(r for reps in replicates or () for r in reps)]
    penalised = has_penalty(*everything)
    final = "reconstruction part of the final val loss" if penalised else "final val loss"
    val = "reconstruction part of the val loss" if penalised else "val loss"
    spreads = []
    for reps in replicates or ():
        vals = [x for x in (recon_val_loss(r) for r in reps) if x is not None and math.isfinite(x)]
        mean = sum(vals) / len(vals) if vals else 0.0
        if len(vals) >= 2 and mean > 0:
            spreads.append((max(vals) - min(vals)) / mean)
    floor = fmt_num(100 * NOISE_FLOOR, 2)
    if spreads:
        k = max(len(reps) for reps in replicates or ())
        est = _median(spreads)
        how = (f"This is the typical spread of the {final} across "
               f"{k} seeds of the same run "
               f"({fmt_pct(est).lstrip('+')}, the median over {len(spreads)} runs); "
               f"the threshold is never below {floor}%")
        return {"rel": max(NOISE_FLOOR, est), "measured": True, "how": how}
    steps = []
    for r in runs:
        try:
            curve = _recon_val_curve(r)
        except ValueError:
            continue
        if len(curve) >= 2 and _finite(curve[-1], curve[-2]) and curve[-1] != 0:
            steps.append(abs(curve[-1] - curve[-2]) / abs(curve[-1]))
    how = (f"not measured, as no replicate seeds were trained; differences in the {final} under "
           f"{fmt_pct(NOISE_FLOOR).lstrip('+')} are read as no difference, larger ones are reported as they are, "
           "not as noise")
    if steps:
        moved = _median(steps)
        how += (f". The {val} hardly moved over its last epoch (the median over {len(steps)} runs)"
                if moved < NOISE_FLOOR / 10 else
                f". The {val} still moved {fmt_pct(moved).lstrip('+')} over its last epoch (the median over "
                f"{len(steps)} runs): stopping one epoch earlier would move a result about that much")
    return {"rel": NOISE_FLOOR, "measured": False, "how": how, "moved": _median(steps) if steps else None}


def _noise_evidence(loss_name: str, nrel: float, noise: Mapping[str, Any]) -> str:
    """The evidence line on run-to-run noise: the threshold and how it was set, measured or not."""
    if noise.get("measured"):
        return (f"Run-to-run noise: differences in the {loss_name} under {fmt_pct(nrel).lstrip('+')} are read as "
                f"noise. {noise['how']}.")
    return f"Run-to-run noise: {noise['how']}."


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _rel_change(v: float, b: float) -> float | None:
    if not _finite(v, b) or b == 0:
        return None
    return (v - b) / abs(b)


# --------------------------------------------------------------------------------------------
# observations: what happened and why, in words, then the numbers
# --------------------------------------------------------------------------------------------
_SKIP_CONFIG = {"name", "config_hash"}
_ABSENT = object()


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        elif key not in _SKIP_CONFIG:
            out[key] = v
    return out


def config_changes(baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The settings the variant changes: ``[(dotted key, baseline value, variant value), ...]``."""
    bc, vc = baseline_run.get("config"), variant_run.get("config")
    if not bc or not vc:  # a config is a JSON object where recorded (checked as results were read)
        return []
    b, v = _flat(bc), _flat(vc)

    def shown(d: dict[str, Any], k: str) -> str:
        return _fmt_setting(d[k]) if k in d else "(not set)"  # a setting of another model family

    def off(d: dict[str, Any], k: str) -> bool:  # absent, or a switched-off setting (0, none, false)
        return k not in d or d[k] is None or d[k] is False or (isinstance(d[k], (int, float)) and d[k] == 0)

    return [(k, shown(b, k), shown(v, k))
            for k in list(b) + [k for k in v if k not in b]
            if b.get(k, _ABSENT) != v.get(k, _ABSENT) and not ((k not in b or k not in v) and off(b, k) and off(v, k))]


def _what_changed(changes: list[tuple[str, str, str]]) -> str:
    if not changes:
        return "With the same settings as the baseline, the variant"
    if len(changes) > 3:
        return f"Changing {len(changes)} settings ({', '.join(k for k, _, _ in changes)})"
    return "Changing " + " and ".join(f"{k} from {b} to {v}" for k, b, v in changes)


def _degree(rel: float, noise: float) -> str:
    """'', 'slightly ', 'much ' for a relative change already known to exceed the noise."""
    a = abs(rel)
    return "slightly " if a < max(0.1, 2 * noise) else ("much " if a >= 0.5 else "")


def _code_units(run: Mapping[str, Any]) -> str:
    """What the code statistics count in a run: its code units, or the dimensions of μ for a stochastic encoder."""
    return "dimensions of the code μ" if code_is_mean(run) else "code units"


def _reasons(b: Mapping[str, Any], v: Mapping[str, Any], worse: bool | None, noise: float,
             who: str = "the variant", other: str = "the baseline") -> list[str]:
    """Plain-words clauses, from the diagnostics, that go with a difference between two runs.

    ``who`` names run ``v`` and ``other`` run ``b`` in the sentences.
    """
    out: list[str] = []
    # the families' own reading of their diagnostics first (a collapsed posterior explains everything else)
    for fam in _families(v, b):
        said = fam.explain(b, v, who, other) if fam.explain is not None else None
        if said:
            out.append(said)
    bdv, vdv = _get(b, "metrics.diversity"), _get(v, "metrics.diversity")
    if bdv is not None and vdv is not None and _finite(bdv, vdv):
        if vdv < 0.5 * bdv and vdv < 0.5:
            out.append(f"{who}'s outputs look nearly the same whatever the input — it has collapsed "
                       "towards one average image")
        elif bdv < 0.5 * vdv and bdv < 0.5:
            out.append(f"{who}'s outputs vary from input to input, where {other}'s look nearly all the same")
    bp, vp = _get(b, "metrics.latent.probe_accuracy"), _get(v, "metrics.latent.probe_accuracy")
    chance = _get(v, "metrics.latent.chance")
    if bp is not None and vp is not None and _finite(bp, vp):
        near = chance is not None and _finite(chance) and vp <= chance + 0.1
        if vp <= bp - 0.1:
            out.append(f"{who}'s code tells the classes apart far less well (a linear probe reads the label from "
                       f"it {fmt_pct(vp).lstrip('+')} of the time vs {fmt_pct(bp).lstrip('+')} for {other}"
                       + (", barely above chance" if near else "") + ")")
        elif vp >= bp + 0.1:
            out.append(f"{who}'s code tells the classes apart far better (linear probe {fmt_pct(vp).lstrip('+')} vs "
                       f"{fmt_pct(bp).lstrip('+')})")
    bd, vd = _get(b, "metrics.code.dead_units"), _get(v, "metrics.code.dead_units")
    units = _get(v, "metrics.code.units")
    if bd is not None and vd is not None and _finite(bd, vd):
        step = max(1.0, 0.1 * units) if units is not None and math.isfinite(units) else 1.0
        if vd - bd >= step:
            n = fmt_num(int(vd)) if math.isfinite(vd) else fmt_num(vd)
            of = f" of {who}'s {fmt_num(int(units))}" if units is not None and math.isfinite(units) else f" of {who}'s"
            out.append(f"{n}{of} {_code_units(v)} are dead (they never change), so the decoder gets fewer usable "
                       "numbers per image")
        elif bd - vd >= step:
            out.append(f"{who} uses more of its {_code_units(v)} (fewer are dead)")
    bz, vz = _get(b, "metrics.code.zero_fraction"), _get(v, "metrics.code.zero_fraction")
    if bz is not None and vz is not None and _finite(bz, vz) and vz >= 0.9 and vz - bz >= 0.2:
        out.append("almost every code value is exactly zero")
    bt, vt = _get(b, "final.loss"), _get(v, "final.loss")
    for key in penalty_terms(b, v):
        vp, bp = _get(v, term_path(key)), _get(b, term_path(key))
        if vp is None or vt is None or not _finite(vp, vt) or vt <= 0:
            continue
        vshare = vp / vt
        bshare = bp / bt if bp is not None and bt not in (None, 0) and _finite(bp, bt) else 0.0
        if vshare >= 0.2 and vshare > 2 * bshare:
            purpose = _families_with("term_purposes", key) or f"a smaller {term_phrase([key])}"
            out.append(f"the {term_phrase([key])} is a large part of {who}'s loss, so training trades "
                       f"reconstruction quality for {purpose}")
    vdrop, bdrop = _late_drop(v, "val_loss"), _late_drop(b, "val_loss")
    if worse and vdrop is not None and vdrop[0] < noise and bdrop is not None and bdrop[0] > 3 * noise:
        out.append(f"{who}'s training stalled early while {other}'s kept improving")
    return out


def _noisy_sentence(b: Mapping[str, Any], v: Mapping[str, Any], noise: float) -> str | None:
    vns, vin = _get(v, "metrics.noisy.ssim"), _get(v, "metrics.noisy.input_ssim")
    if vns is None or vin is None or not _finite(vns, vin):
        return None
    gain = vns - vin
    if gain > 0.05:
        s = ("From noisy inputs the variant's outputs are clearly closer to the clean images (by SSIM) than its "
             "noisy inputs were.")
    elif gain >= -0.05:
        s = ("From noisy inputs the variant's outputs are hardly closer to the clean images (by SSIM) than the noisy "
             "inputs themselves.")
    else:
        s = ("From noisy inputs the variant's outputs are further from the clean images (by SSIM) than the noisy "
             "inputs themselves: it does not remove the noise.")
    bns = _get(b, "metrics.noisy.ssim")
    if bns is not None and _finite(bns):
        word = _compare_word(vns, bns, rel=max(noise, NOISE_FLOOR))
        s += {"higher": " It denoises better than the baseline.", "lower": " It denoises less well than the baseline.",
              "about the same": " It denoises about as well as the baseline."}.get(word, "")
    return s


def _term_share(key: str, b: Mapping[str, Any], v: Mapping[str, Any], bt: float | None,
                vt: float | None) -> str | None:
    """'The KL term is 1.11% of the variant's final train loss (4.26% of the baseline's).'"""
    def share(run: Mapping[str, Any], total: float | None) -> float | None:
        p = _get(run, term_path(key))
        if p is None or total is None or not _finite(p, total) or total <= 0:
            return None
        return p / total

    vs, bs = share(v, vt), share(b, bt)
    if (vs or 0) <= 0 and (bs or 0) <= 0:
        return None
    the = f"The {term_phrase([key])}"
    none = f"no {term_phrase([key])}" if key != LEGACY_PENALTY else "no penalty"
    if vs is not None:
        s = f"{the} is {fmt_pct(vs).lstrip('+')} of the variant's final train loss"
        s += f" ({fmt_pct(bs).lstrip('+')} of the baseline's)" if bs is not None else f"; the baseline has {none}"
    else:
        s = f"{the} is {fmt_pct(bs).lstrip('+')} of the baseline's final train loss; the variant has {none}"
    return s + "."


def _code_heading(b: Mapping[str, Any], v: Mapping[str, Any]) -> str:
    """'Code', or which run's code is the posterior mean μ of a stochastic encoder."""
    bm, vm = code_is_mean(b), code_is_mean(v)
    if bm and vm:
        return "Code (the posterior mean μ of both runs)"
    if vm:
        return "Code (the variant's is its posterior mean μ)"
    if bm:
        return "Code (the baseline's is its posterior mean μ)"
    return "Code"


def _family_sentence(b: Mapping[str, Any], v: Mapping[str, Any]) -> str | None:
    """The family diagnostics of the two runs in one sentence (lists and folded keys left to the table)."""
    keys = [k for k in family_keys(b, v)
            if not isinstance(family_value(v, k) if family_value(v, k) is not None else family_value(b, k),
                              (list, tuple))]
    if not keys:
        return None
    bn, vn = family_name(b), family_name(v)
    hb, hv = family_block(b) is not None, family_block(v) is not None
    if hb and hv:
        head = f"Model diagnostics ({vn})" if vn == bn else f"Model diagnostics (variant {vn}, baseline {bn})"
    elif hv:
        head = f"The variant's model diagnostics ({vn})"
    else:
        head = f"The baseline's model diagnostics ({bn})"
    parts = []
    for k in keys:
        label = family_label(k, b, v)
        vc, bc = family_cell(v, k), family_cell(b, k)
        if hb and hv:
            mode = diagnostic_mode(k, b, v)
            vx, bx = family_number(v, k), family_number(b, k)
            change = fmt_change(vx, bx, mode) if mode and vx is not None and bx is not None else "—"
            parts.append(f"{label} {vc} vs {bc}" + (f" ({change})" if change != "—" else ""))
        else:
            parts.append(f"{label} {vc if hv else bc}")
    return f"{head}: " + "; ".join(parts) + "."


def latent_sentence(b: Mapping[str, Any], v: Mapping[str, Any]) -> str | None:
    """What the two codes hold, in numbers (``metrics.latent``): linear-probe and k-NN accuracy,
    k-means agreement with the labels, against chance."""
    parts = []
    for label, key in (("linear-probe accuracy", "probe_accuracy"), ("k-NN accuracy", "knn_accuracy"),
                       ("k-means ARI", "ari")):
        bx, vx = _get(b, f"metrics.latent.{key}"), _get(v, f"metrics.latent.{key}")
        if vx is None:
            continue
        parts.append(f"{label} {fmt_num(vx, 3)}" + (f" vs {fmt_num(bx, 3)}" if bx is not None else ""))
    if not parts:
        return None
    chance = _get(v, "metrics.latent.chance")
    tail = f" (chance: {fmt_num(chance, 3)})" if chance is not None else ""
    return "What the code holds (variant vs baseline, from the test codes): " + "; ".join(parts) + tail + "."


def observation(question: Mapping[str, Any], baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any],
                noise: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a question's two runs show: ``{"lead": sentences in words, "evidence": [number sentences]}``.

    ``lead`` answers the question in plain words — what the variant changes, whether that made the
    reconstructions better or worse beyond the run-to-run noise (``noise``, from
    :func:`noise_level`; estimated from the two runs when None), and what the diagnostics (dead
    code units, code sparsity, output diversity, penalty share, the shape of the loss curve) show
    about why. ``evidence`` lists the numbers that back it. Every sentence is generated from the
    measurements; sentences whose numbers are missing are left out.
    """
    b, v = baseline_run, variant_run
    if noise is None:
        noise = noise_level([b, v])
    nrel = float(noise["rel"])
    measured = bool(noise.get("measured"))  # seed replicates measured the noise; else none is claimed
    lead: list[str] = []
    evidence: list[str] = []

    # better or worse reconstructions: judged on the reconstruction part of the val loss (the other
    # terms — an activity L1, a KL, ... — are part of the loss but say nothing about the images)
    bv, vv = _get(b, "final.val_loss"), _get(v, "final.val_loss")
    bt, vt = _get(b, "final.loss"), _get(v, "final.loss")
    terms = penalty_terms(b, v)
    phrase = term_phrase(terms)
    penalised = has_penalty(b, v)
    comparable = comparable_losses(b, v)
    loss_name = "reconstruction part of the val loss" if penalised else "val loss"
    bl, vl = recon_val_loss(b), recon_val_loss(v)
    if not comparable:
        loss_name, bl, vl = "per-pixel BCE of the test reconstructions", _get(b, "metrics.bce"), _get(v, "metrics.bce")
    if bl is None or vl is None:
        loss_name, bl, vl = "train loss", bt, vt
    worse: bool | None = None
    changed = _what_changed(config_changes(b, v))
    rel = _rel_change(vl, bl) if bl is not None and vl is not None else None
    if rel is None:
        lead.append(f"{changed}: the runs recorded no comparable loss.")
    else:
        bs, vs = _get(b, "metrics.ssim"), _get(v, "metrics.ssim")
        ssim_word = _compare_word(vs, bs, rel=NOISE_FLOOR) if bs is not None and vs is not None else None
        if abs(rel) <= nrel:
            lead.append(f"{changed} made no difference to the {loss_name} beyond the run-to-run noise." if measured
                        else f"{changed} made no difference to the {loss_name} (under {fmt_pct(nrel).lstrip('+')}).")
            if ssim_word in ("higher", "lower"):
                lead[-1] = lead[-1][:-1] + f", though the variant's SSIM is a little {ssim_word}."
        else:
            worse = rel > 0
            word = "worse" if worse else "better"
            what = "the variant's reconstructions of clean test images" if _get(v, "metrics.noisy.ssim") is not None \
                else "the reconstructions"
            s = f"{changed} made {what} {_degree(rel, nrel)}{word}"
            agree = "lower" if worse else "higher"
            if ssim_word == agree:
                s += f" (higher {loss_name}, lower SSIM)" if worse else f" (lower {loss_name}, higher SSIM)"
            elif ssim_word in ("higher", "lower"):
                s += f" by the {loss_name}, though SSIM moves the other way"
            else:
                s += f" by the {loss_name}"
            lead.append(s + ".")
            if not measured:  # the difference stands as measured: nothing says how much of it chance could explain
                moved = noise.get("moved")
                lead.append("No replicate seeds were trained, so whether run-to-run noise could explain a difference "
                            "this size is not known" + (f"; the {loss_name} still moved as much over its last epoch, so "
                                                         "it may change with longer training" if moved is not None
                                                         and moved >= abs(rel) else "") + ".")
        if not comparable:
            lead.append("The two runs' losses are on different scales (one sums the error over an image's pixels, "
                        "the other averages it), so the verdict reads the per-pixel BCE of the test images instead.")
        elif penalised and bv is not None and vv is not None:
            full = _rel_change(vv, bv)
            if full is not None and abs(full) > abs(rel) + nrel:
                self_ = "themselves" if phrase.endswith("terms") else "itself"
                lead.append(f"The full val loss (with the {phrase}) moves further than that, because the {phrase} "
                            f"{self_} changed — a change in the {phrase} is not a change in the images.")
    reasons = _reasons(b, v, worse, nrel)
    if reasons:
        lead.append("The diagnostics suggest why: " + "; ".join(reasons) + ".")
    elif worse is not None:
        if family_block(b) is not None or family_block(v) is not None:
            lead.append("Neither the code diagnostics (dead units, sparsity, output diversity) nor the model's own "
                        "show a clear cause.")
        else:
            lead.append("The code diagnostics (dead units, sparsity, output diversity) show no clear cause.")
    vdrop = _late_drop(v, "val_loss")
    if worse and vdrop is not None and vdrop[0] > 0.05:
        lead.append("Its val loss was still falling at the end, so longer training may narrow the gap.")
    noisy = _noisy_sentence(b, v, nrel)
    if noisy:
        lead.append(noisy)

    # the numbers
    if bv is not None and vv is not None:
        apart = loss_terms_differ(b, v) if comparable else None
        if apart:  # a ratio of totals that hold different terms mixes two quantities
            s = f"Final val loss {fmt_num(vv, 3)} vs {fmt_num(bv, 3)} for the baseline (not compared: {apart})"
        elif comparable:
            s = f"Final val loss {_vs(vv, bv)} for the baseline"
        else:
            s = f"Final val loss {fmt_num(vv, 3)} vs {fmt_num(bv, 3)} for the baseline (different scales)"
        if penalised and comparable and bl is not None and vl is not None and loss_name != "train loss":
            s += f"; its reconstruction part {_vs(vl, bl)}"
        if bt is not None and vt is not None:
            s += f"; final train loss {_vs(vt, bt)}" if comparable and not apart else \
                f"; final train loss {fmt_num(vt, 3)} vs {fmt_num(bt, 3)}"
        evidence.append(s + ".")
        if not comparable and bl is not None and vl is not None:
            evidence.append(f"Per-pixel BCE of the test reconstructions {_vs(vl, bl)}.")
    elif bt is not None and vt is not None:
        evidence.append(f"Final train loss {_vs(vt, bt)} for the baseline.")
    for key in terms:
        s = _term_share(key, b, v, bt, vt)
        if s:
            evidence.append(s)
    vdrop, bdrop = _late_drop(v, "val_loss"), _late_drop(b, "val_loss")
    if vdrop is not None:
        s = f"From epoch {vdrop[1]} to the end the variant's val loss changed by {fmt_pct(-vdrop[0])}"
        if bdrop is not None:
            s += f" (baseline {fmt_pct(-bdrop[0])} from epoch {bdrop[1]})"
        evidence.append(s + ".")
    bs, vs = _get(b, "metrics.ssim"), _get(v, "metrics.ssim")
    bq, vq = _get(b, "metrics.psnr"), _get(v, "metrics.psnr")
    parts = []
    if bs is not None and vs is not None:
        parts.append(f"SSIM {_vs(vs, bs, 'diff')}")
    if bq is not None and vq is not None:
        parts.append(f"PSNR {_vs(vq, bq, 'diff', 'dB')}")
    if parts:
        evidence.append("Clean test images: " + ", ".join(parts) + ".")
    bd, vd = _get(b, "metrics.code.dead_units"), _get(v, "metrics.code.dead_units")
    bu, vu = _get(b, "metrics.code.units"), _get(v, "metrics.code.units")
    bz, vz = _get(b, "metrics.code.zero_fraction"), _get(v, "metrics.code.zero_fraction")
    parts = []
    if bd is not None and vd is not None:
        parts.append(f"{units_text(vd, vu)} units dead vs {units_text(bd, bu)} in the baseline")
    if bz is not None and vz is not None and (vz != 0 or bz != 0):
        parts.append(f"a fraction {fmt_num(vz, 3)} of code values exactly zero vs {fmt_num(bz, 3)}")
    if parts:
        evidence.append(_code_heading(b, v) + ": " + "; ".join(parts) + ".")
    fam = _family_sentence(b, v)
    if fam:
        evidence.append(fam)
    lat = latent_sentence(b, v)
    if lat:
        evidence.append(lat)
    bdv, vdv = _get(b, "metrics.diversity"), _get(v, "metrics.diversity")
    if bdv is not None and vdv is not None:
        evidence.append(f"Output diversity (1 = as varied as the test inputs) {_vs(vdv, bdv)}.")
    vns, bns = _get(v, "metrics.noisy.ssim"), _get(b, "metrics.noisy.ssim")
    if vns is not None:
        vnf, bnf = noise_factor(v), noise_factor(b)
        s = "Noisy inputs"
        if vnf is not None:
            s += f" (noise factor {fmt_num(vnf, 3)}" + (f" vs {fmt_num(bnf, 3)})" if bnf is not None and bns is not None
                                                         else ")")
        s += f": denoised SSIM {fmt_num(vns, 3)}"
        if bns is not None:
            s += f" vs {fmt_num(bns, 3)} for the baseline"
        vin = _get(v, "metrics.noisy.input_ssim")
        if vin is not None:
            s += f", where the noisy input itself scores {fmt_num(vin, 3)}"
            bin_ = _get(b, "metrics.noisy.input_ssim")
            if bin_ is not None and bns is not None:
                s += f" ({fmt_num(bin_, 3)} for the baseline's)"
        vnb, bnb = _get(v, "metrics.noisy.bce"), _get(b, "metrics.noisy.bce")
        if vnb is not None:
            s += f"; BCE against the clean images {fmt_num(vnb, 3)}"
            if bnb is not None:
                s += f" vs {fmt_num(bnb, 3)} ({fmt_change(vnb, bnb)})"
        evidence.append(s + ".")
    if rel is not None:
        evidence.append(_noise_evidence(loss_name, nrel, noise))
    if not lead and not evidence:
        return {"lead": "No numbers were recorded for these runs.", "evidence": []}
    return {"lead": " ".join(lead), "evidence": evidence}


def observe(question: Mapping[str, Any], baseline_run: Mapping[str, Any], variant_run: Mapping[str, Any],
            noise: Mapping[str, Any] | None = None) -> str:
    """:func:`observation` as one paragraph: the words first, then the numbers."""
    o = observation(question, baseline_run, variant_run, noise)
    return " ".join([o["lead"], *o["evidence"]]).strip()


# --------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------
#: what the values of a categorical setting are, for "across the held-out classes [0], [1]" (a
#: generic config key, not a data set's vocabulary)
_SETTING_NOUNS = {"exclude_labels": "the held-out classes"}


def names_labels(short: str) -> bool:
    """Whether a setting's values are class labels (then shown with the classes' names)."""
    return short in _SETTING_NOUNS


def point_text(value: Any, class_names: Sequence[str] = ()) -> str:
    """A swept value as written, with the classes' names after a list of labels: "[0] (setosa)"."""
    s = _fmt_point(value)
    if class_names and isinstance(value, (list, tuple)) and value and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(class_names) for c in value):
        s += " (" + ", ".join(str(class_names[c]) for c in value) + ")"
    return s


def _across(short: str, values: Sequence[Any], class_names: Sequence[str] = ()) -> str:
    """The values of an unordered setting, listed without implying an order: "the held-out classes
    [0], [1], [2]" or "activation = relu, sigmoid"."""
    listed = ", ".join(point_text(x, class_names) for x in values)
    noun = _SETTING_NOUNS.get(short)
    return f"{noun} {listed}" if noun else f"{short} = {listed}"


def sweep_observation(short: str, values: Sequence[Any], runs: Sequence[Mapping[str, Any]],
                      noise: Mapping[str, Any] | None = None, class_names: Sequence[str] = ()) -> dict[str, Any]:
    """What a one-parameter sweep shows: ``{"lead", "evidence", "within_noise"}``.

    ``lead`` says in words how the reconstructions change as ``short`` goes from the smallest value
    to the largest, judged on the reconstruction part of the final val loss
    (:func:`recon_val_loss`) — steadily worse, steadily better, best or worst inside, or not beyond
    the run-to-run noise (:func:`noise_level` over the sweep's runs) — and what the diagnostics show
    between the best and the worst point. ``evidence`` lists the numbers; ``within_noise`` is True
    when the whole spread is inside the noise. ``class_names``: the data set's class names, for a
    setting whose values are labels (:func:`names_labels`): "[0] (setosa)".
    """
    if noise is None:
        noise = noise_level(runs)
    nrel = float(noise["rel"])
    measured = bool(noise.get("measured"))
    # numbers have an order to go from and to; classes, names and lists do not: their prose lists
    # the values and compares them ("across the held-out classes [0], [1], [2]"), never "going from"
    ordered = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
    if ordered:
        order = sorted(range(len(values)), key=lambda i: values[i])
        values, runs = [values[i] for i in order], [runs[i] for i in order]
    penalised = has_penalty(*runs)
    phrase = term_phrase(penalty_terms(*runs))
    loss = "reconstruction part of the val loss" if penalised else "val loss"
    final = "reconstruction part of the final val loss" if penalised else "final val loss"
    pts = [(x, r, recon_val_loss(r)) for x, r in zip(values, runs)]
    pts = [(x, r, y) for x, r, y in pts if y is not None and math.isfinite(y)]
    if not pts:
        return {"lead": "No final val loss was recorded.", "evidence": [], "within_noise": None}
    ys = [y for _, _, y in pts]
    lo = min(range(len(pts)), key=lambda i: ys[i])
    hi = max(range(len(pts)), key=lambda i: ys[i])
    first, last = pts[0], pts[-1]
    spread = (ys[hi] - ys[lo]) / abs(ys[lo]) if ys[lo] != 0 else math.inf
    going = f"Going from {short}={_fmt_point(first[0])} to {short}={_fmt_point(last[0])}"
    lead: list[str] = []
    within = spread <= nrel
    if len(pts) < 2:
        lead.append(f"Only one point ({short}={_fmt_point(first[0])}) has a {final}; there is no trend to read.")
    elif within:
        beyond = " beyond the run-to-run noise" if measured else ""
        lead.append((f"{going} makes no difference to the reconstructions{beyond}" if ordered else
                     f"Across {_across(short, [x for x, _, _ in pts], class_names)}, the reconstructions do not "
                     f"differ{beyond}")
                    + f": the {final} stays within {fmt_pct(spread).lstrip('+')} across all points.")
    else:
        tol = nrel * abs(ys[lo])
        steps = [b - a for a, b in zip(ys, ys[1:])]
        what = ("the reconstructions of clean test images" if any(_get(r, "metrics.noisy.ssim") is not None
                                                                   for r in runs) else "the reconstructions")
        if not ordered:  # classes, names, lists: no order to rise or fall along
            lead.append(f"Across {_across(short, [x for x, _, _ in pts], class_names)}, the {final} is lowest at "
                        f"{short}={point_text(pts[lo][0], class_names)} and highest at "
                        f"{short}={point_text(pts[hi][0], class_names)}.")
        elif all(d >= -tol for d in steps) and ys[-1] > ys[0]:
            lead.append(f"{going} makes {what} {_degree(spread, nrel)}worse: the {final} "
                        "rises with it.")
        elif all(d <= tol for d in steps) and ys[-1] < ys[0]:
            lead.append(f"{going} makes {what} {_degree(spread, nrel)}better: the {final} "
                        "falls with it.")
        else:
            lead.append(f"The {final} does not move one way across the sweep: it is lowest at "
                        f"{short}={_fmt_point(pts[lo][0])} and highest at {short}={_fmt_point(pts[hi][0])}.")
        worst, best = f"the model at {short}={_fmt_point(pts[hi][0])}", f"the one at {short}={_fmt_point(pts[lo][0])}"
        reasons = _reasons(pts[lo][1], pts[hi][1], True, nrel, who=worst, other=best)
        if reasons:
            lead.append("The diagnostics suggest why: " + "; ".join(reasons) + ".")
        if not measured:
            lead.append("No replicate seeds were trained, so whether run-to-run noise could explain a spread this "
                        "size is not known.")
    den = [(x, _get(r, "metrics.noisy.ssim")) for x, r in zip(values, runs)]
    den = [(x, y) for x, y in den if y is not None and math.isfinite(y)]
    if len(den) >= 2:
        # ordered: the last value against the first; unordered: the best against the worst
        (x0, d0), (x1, d1) = (den[0], den[-1]) if ordered else (min(den, key=lambda t: t[1]), max(den, key=lambda t: t[1]))
        word = _compare_word(d1, d0, rel=NOISE_FLOOR)
        lead.append(f"From noisy inputs, the denoised outputs at {short}={_fmt_point(x1)} are "
                    + {"higher": "closer to the clean images than", "lower": "further from the clean images than",
                       "about the same": "as close to the clean images as"}.get(word, "not comparable with")
                    + f" at {short}={_fmt_point(x0)} (by SSIM).")
    full = [(x, _get(r, "final.val_loss")) for x, r in zip(values, runs)]
    full = [(x, y) for x, y in full if y is not None and math.isfinite(y)]
    if penalised and len(full) >= 2:
        fmin, fmax = min(y for _, y in full), max(y for _, y in full)
        if fmin > 0 and (fmax - fmin) / fmin > max(spread, 0) + nrel:
            lead.append(f"The full val loss (with the {phrase}) changes more than that: the extra change is the "
                        f"{phrase} {'themselves' if phrase.endswith('terms') else 'itself'}, not the images.")
    evidence = []

    def each(col: Sequence[tuple[Any, float]], fy: Callable[[float], str] = lambda y: fmt_num(y, 3)) -> str:
        return ", ".join(f"{fy(y)} at {short}={_fmt_point(x)}" for x, y in col)

    if len(pts) >= 2:
        ends = (f"{fmt_num(first[2], 3)} at {short}={_fmt_point(first[0])}, {fmt_num(last[2], 3)} at "
                f"{short}={_fmt_point(last[0])}" if ordered else each([(x, y) for x, _, y in pts]))
        evidence.append(
            f"{final[0].upper() + final[1:]}: {ends}; lowest {fmt_num(ys[lo], 3)} at {short}={_fmt_point(pts[lo][0])}, highest "
            f"{fmt_num(ys[hi], 3)} at {short}={_fmt_point(pts[hi][0])} ({fmt_change(ys[hi], ys[lo])} "
            f"from lowest to highest)."
        )
    if penalised and len(full) >= 2:
        evidence.append(f"Final val loss with the {phrase}: " + (
            f"{fmt_num(full[0][1], 3)} at {short}={_fmt_point(full[0][0])} to {fmt_num(full[-1][1], 3)} at "
            f"{short}={_fmt_point(full[-1][0])}." if ordered else each(full) + "."))
    for label, path in (("SSIM", "metrics.ssim"), ("output diversity", "metrics.diversity"),
                        ("dead code units", "metrics.code.dead_units"), ("denoised SSIM", "metrics.noisy.ssim")):
        col = [(x, _get(r, path)) for x, r in zip(values, runs)]
        col = [(x, y) for x, y in col if y is not None and math.isfinite(y)]
        if len(col) < 2:
            continue
        ymin, ymax = min(y for _, y in col), max(y for _, y in col)

        def fy(y: float, _count: bool = path.endswith("dead_units")) -> str:
            return fmt_num(int(y)) if _count and float(y).is_integer() else fmt_num(y, 3)

        scale = max(abs(ymin), abs(ymax))
        if path.endswith("dead_units"):
            same = ymax == ymin
        else:
            same = scale == 0 or (ymax - ymin) <= NOISE_FLOOR * scale
        if same:
            evidence.append(f"{label[0].upper() + label[1:]}: {fy(col[0][1])} at every point"
                            + ("" if path.endswith("dead_units") else
                               f" (within {fmt_num(100 * NOISE_FLOOR, 2)}%)") + ".")
        elif ordered:
            evidence.append(f"{label[0].upper() + label[1:]} goes from {fy(col[0][1])} at "
                            f"{short}={_fmt_point(col[0][0])} to {fy(col[-1][1])} at "
                            f"{short}={_fmt_point(col[-1][0])} (range {fy(ymin)}–{fy(ymax)}).")
        else:
            evidence.append(f"{label[0].upper() + label[1:]}: {each(col, fy)}.")
    evidence.append(_noise_evidence(loss, nrel, noise))
    return {"lead": " ".join(lead), "evidence": evidence, "within_noise": within if len(pts) >= 2 else None}
