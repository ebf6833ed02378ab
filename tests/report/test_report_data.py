"""Reports on any data: figures in the runs' own sample shape, the data named at the top, claims
written for other data, sweeps with seed replicates, and the held-out-class (anomaly) table.

Fake sweep/study directories are written in tmp_path (no training) except one short digits run
through the CLI that checks a run trained without a class saves what the anomaly table needs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aelab.errors import ConfigError
from aelab.report import build_sweep_report
from aelab.report import claims as C
from aelab.report import prose as P
from aelab.report import figures as F
from aelab.plots import latent as LF
from aelab.report import render as R


def _run(name: str, shape: list[int], val: list[float], *, dataset: str = "digits", exclude=None, seed: int = 1,
         metrics: dict | None = None) -> dict:
    return {
        "name": name, "dir": f"runs/{name}",
        "config": {"name": name, "model": {"family": "ae", "input_shape": shape},
                   "data": {"dataset": dataset, "scaling": "unit", "exclude_labels": exclude or []},
                   "train": {"loss": "bce", "seed": seed}},
        "history": {"loss": [v + 0.01 for v in val], "val_loss": val, "epoch": list(range(1, len(val) + 1))},
        "metrics": {"bce": val[-1], "diversity": 0.5, **(metrics or {})},
        "run": {"data_source": {"dataset": dataset, "kind": dataset, "source": "test source"}},
    }


def _sweep_dir(tmp_path: Path, runs: dict, points: list, replicates: dict | None = None, parameter: str = "p",
               d: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for run in runs.values():
        rd = tmp_path / run["dir"]
        rd.mkdir(parents=True, exist_ok=True)
        np.savez(rd / "samples.npz", original=rng.random((10, d)).astype(np.float32),
                 recon=rng.random((10, d)).astype(np.float32))
    results = {"sweep": f"base: {parameter}", "parameter": parameter, "values": [p["value"] for p in points],
               "runs": runs, "points": points, "baseline": None}
    if replicates:
        results["replicates"] = {"seeds": [1, 2], "runs": replicates}
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path


# -- figures follow the run's sample shape --------------------------------------------------------
def test_recon_figure_uses_the_recorded_shape_not_a_guess():
    rows = [("original", np.random.default_rng(1).random((4, 96)).astype(np.float32))]
    run = _run("a", [1, 8, 12], [0.5])
    # 96 values: a guess from the width would draw vectors; the run says 8×12 images
    assert F.infer_shape(96) == (96,)
    assert R._recon_png(rows, [("a", run)]) == F.recon_grid(rows, shape=(1, 8, 12))
    assert R._recon_png(rows, [("a", run)]) != F.recon_grid(rows)


def test_table_runs_get_the_per_feature_error_figure():
    rows = [("original", np.zeros((3, 5), np.float32)), ("b", np.ones((3, 5), np.float32))]
    b = _run("b", [5], [0.5], metrics={"feature_mse": [0.1, 0.2, 0.3, 0.4, 0.5]})
    v = _run("v", [5], [0.4], metrics={"feature_mse": [0.5, 0.4, 0.3, 0.2, 0.1]})
    got = R._recon_png(rows, [("baseline", b), ("variant", v)])
    assert got == F.feature_error_plot([("baseline", b["metrics"]["feature_mse"]),
                                        ("variant", v["metrics"]["feature_mse"])], rows,
                                       value_label=R.strip_value_label(b, v))
    with pytest.raises(ValueError, match="one number per feature"):
        F.feature_error_plot([("a", [0.1, 0.2]), ("b", [0.1])])


def test_sweep_report_on_a_table_shows_feature_errors(tmp_path):
    runs = {k: _run(k, [5], [0.6, 0.5 - i / 10], metrics={"feature_mse": [0.1 * (i + 1)] * 5})
            for i, k in enumerate(["r1", "r2"])}
    out = _sweep_dir(tmp_path, runs, [{"value": 1, "run": "r1"}, {"value": 2, "run": "r2"}], d=5)
    build_sweep_report(out)
    md = (out / "report.md").read_text()
    assert "Each of the 5 features' mean squared reconstruction error" in md
    assert "Data: digits" in md


# -- the data named plainly; claims written for other data ------------------------------------------
def test_loss_targets_are_data_bound_ratios_are_not():
    assert C.data_bound({"kind": "value_near", "params": {"metric": "final.val_loss", "value": 0.09, "rel_tol": 0.2}})
    assert C.data_bound({"kind": "below", "params": {"metric": "metrics.bce", "value": 0.1}})
    assert not C.data_bound({"kind": "above", "params": {"metric": "metrics.noisy.ssim", "value": 0.6}})
    assert not C.data_bound({"kind": "ratio_between", "params": {"metric": "final.val_loss", "min": 1, "max": 2}})
    assert not C.data_bound({"kind": "below", "params": {"metric": "metrics.diversity", "value": 0.3}})


def test_study_on_other_data_says_which_claims_hold(tmp_path):
    from aelab.study.spec import load_study

    spec = load_study("exercise12")
    runs = {"b": _run("b", [1, 8, 8], [0.5, 0.4]), "v": _run("v", [1, 8, 8], [0.5, 0.48])}
    qs = [{"id": q.id, "baseline": "b", "variant": "v", "question": q.question,
           "claims": [{"text": "loss about 0.09", "kind": "value_near",
                       "params": {"metric": "final.val_loss", "value": 0.09, "rel_tol": 0.2}},
                      {"text": "within 25%", "kind": "ratio_between",
                       "params": {"metric": "final.val_loss", "min": 1.0, "max": 1.25}},
                      {"text": "worse SSIM", "kind": "less_than_baseline", "params": {"metric": "metrics.ssim"}}]}
          for q in spec.questions]
    results = {"study": "exercise12", "runs": runs, "questions": qs}
    block = R._data_block(results)
    assert block["moved"] and block["written_for"] == ["mnist"] and block["datasets"] == ["digits"]
    assert block["sentence"].startswith("Data: digits — scikit-learn's 1,797 8×8 handwritten digits")
    assert "written for mnist" in block["sentence"]
    for run in runs.values():
        (tmp_path / run["dir"]).mkdir(parents=True)
    (tmp_path / "results.json").write_text(json.dumps(results))
    R.build_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    n = len(qs)
    # per question: 0.48/0.4 = 1.2 holds; the 0.09 target is MNIST's; SSIM is not measured on 8×8 images
    assert (f"On digits, of the study's {3 * n} claims about mnist, {n} (" in md
            and f"still hold, none do not, and {2 * n} (" in md)
    assert "cannot be judged on this data" in md
    assert md.count("is a final.val_loss measured on mnist; on digits that number has another scale") == n


def test_same_data_as_written_says_nothing_extra():
    runs = {"b": _run("b", [1, 28, 28], [0.2], dataset="mnist")}
    block = R._data_block({"study": "exercise12", "runs": runs, "questions": []})
    assert not block["moved"]  # ids differ from the shipped study's: not taken for it either
    assert R._claims_sentence(block, []) == ""


# -- sweeps: seeds, held-out classes, value lists -----------------------------------------------
def test_parse_values_takes_lists():
    from aelab.study import parse_values

    assert parse_values("[0],[1],[2]") == [[0], [1], [2]]
    assert parse_values("[3,5], [1]") == [[3, 5], [1]]
    assert parse_values("0.1,0.3") == [0.1, 0.3]
    for bad in ("[0,[1]", "[0]],[1]"):
        with pytest.raises(ConfigError, match="lists as"):
            parse_values(bad)


def test_seed_sentence_separates_noise_from_change():
    reps = [[_run("a", [4], [1.00]), _run("a2", [4], [1.02])],
            [_run("b", [4], [1.01]), _run("b2", [4], [1.03])],   # overlaps a: inside the seed spread
            [_run("c", [4], [1.20]), _run("c2", [4], [1.22])]]   # clear of b: a real change
    s = R._seed_sentence("k", [1, 2, 4], reps, P.recon_val_loss, "final val loss")
    assert "k=2 → 4 (1.19×)" in s and "larger than the seed spread" in s
    assert "not distinguishable from seed noise, for k=1 → 2" in s
    quiet = R._seed_sentence("k", [1, 2], reps[:2], P.recon_val_loss, "final val loss")
    assert quiet.startswith("Across 2 seeds") and "none of them can be told from seed noise" in quiet


def test_sweep_with_seeds_and_held_out_classes(tmp_path):
    runs, reps, points = {}, {}, []
    for _i, (cls, v1, v2) in enumerate([(0, 0.40, 0.41), (1, 0.405, 0.415)]):
        a = _run(f"x{cls}", [1, 8, 8], [0.5, v1], exclude=[cls])
        b = _run(f"x{cls}@seed2", [1, 8, 8], [0.5, v2], exclude=[cls], seed=2)
        runs[a["name"]], runs[b["name"]] = a, b
        reps[a["name"]] = [a, b]
        points.append({"value": [cls], "run": a["name"]})
    out = _sweep_dir(tmp_path, runs, points, reps, parameter="data.exclude_labels")
    # codes.npz: class 0 reconstructs worse than the rest in x0 (errors 3, 4 vs 1, 2, 3.5: AUC 5/6)
    labels = np.array([0, 0, 1, 2, 3])
    for name, errs in (("x0", [3, 4, 1, 2, 3.5]), ("x0@seed2", [3, 4, 1, 2, 5]),
                       ("x1", [2, 3, 0.5, 4, 5]), ("x1@seed2", [2, 3, 0.5, 4, 5])):
        np.savez(out / "runs" / name / "codes.npz", train_codes=np.zeros((3, 2), np.float32),
                 test_codes=np.zeros((5, 2), np.float32), test_errors=np.asarray(errs, np.float32), test_labels=labels)
    build_sweep_report(out)
    md = (out / "report.md").read_text()
    row0 = next(line for line in md.splitlines() if line.startswith("| [0] |"))
    assert "| 0.833 |" in row0 and "| 2 / 3 |" in row0                 # 5 of 6 pairs; 2 held out, 3 others
    assert "0.4050 (0.4000 – 0.4100)" in row0                          # mean (min – max) over the 2 seeds
    # the metric columns are the seeds' means (the first seed alone would say 0.4000 and 0.4100)
    header = next(line for line in md.splitlines() if line.startswith("| data.exclude_labels |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in row0.strip("|").split("|")]
    assert cells[cols.index("BCE (mean of 2 seeds)")] == "0.4050"
    assert cells[cols.index("final train loss (mean of 2 seeds)")] == "0.4150"
    assert "held-out class ROC-AUC (reconstruction error) (first seed)" in cols
    row1 = next(line for line in md.splitlines() if line.startswith("| [1] |"))
    assert "| 0 | 1 / 4 |" in row1                                     # class 1 reconstructs best: AUC 0
    assert "Across 2 seeds per value, no change of the final val loss" in md
    assert "Most detectable: [0] (AUC 0.833); least: [1] (AUC 0.000)" in md


def test_a_run_trained_without_a_class_saves_its_anomaly_score(tmp_path):
    from aelab.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--exclude-labels", "0", "--epochs", "1", "--batch-size", "64",
                 "--out", str(out), "-q"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["exclude_labels"] == [0]
    metrics = json.loads((out / "metrics.json").read_text())
    a = metrics["latent"]["anomaly"]
    codes = np.load(out / "codes.npz")
    # the codes cover the whole test split (class 0 included), and the score is theirs
    assert a["held_out"] == [0] and a["n_held_out"] == int((codes["test_labels"] == 0).sum()) > 0
    from aelab.latent import anomaly_scores

    assert a["auc"] == pytest.approx(anomaly_scores(codes["test_errors"], codes["test_labels"], [0])["auc"])


def test_exclude_labels_flag_is_refused_clearly(tmp_path, capsys):
    from aelab.cli import main

    assert main(["train", "--dataset", "digits", "--exclude-labels", "3,x", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "exclude_labels" in err and "3 or 3,5" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# -- figure polish ---------------------------------------------------------------------------------
def test_thumbnail_boxes_do_not_overlap():
    anchors = np.array([[0.5, 0.5]] * 6 + [[0.0, 0.0], [1.0, 1.0]])
    spots = LF._place_boxes(anchors, 0.1)
    assert np.allclose(spots[0], [0.5, 0.5])  # the first stays on its point
    for i in range(len(spots)):
        assert 0.05 - 1e-9 <= spots[i].min() and spots[i].max() <= 0.95 + 1e-9
        for j in range(i):
            assert np.max(np.abs(spots[i] - spots[j])) >= 0.1 - 1e-9


def test_noise_series_grid_is_compact():
    rng = np.random.default_rng(0)
    levels = [(f"noise={x / 10:g}", rng.random((10, 64)), rng.random((10, 64))) for x in range(1, 11)]
    compact = Image.open(io.BytesIO(F.paired_grid(levels, shape=(1, 8, 8), top=("clean", rng.random((10, 64))))))
    tall_rows = [("original", rng.random((10, 64)))] + [r for lab, a, b in levels for r in ((lab, a), (lab, b))]
    tall = Image.open(io.BytesIO(F.recon_grid(tall_rows, shape=(1, 8, 8))))
    assert compact.height < 0.6 * tall.height
    with pytest.raises(ValueError, match="vectors"):
        F.paired_grid([("a", np.zeros((2, 5)), np.zeros((2, 5)))], shape=(5,))


def test_accuracy_panel_keeps_its_whole_range():
    from matplotlib.figure import Figure

    seen = {}
    orig = Figure.savefig

    def spy(self, *a, **k):
        seen["ylim"] = {ax.get_title(): ax.get_ylim() for ax in self.axes if ax.get_visible()}
        return orig(self, *a, **k)

    Figure.savefig = spy
    try:
        F.sweep_plot([1, 2, 3], {"linear-probe accuracy": [1.0, 1.0, 1.0], "dead": [1.0, 1.0, 1.0]}, "k",
                     ylims={"linear-probe accuracy": (0.0, 1.02)})
    finally:
        Figure.savefig = orig
    assert seen["ylim"]["linear-probe accuracy"] == (0.0, 1.02)
    assert seen["ylim"]["dead"] == (0.0, 2.0)  # a count keeps its integer window


def test_protocol_names_a_slice_only_where_the_limit_cut_the_data():
    """A quick study's data.limit = 3000 on a set of 1,437 training images cuts nothing: the
    protocol sentence must not say "the first 3000 training images" (it did)."""
    def rec(n_train, n_test, limit=3000, test_limit=500, exclude=None):
        r = _run("a", [1, 8, 8], [0.5], exclude=exclude)
        r["config"]["data"].update(limit=limit, test_limit=test_limit)
        r["run"]["n_train"] = n_train
        r["metrics"]["n_test"] = n_test
        return {"a": r}

    assert R._protocol_from_configs(rec(1437, 360))["data"] == ""
    assert R._protocol_from_configs(rec(3000, 360))["data"] == ("trained and evaluated on a slice of the data: "
                                                                "the first 3000 training images")
    assert R._protocol_from_configs(rec(3000, 500))["data"].endswith("and the first 500 test images")
    # runs recorded before n_train was: the config's limit, as before
    old = rec(None, None)
    del old["a"]["run"]["n_train"], old["a"]["metrics"]["n_test"]
    assert "the first 3000 training images" in R._protocol_from_configs(old)["data"]
    # held-out classes make the recorded size smaller than a limit that did cut
    assert "the first 3000 training images" in R._protocol_from_configs(rec(2700, 500, exclude=[0]))["data"]
