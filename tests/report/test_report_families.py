"""The report for model families: named loss terms, family diagnostics, the code of a stochastic encoder.

Synthetic results.json files in the style of tests/report/test_report.py (no training): runs whose
history has ``terms``/``val_terms`` and whose metrics have a ``family`` block, as the engine writes
them for a VAE, a contractive, a KL-sparse and a tied autoencoder.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from aelab.report import build_report, build_sweep_report
from aelab.report import prose as P
from aelab.plots import figures as PF
from aelab.report import figures as F
from aelab.report.sections import Appendix

from conftest import make_run, parse, write_samples


def with_terms(run: dict, family: str, terms: dict[str, float], diagnostics: dict | None = None,
               scale: float = 1.0) -> dict:
    """Give a make_run() record named loss terms (constant per epoch) and a metrics.family block.

    ``scale`` multiplies the losses (a VAE's loss per image is hundreds of times an AE's per pixel).
    """
    run = copy.deepcopy(run)
    h = run["history"]
    n = len(h["loss"])
    pen = sum(terms.values())
    h["loss"] = [x * scale + pen for x in h["loss"]]
    h["val_loss"] = [x * scale + pen for x in h["val_loss"]]
    h["penalty"] = h["val_penalty"] = [pen] * n
    h["terms"] = {"reconstruction": [x - pen for x in h["loss"]], **{k: [t] * n for k, t in terms.items()}}
    h["val_terms"] = {"reconstruction": [x - pen for x in h["val_loss"]], **{k: [t] * n for k, t in terms.items()}}
    run["config"] = {"name": run["name"], "config_hash": "0123abcd" * 2,
                     "model": {"family": family, "encoder": ["32:relu"], "decoder": ["784:sigmoid"]},
                     "data": {"scaling": "unit", "noise_factor": 0.0}, "train": {"epochs": n, "loss": "bce"}}
    if diagnostics is not None:
        run["metrics"]["family"] = {"name": family, **diagnostics}
    return run


def vae(name: str, latent: int, active: int, kl: float, val: float = 0.1, beta: float = 1.0) -> dict:
    run = with_terms(make_run(name, 8, 0.3, val), "vae", {"kl": beta * kl},
                     {"elbo": -(val * 784 + kl), "reconstruction": val * 784, "kl": kl,
                      "kl_per_dim": [kl / latent] * latent, "active_units": active, "latent": latent,
                      "posterior_collapse": active == 0}, scale=784)
    run["config"]["model"].update(latent=latent, beta=beta, reduction="sum_mean")
    run["metrics"]["code"].update(units=latent, dead_units=0, zero_fraction=0.0, mean_activation=-0.1)
    return run


def plain(name: str, val: float = 0.1) -> dict:
    return with_terms(make_run(name, 8, 0.3, val), "ae", {})


def contractive(name: str, val: float = 0.11) -> dict:
    return with_terms(make_run(name, 8, 0.3, val), "contractive", {"contractive": 0.004},
                      {"jacobian_norm": 0.36, "jacobian_sq": 0.19})


def kl_sparse(name: str, val: float = 0.15, mean: float = 0.31) -> dict:
    return with_terms(make_run(name, 8, 0.3, val), "kl_sparse", {"kl_sparsity": 0.2},
                      {"rho": 0.05, "mean_activation": mean, "activation_per_unit": [mean] * 32,
                       "kl_sparsity": 1.7})


def tied(name: str, val: float = 0.12) -> dict:
    return with_terms(make_run(name, 8, 0.3, val), "tied", {}, {"parameters": 25904})


def write_study(root: Path, runs: dict, questions: list) -> Path:
    rng = np.random.default_rng(0)
    for run in runs.values():
        write_samples(root, run, rng, noisy=False)
    results = {"study": "toy-families", "title": "Families", "protocol": "seed", "quick": False,
               "wall_seconds": 1.0, "runs": runs, "questions": questions}
    (root / "results.json").write_text(json.dumps(results))
    return root


def q(qid: str, b: str, v: str) -> dict:
    return {"id": qid, "section": "S", "question": f"Question {qid}?", "baseline": b, "variant": v, "claims": []}


@pytest.fixture
def report(tmp_path: Path):
    runs = {"vae20": vae("vae20", 20, 18, 6.0, val=0.10), "vae2": vae("vae2", 2, 2, 1.2, val=0.13),
            "collapsed": vae("collapsed", 8, 0, 0.001, val=0.2, beta=20.0),
            "ae": plain("ae"), "cae": contractive("cae"), "ksp": kl_sparse("ksp"), "tied": tied("tied")}
    qs = [q("1", "vae20", "vae2"), q("2", "ae", "cae"), q("3", "ae", "ksp"), q("4", "ae", "tied"),
          q("5", "vae20", "collapsed"), q("6", "ae", "vae2")]
    paths = build_report(write_study(tmp_path, runs, qs))
    html, md = paths["html"].read_text(), paths["md"].read_text()
    tables = [rows for name, rows in parse(html).tables.items() if name.startswith("anon")]
    return html, md, [{r[0]: r[1:] for r in t[1:]} for t in tables], runs


# ------------------------------------------------------------------------------------------
# 1. named loss terms
# ------------------------------------------------------------------------------------------
def test_tables_have_a_row_per_named_term(report):
    _, _, tables, _ = report
    t = tables[0]  # VAE vs VAE
    for label in ("final train reconstruction term", "final train KL term", "final val reconstruction term",
                  "final val KL term"):
        assert label in t, label
    assert t["final train KL term"][:2] == ["6.000", "1.200"]
    assert "final train penalty (in the loss)" not in t
    assert not any("activity" in label for label in t)
    assert "final train contractive term" in tables[1] and tables[1]["final train contractive term"][0] == "none"
    assert "final val KL sparsity term" in tables[2]
    assert not any(label.endswith(" term") for label in tables[3])  # a tied AE: the loss is all reconstruction


def test_no_activity_penalty_wording_without_an_activity_term(report):
    html, md, _, _ = report
    for text in (html, md):
        assert "activity penalty" not in text.lower()
        body = text.split("Appendix")[0]  # the appendix quotes aelab.metrics' own definitions
        assert "activity L1" not in body and "activity_l1" not in body
        assert "without the penalty" not in text


def test_observation_names_the_term():
    b, v = vae("vae20", 20, 18, 6.0, val=0.10), vae("vae2", 2, 2, 1.2, val=0.13)
    o = P.observation({}, b, v)
    ev = " ".join(o["evidence"])
    assert "reconstruction part of the val loss" in o["lead"]
    assert "The KL term is " in ev and "of the variant's final train loss" in ev
    assert "its reconstruction part " in ev
    assert "penalty" not in o["lead"] + ev
    # a term only one of the runs has is said so
    ev = " ".join(P.observation({}, plain("ae"), contractive("cae"))["evidence"])
    assert "The contractive term is " in ev and "the baseline has no contractive term" in ev


def test_a_large_term_is_named_in_the_reasons():
    b, v = plain("ae"), kl_sparse("ksp")
    for key in ("loss", "val_loss"):
        v["history"][key] = [x + 0.5 for x in v["history"][key]]
    v["history"]["terms"]["kl_sparsity"] = v["history"]["val_terms"]["kl_sparsity"] = [0.7] * 8
    lead = P.observation({}, b, v)["lead"]
    assert "the KL sparsity term is a large part of the variant's loss" in lead
    assert "the KL sparsity term itself changed" in lead


def test_terms_helpers():
    assert P.penalty_terms(plain("a"), vae("v", 2, 2, 1.0), contractive("c")) == ["kl", "contractive"]
    assert P.term_phrase(["kl"]) == "KL term" and P.term_phrase(["kl", "activity_l1"]) == "KL and activity L1 terms"
    assert P.term_name("some_new_term") == "some new term"
    legacy = make_run("old", 4, 0.3, 0.1, penalty=0.01)  # a history without named terms
    assert P.penalty_terms(legacy) == [P.LEGACY_PENALTY] and P.term_phrase(P.penalty_terms(legacy)) == "penalty"
    assert P.penalty_terms(make_run("plain_old", 4, 0.3, 0.1)) == []
    v = vae("v", 2, 2, 1.0)
    assert P.recon_val_loss(v) == pytest.approx(v["history"]["val_terms"]["reconstruction"][-1])


# ------------------------------------------------------------------------------------------
# 2. family diagnostics
# ------------------------------------------------------------------------------------------
def test_tables_show_family_diagnostics(report):
    _, _, tables, _ = report
    t = tables[0]
    assert t["model family"][:2] == ["vae", "vae"]
    assert t["active latent dimensions"][:2] == ["18 / 20", "2 / 2"]
    assert t["posterior collapse"][:2] == ["no", "no"]
    assert "ELBO per test image" in t and "KL to the prior per test image (β not applied)" in t
    assert "latent dimensions" not in t  # folded into "18 / 20"
    assert tables[1]["encoder Jacobian norm ‖∂h/∂x‖_F"][:2] == ["—", "0.3600"]
    assert tables[2]["mean code activation ρ̂ (target ρ)"][1] == "0.3100 (ρ 0.05)"
    assert "target activation ρ" not in tables[2]  # folded into the row above
    assert tables[3]["trained parameters"][1] == "25904"
    assert tables[4]["posterior collapse"][:2] == ["no", "yes"]
    assert tables[3]["model family"][:2] == ["ae", "tied"]


def test_observation_reads_the_family_diagnostics():
    lead = P.observation({}, vae("vae20", 20, 18, 6.0), vae("collapsed", 8, 0, 0.001, val=0.2, beta=20.0))["lead"]
    assert "the variant's posterior has collapsed" in lead
    o = P.observation({}, plain("ae"), kl_sparse("ksp", mean=0.31))
    assert "far less sparse than its target" in o["lead"]
    assert "mean code activation ρ̂ (target ρ) 0.3100 (ρ 0.05)" in " ".join(o["evidence"])
    assert "far less sparse" not in P.observation({}, plain("ae"), kl_sparse("ksp", mean=0.06))["lead"]
    ev = " ".join(P.observation({}, vae("a", 20, 18, 6.0), vae("b", 20, 4, 2.0))["evidence"])
    assert "Model diagnostics (vae):" in ev and "active latent dimensions 4 / 20 vs 18 / 20" in ev


def test_appendix_defines_terms_and_diagnostics(report):
    html, md, _, runs = report
    for key in ("elbo", "active_units", "posterior_collapse", "jacobian_norm", "mean_activation", "rho",
                "kl_sparsity", "parameters"):
        assert f"<dt><code>{key}</code></dt>" in html, key
        assert f"- `{key}`:" in md, key
    for key, name in (("reconstruction", "reconstruction term"), ("kl", "KL term"),
                      ("contractive", "contractive term"), ("kl_sparsity", "KL sparsity term")):
        assert f"<dt><code>{key}</code> ({name})</dt>" in html and f"- `{key}` ({name}):" in md
    assert "<code>activity_l1</code>" not in html
    assert not any(line.startswith("- **") for line in md.splitlines())  # bullets in bold are the claims
    assert "Model diagnostics (<code>metrics.family</code>)" in html and "### Loss terms" in md


def test_plain_study_has_no_family_sections(tmp_path):
    runs = {"a": make_run("a", 4, 0.3, 0.1), "b": make_run("b", 4, 0.3, 0.12)}
    html = build_report(write_study(tmp_path, runs, [q("1", "a", "b")]))["html"].read_text()
    assert "Loss terms" not in html and "metrics.family" not in html and "model family" not in html
    assert "(of μ)" not in html


# ------------------------------------------------------------------------------------------
# 3. the code of a stochastic encoder is μ; losses on different scales are not compared
# ------------------------------------------------------------------------------------------
def test_code_statistics_of_a_vae_are_labelled_as_mu(report):
    _, _, tables, _ = report
    assert "dead code units (of μ)" in tables[0] and "zero fraction (of μ)" in tables[0]
    assert "dead code units (variant: of μ)" in tables[5]
    assert "dead code units" in tables[1]  # a deterministic code keeps the plain label
    ev = " ".join(P.observation({}, vae("a", 20, 18, 6.0), vae("b", 2, 2, 1.2))["evidence"])
    assert "Code (the posterior mean μ of both runs)" in ev
    assert "exactly zero" not in ev  # μ is never exactly zero: no sentence about it


def test_losses_on_different_scales_are_not_compared(report):
    html, _, tables, _ = report
    t = tables[5]  # AE (per pixel) vs VAE (per image)
    assert t["final val loss"][2] == "—" and t["final train loss"][2] == "—"
    summary = parse(html).tables["summary"]
    assert summary[6][4] == "not comparable (losses on different scales)"
    o = P.observation({}, plain("ae"), vae("v", 2, 2, 1.2, val=0.09))
    assert "different scales" in o["lead"] and "per-pixel BCE" in o["lead"]
    assert "made the reconstructions" in o["lead"]
    assert P.comparable_losses(vae("a", 2, 2, 1.0), vae("b", 20, 2, 1.0))


# ------------------------------------------------------------------------------------------
# 4. figures and sweeps
# ------------------------------------------------------------------------------------------
def axes_titles(monkeypatch, b, v) -> list[str]:
    seen: list[str] = []
    real = PF.png

    def capture(fig):
        seen.extend(ax.get_title() for ax in fig.axes if ax.get_visible())
        return real(fig)

    monkeypatch.setattr(PF, "png", capture)
    F.loss_curves(b, v, ("b", "v"))
    monkeypatch.setattr(PF, "png", real)
    return seen


def test_loss_curves_show_the_terms_in_their_own_panel(monkeypatch):
    assert axes_titles(monkeypatch, vae("a", 2, 2, 1.0), vae("b", 2, 2, 1.0)) == ["loss (all terms)",
                                                                                   "KL term (in the loss)"]
    assert axes_titles(monkeypatch, plain("a"), kl_sparse("k"))[1] == "KL sparsity term (in the loss)"
    assert axes_titles(monkeypatch, plain("a"), tied("t")) == [""]  # no other term: one panel, as before


def test_sweep_table_has_family_columns(tmp_path):
    rng = np.random.default_rng(1)
    runs, points = {}, []
    for beta, kl in ((1.0, 6.0), (4.0, 2.0), (20.0, 0.5)):
        key = f"beta={beta:g}"
        runs[key] = vae(key, 8, 8 if beta < 20 else 3, kl, val=0.1 + 0.01 * beta, beta=beta)
        write_samples(tmp_path, runs[key], rng, noisy=False)
        points.append({"value": beta, "run": key})
    (tmp_path / "results.json").write_text(json.dumps({
        "sweep": "beta", "parameter": "model.beta", "values": [1.0, 4.0, 20.0], "runs": runs, "points": points,
        "baseline": None, "wall_seconds": 1.0}))
    paths = build_sweep_report(tmp_path)
    html, md = paths["html"].read_text(), paths["md"].read_text()
    header = parse(html).tables["sweep"][0]
    assert "active latent dimensions" in header and "ELBO per test image" in header
    assert "dead code units (of μ)" in header
    assert parse(html).tables["sweep"][3][header.index("active latent dimensions")] == "3 / 8"
    obs = md.split("### Observation")[1]
    assert "reconstruction part of the final val loss" in obs and "with the KL term" in obs
    assert "activity penalty" not in md.lower()


def test_a_family_registered_from_test_code_speaks_in_the_report_in_its_own_words(tmp_path):
    """Everything the report says about a family comes from its Family object: a family the report
    code has never heard of gets its term's label, purpose and doc, its diagnostic's label and doc,
    its comparison mode and its own sentences."""
    from typing import Any, Literal

    from aelab.models import FAMILIES, Family, register_family
    from aelab.models.base import ModelConfig

    class WobbleConfig(ModelConfig):
        family: Literal["wobble"] = "wobble"
        encoder: tuple[Any, ...] = ("8:tanh",)

    def explain(b, v, who="the variant", other="the baseline"):
        return f"{who}'s code wobbles" if v["metrics"]["family"]["wobble_rms"] > 0.5 else None

    fam = register_family(Family(
        name="wobble", Config=WobbleConfig, build=lambda cfg, generator=None: None,
        terms={"wobble_l2": "λ·wobble², the wobble of the code weighted by λ."},
        term_labels={"wobble_l2": "wobble-L2"}, term_purposes={"wobble_l2": "a code that wobbles less"},
        diagnostics={"wobble_rms": "How much the code wobbles on the test split."},
        shown={"wobble_rms": {"label": "code wobble (rms)", "mode": "diff"}},
        explain=explain, label="wobbly AE"))
    try:
        b = with_terms(make_run("calm", 8, 0.3, 0.10), "wobble", {"wobble_l2": 0.001}, {"wobble_rms": 0.1})
        v = with_terms(make_run("wobbly", 8, 0.3, 0.14), "wobble", {"wobble_l2": 0.2}, {"wobble_rms": 0.9})
        root = write_study(tmp_path, {"calm": b, "wobbly": v}, [q("1", "calm", "wobbly")])
        from aelab.report import compose_report

        report = compose_report(root)
        section = report.questions[0]
        rows = {r.label: r for r in section.rows}
        assert rows["code wobble (rms)"].ratio == "Δ +0.800"  # the family's mode: a difference
        lead = section.observation.lead
        assert "the variant's code wobbles" in lead
        assert "the wobble-L2 term is a large part of the variant's loss" in lead
        assert "reconstruction quality for a code that wobbles less" in lead
        appendix = report.section(Appendix)
        assert {d.key: d.text for d in appendix.family_docs} == {
            "wobble_rms": "How much the code wobbles on the test split."}
        assert {d.key: d.text for d in appendix.term_docs}["wobble_l2"].startswith("λ·wobble²")
        assert P.code_is_mean(v) is False
    finally:
        del FAMILIES[fam.name]
