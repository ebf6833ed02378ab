"""Rich display in a notebook (aelab._display and the _repr_html_/_repr_png_ of a run, a report, a study's
or sweep's result and a latent analysis): self-contained HTML — no <script>, no http(s) URL, every image
a data: URI that decodes as a PNG —, the key numbers shown, text from data escaped."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import aelab
from aelab import _display as D
from aelab import plots
from aelab.analysis.latent import LatentAnalysis, analyse
from aelab.numfmt import fmt_change, fmt_num
from aelab.study import StudyResult
from conftest import make_run, q, write_study

ODD_NAME = 'a<b>&"c"'


def self_contained(html: str) -> list[bytes]:
    """Check ``html`` loads nothing and runs nothing; return its images' PNG bytes."""
    assert "<script" not in html.lower()
    assert not re.search(r"https?://", html), re.search(r".{60}https?://.{60}", html)
    assert "@import" not in html and "url(" not in html
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(srcs) == html.count("<img ")
    pngs = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(D.PNG_SIGNATURE)
        Image.open(io.BytesIO(data)).verify()
        pngs.append(data)
    return pngs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-epoch run on scikit-learn's 8×8 digits whose name needs escaping, and a 2-value sweep of it."""
    root = tmp_path_factory.mktemp("display")
    cfg = aelab.fit_config(aelab.RunConfig().with_overrides(
        {"data.dataset": "digits", "train.epochs": 2, "model.activity_l1": 1e-3}))
    cfg = cfg.model_copy(update={"name": ODD_NAME})
    run = aelab.train(cfg, root / "run")
    sweep = aelab.run_sweep(cfg.model_copy(update={"name": "sw"}), "train.epochs",
                            [1, 2], root / "sweep", progress=False, workers=1)
    return run, sweep, root


# -- the helpers ----------------------------------------------------------------------------------------
def test_helpers_escape_and_refuse_what_is_not_png():
    assert D.escape('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    html = D.key_table([("loss <train>", 0.123456), ("name", "x&y"), ("absent", None), ("count", 3)])
    assert "loss &lt;train&gt;" in html and ">0.1235<" in html and "x&amp;y" in html and "absent" not in html
    assert ">3<" in html
    assert D.key_table([("absent", None)]) == ""
    with pytest.raises(ValueError):
        D.img(b"GIF89a...", "not a png")
    png = plots.recon_grid([("original", np.zeros((2, 64))), ("reconstructed", np.ones((2, 64)))], shape=(1, 8, 8))
    assert self_contained(D.card("t<", "m&", D.figure(png, "alt<", "cap>"))) == [png]


def test_scope_css_keeps_a_page_style_inside_its_div():
    css = "body { margin: 2em; }\nh2, td.num { color: red; }\n@media print { p { x: y } }\n/* c */ body p {a: b}"
    out = D.scope_css(css, ".r")
    assert out.splitlines() == [".r {margin: 2em;}", ".r h2, .r td.num {color: red;}", ".r p {a: b}"]


# -- a run --------------------------------------------------------------------------------------------
def test_run_display(tiny):
    run = tiny[0]
    html = run._repr_html_()
    pngs = self_contained(html)
    assert len(pngs) == 2  # the reconstructions and the loss curves
    assert pngs[0] == (run.run_dir / "recon.png").read_bytes() == run._repr_png_()
    # the name is escaped, everywhere (title, alt texts)
    assert ODD_NAME not in html and "a&lt;b&gt;&amp;&quot;c&quot;" in html
    assert "<b>" not in html
    # key numbers: final losses, the L1 term, test-set diagnostics, the family and the data
    for value in (run.history["loss"][-1], run.history["val_loss"][-1], run.metrics["psnr"], run.metrics["bce"],
                  run.metrics["latent"]["probe_accuracy"], run.history["val_terms"]["activity_l1"][-1]):
        assert f">{fmt_num(value)}<" in html, value
    assert "family ae" in html and "digits" in html and "32:relu → 64:sigmoid" in html
    assert f"{run.metrics['code']['dead_units']} of 32" in html


# -- a sweep's and a study's result, a report -------------------------------------------------------------
def test_sweep_result_is_the_results_dict_and_shows_itself(tiny):
    _, sweep, root = tiny
    assert isinstance(sweep, dict) and sweep == json.loads((root / "sweep" / "results.json").read_text())
    assert sweep.kind == "sweep" and sweep.out == root / "sweep"
    assert sweep.run(sweep["points"][1]["run"]).history["epoch"] == [1, 2]
    with pytest.raises(aelab.errors.AelabError, match="no run named 'nope'"):
        sweep.run("nope")
    html = sweep._repr_html_()
    assert len(self_contained(html)) == 1 and sweep._repr_png_().startswith(D.PNG_SIGNATURE)
    for p in sweep["points"]:
        assert f">{fmt_num(sweep['runs'][p['run']]['history']['val_loss'][-1])}<" in html


def test_study_result_shows_questions_and_runs(tmp_path):
    runs = {"base<1>": make_run("base<1>", 5, 0.3, 0.1), "var&2": make_run("var&2", 5, 0.5, 0.4)}
    write_study(tmp_path, runs, [q("2.1", "base<1>", "var&2")])
    res = StudyResult(json.loads((tmp_path / "results.json").read_text()), tmp_path)
    html = res._repr_html_()
    assert len(self_contained(html)) == 1  # the question's loss curves
    assert "base&lt;1&gt;" in html and "var&amp;2" in html and "base<1>" not in html
    b, v = (runs[n]["history"]["val_loss"][-1] for n in ("base<1>", "var&2"))
    assert f">{fmt_num(b)}<" in html and f">{fmt_num(v)}<" in html and f">{fmt_change(v, b)}<" in html
    assert "Question 2.1?" in html and "Toy study" in html


def test_report_display_is_scoped_and_self_contained(tiny):
    _, sweep, _ = tiny
    report = aelab.compose_report(sweep.out)
    html = report._repr_html_()
    self_contained(html)
    assert html.startswith('<div class="aelab-report"><style>') and "<body" not in html and "<html" not in html
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    for rule in style.strip().splitlines():
        assert rule.startswith(".aelab-report"), rule  # no rule reaches the notebook around it
    assert report._repr_png_() == next(iter(report.figures.values()))


# -- a latent analysis ------------------------------------------------------------------------------------
def test_latent_analysis_display(tiny):
    run = tiny[0]
    res = analyse(run.run_dir, tiny[2] / "latent", methods=["pca"], baselines=False)
    assert isinstance(res, LatentAnalysis)
    assert dict(res) == json.loads((tiny[2] / "latent" / "latent.json").read_text())
    assert set(res.figures) == {"map", "interpolation", "traversal"}
    html = res._repr_html_()
    assert self_contained(html) == list(res.figures.values())
    assert res._repr_png_() == (tiny[2] / "latent" / "map.png").read_bytes()
    code = res["quality"]["code"]
    assert f">{fmt_num(code['probe_accuracy'], 3)}<" in html and f">{fmt_num(code['knn_accuracy'], 3)}<" in html
    assert "a&lt;b&gt;&amp;&quot;c&quot;: its code space" in html
    again = LatentAnalysis(json.loads((tiny[2] / "latent" / "latent.json").read_text()))  # figures read back
    assert again.figures == res.figures
