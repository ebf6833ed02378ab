"""The report a student reads: ratio cells, training time, observations in words, sweep reports, notes.

Each test builds a small synthetic results.json (no training) in tmp_path, in the style of
tests/report/test_report.py, and checks what the reader sees.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from aelab.errors import ConfigError
from aelab.report import build_report, build_sweep_report
from aelab import numfmt as N
from aelab.report import prose as P
from aelab.plots import figures as PF
from aelab.report import figures as F
from aelab.study.spec import load_study, study_from_dict

from conftest import cfg, make_run, parse, q, write_samples, write_study

REPORT_SRC = Path(__file__).resolve().parents[2] / "src" / "aelab" / "report"





def compare_tables(html: str) -> list[list[list[str]]]:
    return [rows for name, rows in parse(html).tables.items() if name.startswith("anon")]


# ------------------------------------------------------------------------------------------
# 1. ratio cells: a ratio only where it means something
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v, b, mode, unit, expected", [
    (0.2, 0.1, "ratio", "", "2.00×"),
    (5, 0, "ratio", "", "Δ +5"),                # zero baseline: no inf×
    (0.0, 0.41, "ratio", "", "Δ -0.410"),       # zero variant: no 0×
    (1e-7, 0.2, "ratio", "", "Δ -0.200"),       # vanishing ratio: no 5e-07×
    (300.0, 1.0, "ratio", "", "Δ +299"),        # huge ratio: a difference says more
    (-0.1, 0.2, "ratio", "", "Δ -0.300"),       # across a sign change
    (13.0, 12.0, "ratio", "dB", "1.08×"),
    (13.0, 12.0, "diff", "dB", "Δ +1.00 dB"),
    (0.35, 0.8, "diff", "", "Δ -0.450"),
    (float("nan"), 1.0, "ratio", "", "—"),
    (None, 1.0, "ratio", "", "—"),
    (1.0, float("inf"), "ratio", "", "—"),
    (2.0, 1.0, None, "", "—"),
])
def test_fmt_change(v, b, mode, unit, expected):
    assert N.fmt_change(v, b, mode, unit) == expected


def test_meaningful_ratio_bounds():
    assert N.meaningful_ratio(2.0, 1.0) == pytest.approx(2.0)
    lo, hi = N.RATIO_RANGE
    assert N.meaningful_ratio(hi * 1.01, 1.0) is None and N.meaningful_ratio(lo * 0.99, 1.0) is None
    assert N.meaningful_ratio(0.0, 1.0) is None and N.meaningful_ratio(1.0, 0.0) is None


def test_report_has_no_meaningless_ratio_cells(tmp_path):
    base = cfg(make_run("base", 6, 0.3, 0.1, dead=0, diversity=0.35))
    collapsed = cfg(make_run("collapsed", 6, 0.7, 0.64, dead=20, diversity=1.9e-4, ssim=0.01, psnr=6.8))
    base["metrics"]["code"]["zero_fraction"] = 0.0
    collapsed["metrics"]["code"]["zero_fraction"] = 0.999
    collapsed["metrics"]["code"]["mean_activation"] = 9e-5
    collapsed["history"]["penalty"] = [1e-8] * 6  # a penalty that all but vanished
    base["history"]["penalty"] = [0.01] * 6
    study = write_study(tmp_path, {"base": base, "collapsed": collapsed}, [q("1", "base", "collapsed")])
    html = build_report(study)["html"].read_text()
    cells = [r[3] for rows in compare_tables(html) for r in rows[1:]]
    cells += [r[4] for r in parse(html).tables["summary"][1:]]
    assert cells
    for c in cells:
        assert "inf" not in c and "nan" not in c, c
        if c.endswith("×"):
            assert 0.01 <= float(c[:-1]) <= 100, c  # no 0×, 5.05e-07× or 2000×
    table = {r[0]: r for r in compare_tables(html)[0][1:]}
    assert table["dead code units"][3] == "Δ +20"
    assert table["diversity"][3] == "Δ -0.350"
    assert table["zero fraction"][3] == "Δ +0.999"
    assert table["final train penalty (in the loss)"][3].startswith("Δ -")
    assert table["PSNR (dB)"][3].endswith("dB") and table["PSNR (dB)"][3].startswith("Δ")
    assert table["final val loss"][3].endswith("×")  # a plain loss ratio stays a ratio


# ------------------------------------------------------------------------------------------
# 2. training time: labelled for what it is
# ------------------------------------------------------------------------------------------
def timed(run: dict, group: list[str], epoch_s: float) -> dict:
    run = copy.deepcopy(run)
    run["history"]["epoch_seconds"] = [epoch_s] * len(run["history"]["loss"])
    run["run"] = {"trained_with": group, "group_wall_seconds": epoch_s * len(run["history"]["loss"]) + 0.5}
    return run


def test_training_time_is_labelled_as_the_groups(tmp_path):
    g1, g2 = ["a", "x1", "x2", "x3"], ["b", "y1"]
    a = timed(cfg(make_run("a", 4, 0.3, 0.1)), g1, 2.0)   # group of 4: 8 s
    b = timed(cfg(make_run("b", 4, 0.3, 0.12)), g2, 3.0)  # group of 2: 12 s
    study = write_study(tmp_path, {"a": a, "b": b}, [q("1", "a", "b")])
    paths = build_report(study)
    html, md = paths["html"].read_text(), paths["md"].read_text()
    table = {r[0]: r for r in compare_tables(html)[0][1:]}
    assert "training time (s)" not in table
    row = table["training time of its group (s)"]
    assert row[1:] == ["8.00 (4 models)", "12.0 (2 models)", "—"]  # different groups: not compared
    share = table["≈ share per model (s): group time ÷ models"]
    assert share[1:] == ["2.00", "6.00", "—"]
    assert "own time cannot be measured" in html and "different groups" in html
    assert "| training time of its group (s) | 8.00 (4 models) | 12.0 (2 models) | — |" in md


def test_training_time_of_runs_trained_alone_compares_directly(tmp_path):
    a = timed(cfg(make_run("a", 4, 0.3, 0.1)), ["a"], 2.0)
    b = timed(cfg(make_run("b", 4, 0.3, 0.12)), ["b"], 3.0)
    html = build_report(write_study(tmp_path, {"a": a, "b": b}, [q("1", "a", "b")]))["html"].read_text()
    table = {r[0]: r for r in compare_tables(html)[0][1:]}
    assert table["training time of its group (s)"][1:] == ["8.00 (trained alone)", "12.0 (trained alone)", "1.50×"]
    assert "≈ share per model (s): group time ÷ models" not in table
    assert "compare directly" in html


def test_training_time_same_group_and_unrecorded_group(tmp_path):
    g = ["a", "b", "c"]
    a, b = timed(cfg(make_run("a", 4, 0.3, 0.1)), g, 1.5), timed(cfg(make_run("b", 4, 0.3, 0.12)), g, 1.5)
    html = build_report(write_study(tmp_path, {"a": a, "b": b}, [q("1", "a", "b")]))["html"].read_text()
    table = {r[0]: r for r in compare_tables(html)[0][1:]}
    assert table["training time of its group (s)"][3] == "same group"
    # no run.json info (older results): the time is still labelled as possibly a group's
    c, d = cfg(make_run("c", 4, 0.3, 0.1)), cfg(make_run("d", 4, 0.3, 0.12))
    out = tmp_path / "old"
    out.mkdir()
    html = build_report(write_study(out, {"c": c, "d": d}, [q("1", "c", "d")]))["html"].read_text()
    table = {r[0]: r for r in compare_tables(html)[0][1:]}
    assert table["training time of its group (s)"][1] == "6.00 (group size not recorded)"
    assert "was not recorded" in html


# ------------------------------------------------------------------------------------------
# 3. observations: words first, then the numbers; generated from the measurements
# ------------------------------------------------------------------------------------------
def test_observation_answers_in_words_then_numbers():
    base = cfg(make_run("base", 10, 0.3, 0.1, dead=0, diversity=0.35, ssim=0.8))
    var = cfg(make_run("var", 10, 0.7, 0.4, dead=20, diversity=0.01, ssim=0.1))
    var["config"]["model"]["activity_l1"] = 0.01
    var["metrics"]["code"]["zero_fraction"] = 0.99
    o = P.observation({}, base, var)
    assert set(o) == {"lead", "evidence"}
    lead = o["lead"]
    # what was changed, read from the configs; what happened and why, in words
    assert lead.startswith("Changing model.activity_l1 from 0 to 0.01 made the reconstructions much worse")
    assert "collapsed" in lead and "dead" in lead and "exactly zero" in lead
    bv, vv = base["history"]["val_loss"][-1], var["history"]["val_loss"][-1]
    shown = (N.fmt_num(vv, 3), N.fmt_num(bv, 3), N.fmt_ratio(vv / bv))
    assert not any(n in lead for n in shown)  # words, not measurements
    ev = " ".join(o["evidence"])
    assert "Final val loss {} vs {} ({}) for the baseline".format(*shown) in ev
    assert "20 of 32 units dead vs 0 of 32" in ev
    assert "Run-to-run noise:" in ev
    # the text follows the numbers: swap the roles and the verdict turns around
    back = P.observation({}, var, base)
    assert "much better" in back["lead"] and "collapsed" not in back["lead"]


def test_observation_says_when_a_difference_is_within_noise():
    base = cfg(make_run("base", 10, 0.3, 0.1000))
    var = cfg(make_run("var", 10, 0.3, 0.1003))  # 0.3% apart: inside the 1% floor
    var["config"]["model"]["decoder"] = ["784:relu"]
    o = P.observation({}, base, var)
    assert o["lead"].startswith("Changing model.decoder from [784:sigmoid] to [784:relu] made no difference")
    # no replicate seeds: under the 1% floor is "no difference", but nothing is called noise
    assert "(under 1.00%)" in o["lead"] and "noise" not in o["lead"]
    assert "worse" not in o["lead"] and "better" not in o["lead"]
    # with seeds that measured the noise, it is named
    o = P.observation({}, base, var, {"rel": 0.02, "measured": True, "how": "seeds"})
    assert "beyond the run-to-run noise" in o["lead"]


def test_observation_does_not_blame_the_images_for_the_penalty():
    base = cfg(make_run("base", 10, 0.3, 0.1))
    var = copy.deepcopy(base)
    var["name"] = "var"
    var["config"]["model"]["activity_l1"] = 0.01
    var["history"]["val_penalty"] = [0.05] * 10  # the val loss rises by the penalty alone
    var["history"]["penalty"] = [0.05] * 10
    var["history"]["val_loss"] = [x + 0.05 for x in var["history"]["val_loss"]]
    o = P.observation({}, base, var)
    assert "made no difference to the reconstruction part of the val loss" in o["lead"]
    assert "the penalty itself changed" in o["lead"]  # no named terms recorded: just "the penalty"
    # with named terms in the history, the sentence names the term
    for run, pen in ((base, 0.0), (var, 0.05)):
        h = run["history"]
        h["terms"] = {"reconstruction": [x - pen for x in h["loss"]]}
        h["val_terms"] = {"reconstruction": [x - pen for x in h["val_loss"]]}
        if pen:
            h["terms"]["activity_l1"] = h["val_terms"]["activity_l1"] = [pen] * 10
    lead = P.observation({}, base, var)["lead"]
    assert "made no difference to the reconstruction part of the val loss" in lead
    assert "because the activity L1 term itself changed" in lead


def test_observation_noise_uses_seed_replicates():
    runs = [cfg(make_run("r", 4, 0.3, x)) for x in (0.10, 0.11, 0.12)]
    finals = [r["history"]["val_loss"][-1] for r in runs]
    n = P.noise_level(runs[:1], [runs, runs])
    assert n["rel"] == pytest.approx((max(finals) - min(finals)) / (sum(finals) / 3), rel=1e-6)
    assert "across 3 seeds" in n["how"]
    flat = cfg(make_run("f", 4, 0.1, 0.1, val_gap=0.0))  # a flat curve: only the 1% floor
    assert P.noise_level([flat])["rel"] == P.NOISE_FLOOR


def test_report_renders_lead_before_evidence(tmp_path):
    base = cfg(make_run("base", 10, 0.3, 0.1))
    var = cfg(make_run("var", 10, 0.6, 0.4, ssim=0.3, diversity=0.1))
    var["config"]["model"]["decoder"] = ["784:relu"]
    paths = build_report(write_study(tmp_path, {"base": base, "var": var}, [q("1", "base", "var")]))
    html, md = paths["html"].read_text(), paths["md"].read_text()
    lead = html.index('<p class="lead">Changing model.decoder')
    assert lead < html.index('<ul class="evidence">') < html.index("<h3>Claims</h3>")
    obs = md.split("### Answer")[1].split("### Claims")[0].strip().splitlines()  # the answer opens the section
    assert obs[0].startswith("Changing model.decoder from [784:sigmoid] to [784:relu] made the reconstructions")
    assert [line for line in obs[1:] if line.startswith("- Final val loss ")]


def test_report_code_is_generic():
    """No study, family or data set is named in the report code or templates (a family's words are its own,
    looked up in aelab.models.FAMILIES)."""
    texts = [p.read_text() for p in [*REPORT_SRC.glob("*.py"), *REPORT_SRC.glob("templates/*")]]
    for word in ("exercise12", "exercise 12", "mnist", r"\blab_", "question 4.1", "method_notes", "seed's",
                 r"\bvae\b", "contractive", "kl_sparse", r"\btied\b", "posterior_collapse", "jacobian"):
        assert not any(re.search(word, t.lower()) for t in texts), word


# ------------------------------------------------------------------------------------------
# 4. sweep reports: protocol, no empty panels, honest y-axes, noise; notes per study
# ------------------------------------------------------------------------------------------
def write_sweep(root: Path, vals: list[float], val_losses: list[float], start: float | None = 0.3) -> Path:
    """A sweep over model.activity_l1; ``start=None``: flat loss curves (the noise is then the 1% floor)."""
    rng = np.random.default_rng(3)
    runs, points = {}, []
    for x, v in zip(vals, val_losses):
        key = f"l1={x:g}"
        run = cfg(make_run(key, 6, v * 1.00001 if start is None else start, v, val_gap=0.0), limit=3000,
                  test_limit=500)
        runs[key] = run
        write_samples(root, run, rng, noisy=False)
        points.append({"value": x, "run": key})
    results = {"sweep": "base: model.activity_l1", "parameter": "model.activity_l1", "values": vals,
               "log_x": True, "wall_seconds": 2.0, "runs": runs, "points": points, "baseline": None}
    (root / "results.json").write_text(json.dumps(results))
    return root


def test_sweep_protocol_is_read_from_the_configs(tmp_path):
    md = build_sweep_report(write_sweep(tmp_path, [1e-5, 1e-4, 1e-3], val_losses=[0.1, 0.12, 0.15]))["md"]
    text = md.read_text()
    assert "unknown" not in text
    assert "protocol **min–max, fitted per split** (read from the runs' configs)" in text
    assert "the test split is scaled with its own statistics" in text
    assert "the first 3000 training images and the first 500 test images" in text


def test_sweep_report_has_no_study_notes(tmp_path):
    text = build_sweep_report(write_sweep(tmp_path, [1e-5, 1e-4], val_losses=[0.1, 0.12]))["html"].read_text()
    assert "Method notes" not in text and "fitted on the test set itself" not in text


def panels_of(monkeypatch, **kw) -> list:
    """Draw a sweep plot and return its visible axes (captured before the figure is cleared)."""
    seen = []
    real = PF.png

    def capture(fig):
        seen.extend((ax.get_title(), ax.get_ylim(), len(ax.lines)) for ax in fig.axes if ax.get_visible())
        return real(fig)

    monkeypatch.setattr(PF, "png", capture)
    F.sweep_plot(**kw)
    return seen


def test_sweep_plot_has_no_empty_panels(monkeypatch):
    axes = panels_of(monkeypatch, values=[0.1, 0.2, 0.3], xlabel="x",
                     series={"loss/train": [0.3, 0.2, 0.25], "loss/val": [0.31, 0.21, 0.26],
                             "SSIM/clean": [0.5, 0.6, 0.55], "SSIM/noisy input": [None, None, None],
                             "dead code units": [None, float("nan"), None]})
    assert [t for t, _, _ in axes] == ["loss", "SSIM"]
    assert all(n >= 1 for _, _, n in axes)


def test_sweep_report_plots_only_recorded_metrics(tmp_path, monkeypatch):
    root = write_sweep(tmp_path, [1e-5, 1e-4, 1e-3], val_losses=[0.1, 0.12, 0.15])
    results = json.loads((root / "results.json").read_text())
    for run in results["runs"].values():
        del run["metrics"]["code"], run["metrics"]["diversity"]
    (root / "results.json").write_text(json.dumps(results))
    titles = []
    real = F.sweep_plot

    def spy(values, series, *a, **k):
        titles.extend(series)
        return real(values, series, *a, **k)

    monkeypatch.setattr(F, "sweep_plot", spy)
    html = build_sweep_report(root)["html"].read_text()
    assert not [t for t in titles if t.startswith(("diversity", "dead"))]
    header = parse(html).tables["sweep"][0]
    assert "diversity" not in header and "dead code units" not in header


def test_sweep_y_axis_has_a_minimum_span(monkeypatch):
    (title, (lo, hi), _), = panels_of(monkeypatch, values=[1, 2, 3], xlabel="x",
                                      series={"SSIM": [0.935, 0.965, 0.95]})
    assert hi - lo >= 0.1 * 0.965  # a 3% wiggle must not fill the panel
    assert hi - lo >= F.MIN_REL_SPAN * 0.965 - 1e-9
    assert lo <= 0.935 and hi >= 0.965 and hi <= 1.0  # kept inside [0, 1] for numbers that live there
    assert F.sweep_ylim([0.1, 0.5]) is None  # a real change keeps matplotlib's own limits
    assert F.sweep_ylim([0.0, 0.0, 0.0], integer=True) == (-0.5, 1.0)  # counts never go below -0.5


def test_sweep_says_when_the_change_is_within_noise(tmp_path):
    root = write_sweep(tmp_path, [1e-5, 1e-4, 1e-3], val_losses=[0.1000, 0.1004, 0.0998], start=None)
    paths = build_sweep_report(root)
    md = paths["md"].read_text()
    obs = md.split("### Observation")[1]
    # no replicate seeds: no noise is claimed, the 1% tolerance is named as such
    assert "makes no difference to the reconstructions: the final val loss stays within" in obs
    assert "Run-to-run noise: not measured, as no replicate seeds were trained; differences in the final val loss " \
           "under 1.00% are read as no difference" in obs
    assert "±1.00% around the val loss, under which a change is read as none" in md
    # a real change is called one
    other = tmp_path / "real"
    other.mkdir()
    md = build_sweep_report(write_sweep(other, [1e-5, 1e-4, 1e-3], val_losses=[0.1, 0.13, 0.2]))["md"].read_text()
    assert "makes the reconstructions much worse: the final val loss rises with it" in md


# ------------------------------------------------------------------------------------------
# notes belong to the study that has them
# ------------------------------------------------------------------------------------------
STUDY = {
    "baselines": {"b": {"model": {"encoder": ["32:relu"], "decoder": ["784:sigmoid"]}}},
    "questions": [{"id": "1", "baseline": "b", "variant": "b"}],
}


def test_study_spec_parses_notes():
    s = study_from_dict({**STUDY, "notes": [{"title": "Scaling", "text": "The test set is\n  scaled."},
                                            "A plain note."]})
    assert s.notes == [{"title": "Scaling", "text": "The test set is scaled."}, {"title": "", "text": "A plain note."}]
    assert study_from_dict(STUDY).notes == []
    with pytest.raises(ConfigError, match="unknown key 'txt'"):
        study_from_dict({**STUDY, "notes": [{"txt": "x"}]})
    with pytest.raises(ConfigError, match="non-empty 'text'"):
        study_from_dict({**STUDY, "notes": [{"title": "x"}]})
    shipped = load_study("exercise12").notes
    assert len(shipped) == 3 and "fitted on the test set itself" in shipped[0]["text"]


def test_study_report_shows_only_its_own_notes(tmp_path):
    base, var = cfg(make_run("base", 4, 0.3, 0.1)), cfg(make_run("var", 4, 0.3, 0.2))
    one = tmp_path / "with"
    one.mkdir()
    html = build_report(write_study(one, {"base": base, "var": var}, [q("1", "base", "var")],
                                    notes=[{"title": "Mine", "text": "A note of this study."}]))["html"].read_text()
    assert "Method notes" in html and "<b>Mine.</b> A note of this study." in html
    assert "fitted on the test set itself" not in html
    two = tmp_path / "without"
    two.mkdir()
    html = build_report(write_study(two, {"base": base, "var": var}, [q("1", "base", "var")]))["html"].read_text()
    assert "Method notes" not in html


def test_old_results_of_a_shipped_study_get_its_notes(tmp_path):
    """results.json written before the "notes" field: the shipped spec of the same study supplies them."""
    spec = load_study("exercise12")
    runs = {k: cfg(make_run(k, 3, 0.3, 0.1)) for k in spec.runs}
    qs = [q(x.id, x.baseline, x.variant) for x in spec.questions]
    root = write_study(tmp_path, runs, qs)
    results = json.loads((root / "results.json").read_text())
    results["study"] = "exercise12"
    (root / "results.json").write_text(json.dumps(results))
    html = build_report(root)["html"].read_text()
    assert "fitted on the test set itself" in html
    # a namesake with other questions gets none
    results["questions"] = qs[:1]
    (root / "results.json").write_text(json.dumps(results))
    assert "fitted on the test set itself" not in build_report(root)["html"].read_text()
