"""The report's typed sections and their blocks: MIG in a sweep on data with known factors, a run's own
family figures, and the one renderer that writes a block as HTML and as Markdown."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from aelab.config import RunConfig
from aelab.data import shapes
from aelab.disentangle import mig
from aelab.numfmt import fmt_num
from aelab.report import compose_report, write_report
from aelab.report import blocks as B
from aelab.report.render import _mig_sentence
from aelab.report.sections import ModelFigures, SweepSection
from conftest import make_run, parse, q, write_study


# -- the blocks --------------------------------------------------------------------------------------
def test_a_table_renders_the_same_cells_in_both_formats():
    t = B.Table(("name", "value"), [B.Row((B.Code("a|b"), "1 < 2")), B.Row(("x", B.Cell("0.5", cls="ok")), cls="baseline")],
                numeric=(False, True), id="t")
    html = t.html()
    assert parse(html).tables["t"] == [["name", "value"], ["a|b", "1 < 2"], ["x", "0.5"]]
    assert '<td class="num">1 &lt; 2</td>' in html and '<td class="num ok">0.5</td>' in html
    assert '<tr class="baseline">' in html
    assert t.markdown().splitlines() == ["| name | value |", "|---|--:|", "| `a|b` | 1 < 2 |", "| x | 0.5 |"]


def test_markdown_escapes_only_what_a_renderer_would_read_as_markup():
    p = B.Paragraph(("> quoted <b>not bold</b> & x > 1 ", B.Bold("yes")))
    assert p.markdown() == "\\> quoted \\<b>not bold\\</b> & x > 1 **yes**"
    assert p.html() == "<p>&gt; quoted &lt;b&gt;not bold&lt;/b&gt; &amp; x &gt; 1 <b>yes</b></p>"
    claim = B.ListBlock([(B.Span("confirmed", "ok", strong=True), ": it holds", B.Break(), B.Span("measured: 1", "m"))])
    assert claim.markdown() == "- **confirmed**: it holds  \n  measured: 1"
    assert claim.html() == '<ul><li><span class="ok">confirmed</span>: it holds<br><span class="m">measured: 1</span></li></ul>'


# -- MIG in a sweep ----------------------------------------------------------------------------------
def _shapes_run(name: str, beta: float, loss1: float) -> dict:
    run = make_run(name, 3, 0.3, loss1)
    cfg = RunConfig.from_dict({"name": name, "model": {"family": "vae", "encoder": ["16:relu"], "decoder": ["1024:sigmoid"],
                                                       "latent": 3, "beta": beta, "input_shape": [1, 32, 32]},
                               "data": {"dataset": "shapes", "limit": 300, "test_limit": 200}, "train": {"epochs": 3}})
    run["config"] = {**cfg.to_dict(), "config_hash": "0123abcd" * 8}
    return run


def _write_codes(root: Path, run: dict, codes: np.ndarray, index: np.ndarray) -> None:
    d = root / run["dir"]
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "codes.npz", train_codes=codes[:50], train_index=np.arange(50), test_codes=codes, test_index=index)


def test_a_beta_sweep_on_shapes_reports_mig_and_says_what_the_trade_off_shows(tmp_path: Path):
    rng = np.random.default_rng(0)
    runs = {f"b{b}": _shapes_run(f"b{b}", b, 0.10 + 0.02 * b) for b in (1, 4, 8)}
    cfg = RunConfig.from_dict({k: v for k, v in runs["b1"]["config"].items() if k != "config_hash"})
    index = rng.permutation(200)  # the saved test subsample, in its own order
    factors = shapes.factors(cfg.data, "test")[index]
    z = (factors[:, :3] - factors[:, :3].mean(0)) / (factors[:, :3].std(0) + 1e-9)
    mixed = {1: np.full((3, 3), 1 / 3) + 0.01 * np.eye(3), 4: 0.5 * np.eye(3) + 0.5 / 3, 8: np.eye(3)}
    expected = {}
    for b, m in mixed.items():
        codes = (z @ m + 0.01 * rng.standard_normal(z.shape)).astype(np.float32)
        _write_codes(tmp_path, runs[f"b{b}"], codes, index)
        expected[b] = mig(codes, factors, names=shapes.FACTOR_NAMES)["mig"]
    assert expected[1] < expected[4] < expected[8]
    (tmp_path / "results.json").write_text(json.dumps({
        "sweep": "beta", "parameter": "model.beta", "values": [1, 4, 8], "runs": runs,
        "points": [{"value": b, "run": f"b{b}"} for b in (1, 4, 8)], "baseline": None}))

    report = compose_report(tmp_path)
    sweep = report.section(SweepSection)
    col = sweep.columns.index("MIG (known factors)")
    assert [r.cells[col] for r in sweep.table] == [fmt_num(expected[b], 3) for b in (1, 4, 8)]
    assert sweep.mig is not None and sweep.mig.file == "figures/sweep-mig.png" and "figures/sweep-mig.png" in report.figures
    s = sweep.mig_sentence
    assert s.startswith(f"As beta goes from 1 to 8, MIG rises ({fmt_num(expected[1], 3)} → {fmt_num(expected[8], 3)})")
    assert "the val loss gets worse" in s and "trade-off between disentanglement and reconstruction" in s
    paths = write_report(report, tmp_path)
    html = paths["html"].read_text()
    assert parse(html).tables["sweep"][0][-1] == "MIG (known factors)" and 'id="mig-trade-off"' in html
    assert "![MIG and reconstruction against model.beta](figures/sweep-mig.png)" in paths["md"].read_text()


def test_no_mig_where_the_factors_are_unknown_or_the_numbers_do_not_show_a_trade_off(tmp_path: Path):
    flat = _mig_sentence("beta", [1, 8], [0.30, 0.305], [50.0, 60.0], "val loss", 0.01)
    assert "MIG stays about the same" in flat and "does not show a code growing more disentangled" in flat
    runs = {k: make_run(k, 3, 0.3, 0.1) for k in ("a", "b")}
    (tmp_path / "results.json").write_text(json.dumps({
        "sweep": "s", "parameter": "train.lr", "values": [1, 2], "runs": runs,
        "points": [{"value": 1, "run": "a"}, {"value": 2, "run": "b"}], "baseline": None}))
    sweep = compose_report(tmp_path).section(SweepSection)
    assert "MIG (known factors)" not in sweep.columns and sweep.mig is None and sweep.mig_sentence == ""


# -- a run's family figures --------------------------------------------------------------------------
def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_each_runs_family_figures_are_shown_with_their_captions(tmp_path: Path):
    a, b = make_run("plain", 4, 0.3, 0.1), make_run("conditional", 4, 0.3, 0.12)
    b = copy.deepcopy(b)
    b["metrics"]["figures"] = {
        "same_code": {"file": "figures/same_code.png", "caption": "One code decoded as every class."},
        "gone": {"file": "figures/gone.png", "caption": "A figure whose file is missing."},
    }
    root = write_study(tmp_path, {"plain": a, "conditional": b}, [q("1", "plain", "conditional")])
    (root / b["dir"] / "figures").mkdir(parents=True)
    png = _png((200, 30, 30))
    (root / b["dir"] / "figures" / "same_code.png").write_bytes(png)

    report = compose_report(root)
    shown = report.section(ModelFigures).runs
    assert [(r.run, [f.caption for f in r.figures]) for r in shown] == [
        ("conditional", ["One code decoded as every class."])]
    fig = shown[0].figures[0]
    assert report.figures[fig.file] == png
    paths = write_report(report, root)
    html, md = paths["html"].read_text(), paths["md"].read_text()
    assert 'id="model-figures"' in html and "<figcaption>One code decoded as every class.</figcaption>" in html
    assert f"![same_code of run conditional]({fig.file})" in md and (root / fig.file).read_bytes() == png
    assert "missing" not in md


def test_a_report_without_family_figures_has_no_such_section(tmp_path: Path):
    root = write_study(tmp_path, {"a": make_run("a", 3, 0.3, 0.1), "b": make_run("b", 3, 0.3, 0.1)}, [q("1", "a", "b")])
    report = compose_report(root)
    assert report.section(ModelFigures).runs == () and "model-figures" not in report.html()
