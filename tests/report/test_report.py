"""Tests of aelab.report: claims, observations, figures and the self-contained study/sweep reports.

Everything is built from a fake study directory written in tmp_path (no training): hand-made
histories and metrics in results.json and random samples.npz files.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aelab.errors import ConfigError, DataError
from aelab.report import build_report, build_sweep_report, compose_report, evaluate_claim, write_report
from aelab.report.sections import MethodNotes, StudySummary
from aelab import numfmt as N
from aelab.report import claims as C
from aelab.report import prose as P
from aelab.report import figures as F

from conftest import make_run, parse, write_samples

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------



def noisy_block(ssim, input_ssim):
    return {"bce": 0.11, "mse": 0.015, "psnr": 18.0, "ssim": ssim, "diversity": 0.85,
            "input_psnr": 10.0, "input_ssim": input_ssim}



def make_results() -> dict:
    runs = {
        "lab_undercomplete": make_run("lab_undercomplete", 20, 0.28, 0.093),
        "swapped": make_run("swapped", 20, 0.55, 0.40, ssim=0.35, psnr=12.0, dead=5, diversity=0.6),
        "lab_denoising": make_run("lab_denoising", 30, 0.25, 0.10, noise=0.3,
                                  noisy=noisy_block(0.70, 0.30)),
        "denoising_06": make_run("denoising_06", 30, 0.27, 0.107, noise=0.6,
                                 noisy=noisy_block(0.62, 0.12)),
    }
    questions = [
        {"id": "2.1", "section": "Undercomplete AE",
         "question": "Swap the encoding and decoding activation functions. What do you observe?",
         "baseline": "lab_undercomplete", "variant": "swapped",
         "claims": [
             {"text": "Losses around 0.40", "kind": "value_near",
              "params": {"metric": "final.val_loss", "value": 0.40, "rel_tol": 0.1}},
             {"text": "Much larger than the lab's", "kind": "ratio_at_least",
              "params": {"metric": "final.val_loss", "min": 3.0}},
             {"text": "Worse SSIM", "kind": "less_than_baseline", "params": {"metric": "metrics.ssim"}},
             {"text": "SSIM above 0.9 (false on purpose)", "kind": "above",
              "params": {"metric": "metrics.ssim", "value": 0.9}},
         ]},
        {"id": "4.1", "section": "Denoising AE",
         "question": "Vary (increase/decrease) the noise factor. What do you observe?",
         "baseline": "lab_denoising", "variant": "denoising_06",
         "claims": [
             {"text": "Only slightly worse", "kind": "ratio_between",
              "params": {"metric": "final.val_loss", "min": 1.0, "max": 1.3}},
             {"text": "Digits are recovered from noise", "kind": "above",
              "params": {"metric": "metrics.noisy.ssim", "value": 0.5}},
         ]},
    ]
    corrected = {"description": "each trained model evaluated on the train-scaled test split",
                 "runs": {k: json.loads(json.dumps(v)) for k, v in runs.items() if k != "denoising_06"}}
    for _k, run in corrected["runs"].items():
        run["history"]["val_loss"] = [x * 1.05 for x in run["history"]["val_loss"]]
    return {
        "study": "exercise12", "title": "Exercise 12 – Autoencoders <reproduction>", "protocol": "seed",
        "quick": False, "wall_seconds": 80.1, "created": "2024-01-01T00:00:00", "aelab_version": "0.1.0",
        "runs": runs, "questions": questions, "corrected": corrected,
    }


@pytest.fixture
def study(tmp_path: Path) -> Path:
    results = make_results()
    rng = np.random.default_rng(0)
    for run in results["runs"].values():
        write_samples(tmp_path, run, rng, noisy="noisy" in run["metrics"])
    (tmp_path / "results.json").write_text(json.dumps(results, indent=2))
    return tmp_path


@pytest.fixture
def built(study: Path):
    t0 = time.perf_counter()
    paths = build_report(study)
    seconds = time.perf_counter() - t0
    return study, paths, seconds


def test_compose_report_builds_sections_and_writes_nothing(study: Path):
    before = sorted(p.relative_to(study) for p in study.rglob("*"))
    report = compose_report(study)
    assert sorted(p.relative_to(study) for p in study.rglob("*")) == before
    assert report.kind == "study" and set(report.figures) >= {"figures/q2_1-loss.png", "figures/q4_1-recon.png"}
    sections = report.questions
    assert [s.id for s in sections] == ["2.1", "4.1"]
    first = sections[0]
    assert (first.baseline_key, first.variant_key) == ("lab_undercomplete", "swapped")
    assert [c.kind for c in first.claims] == ["value_near", "ratio_at_least", "less_than_baseline", "above"]
    assert first.claims[3].status == "not confirmed" and first.claims[0].status == "confirmed"
    assert [r.status for r in report.section(StudySummary).rows] == ["no", "ok"]
    assert first.observation.lead
    effect = report.section(MethodNotes).effect
    assert effect.other == "corrected" and effect.label == "base"
    # the same content, written: the files carry what the object holds
    paths = write_report(report, study)
    assert paths["html"].read_text(encoding="utf-8") == report.html()
    assert paths["md"].read_text(encoding="utf-8") == report.markdown()
    assert {p.relative_to(study).as_posix() for p in paths["figures"]} == set(report.figures)


def test_compose_report_takes_results_without_a_directory():
    report = compose_report(make_results())
    assert [s.id for s in report.questions] == ["2.1", "4.1"]
    assert all(s.recon is None for s in report.questions)  # no saved arrays to draw from
    assert "samples.npz not found" in " ".join(report.header.missing)
    assert "<h2" in report.html() and report.markdown().startswith("#")




def close(text: str, value: float, rel: float = 5e-4) -> bool:
    return math.isclose(float(text.rstrip("×")), value, rel_tol=rel)


# ------------------------------------------------------------------------------------------
# build_report
# ------------------------------------------------------------------------------------------
def test_build_report_writes_all_files(built):
    study, paths, _ = built
    assert paths["html"] == study / "report.html" and paths["html"].is_file()
    assert paths["md"] == study / "report.md" and paths["md"].is_file()
    assert len(paths["figures"]) == 4  # loss curves + reconstructions for each of 2 questions
    for fig in paths["figures"]:
        assert fig.parent == study / "figures"
        assert fig.read_bytes().startswith(PNG_MAGIC)
    md = paths["md"].read_text()
    for ref in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (study / ref).is_file(), ref
    # shareable like any plain write, not private like a bare temporary file
    for path in [paths["html"], paths["md"], *paths["figures"]]:
        assert path.stat().st_mode & 0o777 == 0o644
    # atomic writes leave no temporary files behind
    assert not [p for p in study.rglob(".*") if p.is_file()]


def test_html_is_self_contained(built):
    study, paths, _ = built
    html = paths["html"].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.I)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "url(" not in html.lower()
    assert "@import" not in html.lower()
    imgs = parse(html).imgs
    assert len(imgs) == 4
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)
    # every anchor link points inside the page
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.startswith("#"), href


def test_html_escapes_text(built):
    _, paths, _ = built
    html = paths["html"].read_text()
    assert "Exercise 12 – Autoencoders &lt;reproduction&gt;" in html
    assert "<reproduction>" not in html
    md = paths["md"].read_text()
    # Markdown is not HTML-escaped; a tag-like "<" is backslash-escaped so that renderers show it
    assert md.startswith("# Exercise 12 – Autoencoders \\<reproduction>\n")


def test_summary_table_matches_results(built):
    study, paths, _ = built
    results = json.loads((study / "results.json").read_text())
    rows = parse(paths["html"].read_text()).tables["summary"]
    header, body = rows[0], rows[1:]
    assert header == ["id", "question", "baseline val loss", "variant val loss", "variant vs baseline",
                      "claims confirmed"]
    assert len(body) == len(results["questions"])
    for row, q in zip(body, results["questions"]):
        b = results["runs"][q["baseline"]]["history"]["val_loss"][-1]
        v = results["runs"][q["variant"]]["history"]["val_loss"][-1]
        assert row[0] == q["id"]
        assert row[1] == q["question"]
        assert close(row[2], b) and close(row[3], v)
        assert close(row[4], v / b, rel=5e-3)
        n_ok = sum(evaluate_claim(c, results["runs"][q["baseline"]], results["runs"][q["variant"]])["status"]
                   == "confirmed" for c in q["claims"])
        assert row[5] == f"{n_ok}/{len(q['claims'])}"
    # the fixture's numbers: 2.1 has 3 of 4 claims (the 'above 0.9' one is false), 4.1 has 2 of 2
    assert [r[5] for r in body] == ["3/4", "2/2"]


def test_markdown_summary_matches_html(built):
    _, paths, _ = built
    md = paths["md"].read_text()
    html_rows = parse(paths["html"].read_text()).tables["summary"][1:]
    for row in html_rows:
        line = next(line for line in md.splitlines() if line.startswith(f"| [{row[0]}]"))
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[2:] == row[2:]


def test_question_sections(built):
    study, paths, _ = built
    html = paths["html"].read_text()
    tables = parse(html).tables
    compare = [rows for name, rows in tables.items() if name.startswith("anon")]
    assert len(compare) == 2
    labels_21 = [r[0] for r in compare[0][1:]]
    labels_41 = [r[0] for r in compare[1][1:]]
    for label in ("final train loss", "final val loss", "BCE", "MSE", "PSNR (dB)", "SSIM", "dead code units",
                  "mean activation", "zero fraction", "diversity"):
        assert label in labels_21 and label in labels_41
    assert not any(label.startswith("noisy") for label in labels_21)
    assert "noisy: SSIM" in labels_41 and "noisy input itself: SSIM" in labels_41
    dead = next(r for r in compare[0] if r[0] == "dead code units")
    assert dead[1:3] == ["2 / 32", "5 / 32"]
    results = json.loads((study / "results.json").read_text())
    bv = results["runs"]["lab_undercomplete"]["history"]["val_loss"][-1]
    vv = results["runs"]["swapped"]["history"]["val_loss"][-1]
    assert f"Final val loss {vv:.3f} vs {bv:.3f} ({vv / bv:.2f}×) for the baseline" in html
    assert html.count('class="ok">confirmed<') == 5
    assert html.count('class="no">not confirmed<') == 1


def test_method_notes_and_corrected_effect(study):
    results = json.loads((study / "results.json").read_text())
    results["notes"] = [{"title": "Test-set scaling", "text": "The seed scales the test set with statistics fitted "
                         "on the test set itself."},
                        {"title": "", "text": "Question 4.1 validates on clean inputs."},
                        "Section 4 says sparse autoencoder where it means the denoising one."]
    (study / "results.json").write_text(json.dumps(results))
    paths = build_report(study)
    results = json.loads((study / "results.json").read_text())
    html = paths["html"].read_text()
    assert "Method notes" in html
    assert "fitted on the test set itself" in html
    assert "validates on clean" in html
    assert "sparse autoencoder" in html
    rows = parse(html).tables["reevaluated"][1:]
    assert len(rows) == 3  # denoising_06 has no corrected twin
    for row in rows:
        run = results["runs"][row[0]]
        seed_val = run["history"]["val_loss"][-1]
        assert close(row[1], seed_val) and close(row[2], seed_val * 1.05)
        assert row[3] == "+5.00%"
    assert "Not measured under the corrected protocol: denoising_06." in html
    assert "Corrected protocol: each trained model evaluated on the train-scaled test split." in html


def test_appendix_lists_metric_docs(built):
    from aelab.metrics import METRIC_DOCS

    _, paths, _ = built
    html, md = paths["html"].read_text(), paths["md"].read_text()
    for name in METRIC_DOCS:
        assert f"<dt><code>{name}</code></dt>" in html
        assert f"- `{name}`:" in md


def test_build_report_is_deterministic(built):
    study, paths, _ = built
    first = paths["html"].read_bytes()
    build_report(study)
    assert paths["html"].read_bytes() == first


def test_no_pyplot_figures_left_open(built):
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_missing_samples_is_noted_not_fatal(study):
    (study / "runs/swapped-0123abcd/samples.npz").unlink()
    paths = build_report(study)
    html = paths["html"].read_text()
    assert "swapped-0123abcd/samples.npz not found" in html
    assert len(parse(html).imgs) == 4  # the baseline's reconstructions are still shown


def test_missing_results_raises(tmp_path):
    with pytest.raises(DataError, match="results.json not found"):
        build_report(tmp_path)


def test_corrupt_inputs_raise(study):
    (study / "runs/swapped-0123abcd/samples.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt"):
        build_report(study)
    (study / "results.json").write_text("{ nope")
    with pytest.raises(DataError, match="not readable JSON"):
        build_report(study)


def test_question_naming_unknown_run_raises(study):
    results = json.loads((study / "results.json").read_text())
    results["questions"][0]["variant"] = "nope"
    (study / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="'nope'"):
        build_report(study)


def test_bad_claim_in_study_raises_config_error(study):
    results = json.loads((study / "results.json").read_text())
    results["questions"][0]["claims"].append({"text": "x", "kind": "vibes", "params": {}})
    (study / "results.json").write_text(json.dumps(results))
    with pytest.raises(ConfigError, match="question 2.1.*unknown claim kind 'vibes'"):
        build_report(study)


# ------------------------------------------------------------------------------------------
# resolve
# ------------------------------------------------------------------------------------------
RUN = make_run("r", 4, 1.0, 0.5, noisy=noisy_block(0.6, 0.2))


@pytest.mark.parametrize("path, expected", [
    ("final.loss", RUN["history"]["loss"][-1]),
    ("final.val_loss", RUN["history"]["val_loss"][-1]),
    ("first.loss", 1.0),
    ("history.loss[1]", RUN["history"]["loss"][1]),
    ("history.val_loss[-1]", RUN["history"]["val_loss"][-1]),
    ("metrics.ssim", 0.8),
    ("metrics.code.dead_units", 2.0),
    ("metrics.noisy.input_ssim", 0.2),
])
def test_resolve_paths(path, expected):
    assert C.resolve(RUN, path) == pytest.approx(expected)


@pytest.mark.parametrize("path, match", [
    ("loss", "unknown metric path"),
    ("final", "unknown metric path"),
    ("metrics.code", "not a number"),
    ("metrics.bogus", "no metric"),
    ("metrics.code.bogus", "no metric"),
    ("final.bogus", "no history key"),
    ("history.loss[4]", "4 epochs"),
    ("metrics.extra.ssim", "unknown metric path"),
])
def test_resolve_rejects_bad_paths(path, match):
    with pytest.raises(ValueError, match=match):
        C.resolve(RUN, path)


def test_resolve_noisy_block_missing():
    with pytest.raises(ValueError, match="no metrics.noisy block"):
        C.resolve(make_run("clean", 3, 1, 0.5), "metrics.noisy.ssim")


# ------------------------------------------------------------------------------------------
# claims
# ------------------------------------------------------------------------------------------
def run_with(metrics: dict | None = None, loss: list[float] | None = None) -> dict:
    loss = loss or [1.0, 0.5]
    return {"name": "x", "history": {"loss": loss, "val_loss": loss}, "metrics": metrics or {}}


def claim(kind, **params):
    return {"text": kind, "kind": kind, "params": params}


@pytest.mark.parametrize("c, base, var, ok", [
    (claim("ratio_at_least", metric="metrics.bce", min=2), 0.1, 0.25, True),
    (claim("ratio_at_least", metric="metrics.bce", min=2), 0.1, 0.15, False),
    (claim("ratio_at_least", metric="metrics.bce", min=2), 0.1, 0.2, True),  # boundary counts
    (claim("ratio_between", metric="metrics.bce", min=1.0, max=1.3), 0.1, 0.11, True),
    (claim("ratio_between", metric="metrics.bce", min=1.0, max=1.3), 0.1, 0.15, False),
    (claim("ratio_between", metric="metrics.bce", min=1.0, max=1.3), 0.1, 0.09, False),
    (claim("value_near", metric="metrics.bce", value=0.4, rel_tol=0.1), 0.1, 0.42, True),
    (claim("value_near", metric="metrics.bce", value=0.4, rel_tol=0.1), 0.1, 0.30, False),
    (claim("less_than_baseline", metric="metrics.bce"), 0.1, 0.09, True),
    (claim("less_than_baseline", metric="metrics.bce"), 0.1, 0.1, False),
    (claim("greater_than_baseline", metric="metrics.bce"), 0.1, 0.2, True),
    (claim("greater_than_baseline", metric="metrics.bce"), 0.1, 0.05, False),
    (claim("below", metric="metrics.bce", value=0.3), 9.9, 0.2, True),
    (claim("below", metric="metrics.bce", value=0.3), 0.0, 0.4, False),
    (claim("above", metric="metrics.bce", value=0.3), 0.0, 0.4, True),
    (claim("above", metric="metrics.bce", value=0.3), 9.9, 0.2, False),
    (claim("ratio_at_least", metric="metrics.bce", min=2), 0.1, float("nan"), False),
    (claim("less_than_baseline", metric="metrics.bce"), float("nan"), 0.05, False),
    (claim("below", metric="metrics.bce", value=0.3), 0.1, None, False),  # JSON null
])
def test_claim_kinds(c, base, var, ok):
    verdict = evaluate_claim(c, run_with({"bce": base}), run_with({"bce": var}))
    assert set(verdict) == {"status", "measured", "detail"}
    assert verdict["status"] == ("confirmed" if ok else "not confirmed")
    assert verdict["measured"] and verdict["detail"].endswith(".")


def test_ratio_claim_reports_numbers():
    verdict = evaluate_claim(claim("ratio_at_least", metric="metrics.bce", min=2),
                             run_with({"bce": 0.1}), run_with({"bce": 0.25}))
    assert verdict["measured"] == "metrics.bce: variant 0.2500 / baseline 0.1000 = 2.50×"


@pytest.mark.parametrize("loss, after, ok, why", [
    ([1.0, 0.5, 0.49, 0.489], 2, True, "fell by 50.0%"),
    ([1.0, 0.8, 0.6, 0.4], 2, False, "kept falling"),
    ([1.0, 1.1, 1.05, 1.05], 2, False, "did not fall"),
    ([1.0, 0.5, 0.49], 5, False, "only 3 epochs"),
    ([1.0, 0.5, float("nan"), 0.4], 2, False, "kept falling"),
    ([1.0, 0.5, 0.4, float("nan")], 2, False, "non-finite"),
])
def test_plateau(loss, after, ok, why):
    c = claim("plateau", history="loss", after=after, max_rel_drop=0.05)
    verdict = evaluate_claim(c, run_with(), run_with(loss=loss))
    assert verdict["status"] == ("confirmed" if ok else "not confirmed")
    assert why in verdict["detail"]


def test_plateau_judges_the_named_history():
    run = {"name": "x", "history": {"loss": [1.0, 0.8, 0.6, 0.4], "val_loss": [1.0, 0.5, 0.49, 0.489]}}
    assert evaluate_claim(claim("plateau", history="val_loss", after=2, max_rel_drop=0.05),
                          run, run)["status"] == "confirmed"
    assert evaluate_claim(claim("plateau", history="loss", after=2, max_rel_drop=0.05),
                          run, run)["status"] == "not confirmed"


def test_claim_of_baseline_judges_the_baseline():
    base, var = run_with({"bce": 0.09}), run_with({"bce": 0.40})
    c = claim("value_near", metric="metrics.bce", value=0.09, rel_tol=0.1, of="baseline")
    verdict = evaluate_claim(c, base, var)
    assert verdict["status"] == "confirmed"
    assert verdict["detail"].startswith("The baseline's metrics.bce of 0.09000")
    assert evaluate_claim(claim("value_near", metric="metrics.bce", value=0.09, rel_tol=0.1, of="variant"),
                          base, var)["status"] == "not confirmed"
    flat = {"name": "b", "history": {"loss": [1.0, 0.5, 0.49, 0.489]}}
    steep = {"name": "v", "history": {"loss": [1.0, 0.8, 0.6, 0.4]}}
    verdict = evaluate_claim(claim("plateau", history="loss", after=2, max_rel_drop=0.05, of="baseline"), flat, steep)
    assert verdict["status"] == "confirmed" and "baseline's loss" in verdict["detail"]


@pytest.mark.parametrize("c, match", [
    (claim("ratio_at_least", metric="metrics.bce", min=2, of="baseline"), "only works with"),
    (claim("below", metric="metrics.bce", value=1, of="both"), "'of' must be"),
    (claim("vibes", metric="metrics.bce"), "unknown claim kind 'vibes'"),
    ({"text": "no kind", "params": {}}, "unknown claim kind None"),
    (claim("ratio_at_least", metric="metrics.bce"), "missing min"),
    (claim("below", metric="metrics.bce", value=1, vlaue=2), "unknown vlaue"),
    (claim("plateau", history="loss", after=1, max_rel_drop=0.1), "after"),
    (claim("ratio_between", metric="metrics.bce", min=2, max=1), "above max"),
    (claim("above", metric="metrics.bce", value="high"), "must be a number"),
    (claim("above", metric="bce", value=1), "unknown metric path"),
    ("not a claim", "must be a mapping"),
])
def test_bad_claims_raise(c, match):
    with pytest.raises(ValueError, match=match):
        evaluate_claim(c, run_with({"bce": 0.1}), run_with({"bce": 0.2}))


def test_a_claim_kind_is_judged_once_registered_from_test_code():
    from aelab.study import claims as SC

    class Finite(SC.ClaimParams):
        one_run = True
        metric: str

    @C.register_judge("finite")
    def _finite(p, run, baseline):
        x = C.resolve(run, p.metric)
        return C.Verdict(C.CONFIRMED if x == x else C.NOT_CONFIRMED, f"{p.metric} = {x}", "Finite or not.")

    SC.register_claim_kind("finite", Finite)
    try:
        assert evaluate_claim(claim("finite", metric="metrics.bce"), run_with({"bce": 0.1}),
                              run_with({"bce": float("nan")}))["status"] == "not confirmed"
        with pytest.raises(ValueError, match="missing metric"):
            evaluate_claim(claim("finite"), run_with(), run_with())
    finally:
        del SC.CLAIM_KINDS["finite"], C.JUDGES["finite"]


# ------------------------------------------------------------------------------------------
# observations and formatting
# ------------------------------------------------------------------------------------------
def test_observe_is_written_from_numbers():
    results = make_results()
    runs = results["runs"]
    q = results["questions"][0]
    text = P.observe(q, runs["lab_undercomplete"], runs["swapped"])
    assert text == P.observe(q, runs["lab_undercomplete"], runs["swapped"])
    bv, vv = runs["lab_undercomplete"]["history"]["val_loss"][-1], runs["swapped"]["history"]["val_loss"][-1]
    assert f"val loss {N.fmt_num(vv, 3)} vs {N.fmt_num(bv, 3)} ({N.fmt_ratio(vv / bv)}) for the baseline" in text
    assert "SSIM 0.350 vs 0.800 (Δ -0.450)" in text
    assert "5 of 32 units dead vs 2 of 32 in the baseline" in text
    assert "noisy" not in text
    assert "much worse" in text
    # swap the roles: the words follow the numbers
    flipped = P.observe(q, runs["swapped"], runs["lab_undercomplete"])
    assert "SSIM 0.800 vs 0.350 (Δ +0.450)" in flipped and "much better" in flipped


def test_observe_denoising_mentions_noisy_inputs():
    results = make_results()
    runs = results["runs"]
    text = P.observe(results["questions"][1], runs["lab_denoising"], runs["denoising_06"])
    assert "noise factor 0.600 vs 0.300" in text
    assert "denoised SSIM 0.620 vs 0.700 for the baseline" in text
    assert "noisy input itself scores 0.120" in text
    assert "outputs are clearly closer to the clean images" in text  # 0.12 in, 0.62 out
    assert "denoises less well than the baseline" in text


@pytest.mark.parametrize("x, s", [
    (0.0921, "0.09210"), (0.4, "0.4000"), (20.1, "20.10"), (3, "3"), (None, "—"),
    (float("nan"), "nan"), (float("inf"), "inf"), (1.5e-5, "1.500e-05"), (0, "0"),
])
def test_fmt_num(x, s):
    assert N.fmt_num(x) == s


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def test_figures_return_png():
    runs = make_results()["runs"]
    assert F.loss_curves(runs["lab_undercomplete"], runs["swapped"], ("a", "b")).startswith(PNG_MAGIC)
    rng = np.random.default_rng(1)
    grid = F.recon_grid([("original", rng.random((10, 784))), ("recon", rng.random((10, 28, 28)))])
    assert grid.startswith(PNG_MAGIC)
    sweep = F.sweep_plot([0.1, 0.3, 0.6], {"loss/train": [0.1, 0.2, 0.3], "loss/val": [0.1, None, 0.3],
                                           "SSIM": [0.8, 0.7, 0.6]}, "noise_factor", None)
    assert sweep.startswith(PNG_MAGIC)
    cat = F.sweep_plot(["relu", "sigmoid"], {"loss": [0.1, 0.2]}, "activation", None)
    assert cat.startswith(PNG_MAGIC)


def test_loss_curves_handle_empty_and_nan_histories():
    empty = {"name": "e", "history": {}}
    nan = {"name": "n", "history": {"loss": [1.0, float("nan"), 0.5], "val_loss": [None, 0.6, 0.4]}}
    assert F.loss_curves(empty, nan, ("e", "n")).startswith(PNG_MAGIC)


def test_recon_grid_rejects_bad_shapes():
    # rows whose width does not fit the sample shape given (a flat 10×10 is a valid image now)
    with pytest.raises(ValueError, match=r"rows of 100 values are not images of shape \[1, 28, 28\]"):
        F.recon_grid([("x", np.zeros((10, 100)))], shape=(1, 28, 28))
    with pytest.raises(ValueError):
        F.recon_grid([])


# ------------------------------------------------------------------------------------------
# sweep report
# ------------------------------------------------------------------------------------------
@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    values = [0.1, 0.3, 0.6, 1.0]
    runs, points = {}, []
    for i, nf in enumerate(values):
        key = f"denoise_{nf}"
        runs[key] = make_run(key, 5, 0.3, 0.09 + 0.02 * i, noise=nf, ssim=0.8 - 0.05 * i,
                             noisy=noisy_block(0.7 - 0.1 * i, 0.5 - 0.1 * i))
        write_samples(tmp_path, runs[key], rng, noisy=True)
        points.append({"value": nf, "run": key})
    results = {"sweep": "noise", "parameter": "data.noise_factor", "values": values, "runs": runs,
               "points": points, "baseline": "denoise_0.3", "protocol": "seed", "wall_seconds": 12.0,
               "log_x": False}
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path


def test_build_sweep_report(sweep):
    paths = build_sweep_report(sweep)
    assert paths["html"].is_file() and paths["md"].is_file()
    assert sorted(p.name for p in paths["figures"]) == ["sweep-recon.png", "sweep.png"]
    html = paths["html"].read_text()
    parsed = parse(html)
    assert len(parsed.imgs) == 2
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(PNG_MAGIC) for s in parsed.imgs)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    rows = parsed.tables["sweep"][1:]
    assert [r[0] for r in rows] == ["0.1", "0.3 (baseline)", "0.6", "1"]
    results = json.loads((sweep / "results.json").read_text())
    header = parsed.tables["sweep"][0]
    col = header.index("final val loss")
    for row, p in zip(rows, results["points"]):
        assert close(row[col], results["runs"][p["run"]]["history"]["val_loss"][-1])
    assert "lowest 0.0985 at noise_factor=0.1" in html
    assert "validates on clean" not in html and "Method notes" not in html  # a sweep has no study notes
    md = paths["md"].read_text()
    assert "| 0.3 (baseline) |" in md


def test_sweep_without_points_raises(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"runs": {}, "points": []}))
    with pytest.raises(DataError, match="points"):
        build_sweep_report(tmp_path)
