"""aelab.latent (pure functions), codes.npz (aelab.runs.codes), the data's own baselines computed once,
``aelab latent RUN_DIR`` (aelab.analysis.latent) and the report's latent parts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aelab import latent as L
from aelab.analysis import latent as A
from aelab.cli import main
from aelab.errors import DataError
from aelab.runs import codes as C
from aelab.report import build_report
from aelab.runs import train_runs
from aelab.study import load_study, run_study
from conftest import make_cfg

PNG = b"\x89PNG\r\n\x1a\n"


def blobs(n_per: int = 40, classes: int = 4, dims: int = 3, spread: float = 0.05, seed: int = 0):
    """Well-separated Gaussian blobs: class c sits at 5·e_c (cyclically over the dimensions)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    centres = np.zeros((classes, dims))
    for c in range(classes):
        centres[c, c % dims] = 5.0 * (1 + c // dims)
    return centres[y] + spread * rng.standard_normal((len(y), dims)), y


# -- interpolation, traversal, grids -------------------------------------------------------------------
def test_lerp_is_the_straight_line():
    path = L.lerp([0.0, 2.0], [4.0, -2.0], 5)
    assert path.shape == (5, 2)
    np.testing.assert_allclose(path[2], [2.0, 0.0])
    np.testing.assert_allclose(path[[0, -1]], [[0.0, 2.0], [4.0, -2.0]])


def test_slerp_keeps_to_the_sphere():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    path = L.slerp(a, b, 3)
    np.testing.assert_allclose(path[1], [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0)  # lerp's midpoint has norm 0.707
    np.testing.assert_allclose(path[[0, -1]], [a, b], atol=1e-12)
    np.testing.assert_allclose(L.slerp(a, 2 * a, 3), L.lerp(a, 2 * a, 3))  # parallel: the straight line
    np.testing.assert_allclose(L.interpolate(a, b, 3, spherical=False)[1], [0.5, 0.5, 0.0])


def test_traversal_moves_one_dimension():
    z = np.array([0.5, -1.0, 2.0])
    out = L.traversal(z, 1, [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(out[:, 1], [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(out[:, [0, 2]], [[0.5, 2.0]] * 3)
    np.testing.assert_allclose(L.traversal_values(None, 0, 3, prior=True), [-2.5, 0.0, 2.5])
    codes = np.arange(101, dtype=float)[:, None]
    np.testing.assert_allclose(L.traversal_values(codes, 0, 2), [2.0, 98.0])  # the 2nd and 98th percentile


def test_manifold_grid_reading_order_and_quantiles():
    pts, xs, ys = L.manifold_grid(3, prior=True)
    np.testing.assert_allclose(xs, [-1.6448536, 0.0, 1.6448536], atol=1e-6)  # Φ⁻¹(0.05), Φ⁻¹(0.5), Φ⁻¹(0.95)
    np.testing.assert_allclose(ys, xs[::-1])  # the top row has the largest z₂
    np.testing.assert_allclose(pts[:3, 1], ys[0])
    np.testing.assert_allclose(pts[:3, 0], xs)
    pts, xs, ys = L.manifold_grid(2, prior=False, lo=(0, 10), hi=(1, 20))
    np.testing.assert_allclose(pts, [[0, 20], [1, 20], [0, 10], [1, 10]])


def test_prior_samples_are_seeded_standard_normal():
    a, b = L.prior_samples(2000, 3, seed=5), L.prior_samples(2000, 3, seed=5)
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean()) < 0.1 and abs(a.std() - 1) < 0.05


# -- maps ---------------------------------------------------------------------------------------------
def test_embed_2d():
    z = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(L.embed_2d(z, "code"), z)
    np.testing.assert_array_equal(L.embed_2d(np.array([[1.0], [2.0]]), "code"), [[1.0, 0.0], [2.0, 0.0]])
    x, _ = blobs()
    assert L.embed_2d(x, "pca").shape == (len(x), 2)
    assert L.embed_2d(x, "tsne").shape == (len(x), 2)
    np.testing.assert_array_equal(L.embed_2d(np.ones((50, 8)), "tsne"), np.zeros((50, 2)))  # a collapsed code
    with pytest.raises(ValueError, match="unknown 2-D map method"):
        L.embed_2d(x, "mds")
    with pytest.raises(ValueError, match="at most 2"):
        L.embed_2d(x, "code")
    assert L.map_methods(2) == ["code"] and L.map_methods(32, umap=False) == ["pca", "tsne"]


def test_subsample_is_seeded_and_sorted():
    a = L.subsample(1000, 10, seed=1)
    np.testing.assert_array_equal(a, L.subsample(1000, 10, seed=1))
    assert len(set(a)) == 10 and list(a) == sorted(a)
    np.testing.assert_array_equal(L.subsample(5, 10, seed=1), np.arange(5))


# -- how good is the code -----------------------------------------------------------------------------
def test_separable_codes_score_perfectly_and_noise_scores_near_chance():
    x, y = blobs(seed=0)
    xt, yt = blobs(seed=1)
    q = L.code_quality(x, y, xt, yt)
    assert q["probe_accuracy"] == 1.0 and q["knn_accuracy"] == 1.0
    assert q["ari"] == pytest.approx(1.0) and q["nmi"] == pytest.approx(1.0)
    assert q["chance"] == 0.25 and q["classes"] == 4 and q["dims"] == 3
    rng = np.random.default_rng(0)
    noise = L.code_quality(rng.standard_normal((400, 3)), rng.integers(0, 4, 400),
                           rng.standard_normal((400, 3)), rng.integers(0, 4, 400))
    assert noise["probe_accuracy"] < 0.4 and noise["knn_accuracy"] < 0.4 and abs(noise["ari"]) < 0.05


def test_a_collapsed_code_scores_chance_without_warnings():
    y = np.repeat(np.arange(4), 25)
    q = L.code_quality(np.zeros((100, 5)), y, np.zeros((100, 5)), y)  # warnings are errors in the tests
    assert q["ari"] == 0.0 and q["nmi"] == 0.0
    assert q["probe_accuracy"] == pytest.approx(0.25) and q["knn_accuracy"] <= 0.25 + 1e-9
    assert L.active_dims(np.zeros((100, 5))) == 0


def test_active_dims_absolute_for_mu_relative_for_a_deterministic_code():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2000, 3)) * np.array([1.0, 0.05, 0.0])  # variances 1, 0.0025, 0
    assert L.active_dims(z) == 1  # 0.0025 < 0.01
    assert L.active_dims(z, relative=True) == 1  # 0.0025 < 1% of 1
    assert L.active_dims(z * 0.05, relative=True) == 1 and L.active_dims(z * 0.05) == 0  # relative ignores the scale
    assert L.active_dims(np.full((10, 4), 3.0), relative=True) == 0


def test_quality_table_has_pixel_and_pca_baselines_of_the_code_size():
    x, y = blobs(dims=6)
    xt, yt = blobs(dims=6, seed=1)
    t = L.quality_table(x[:, :2], xt[:, :2], y, yt, x, xt)
    assert set(t) == {"code", "pixels", "pca"}
    assert t["pixels"]["dims"] == 6 and t["pca"]["dims"] == 2 and t["code"]["dims"] == 2
    assert t["pixels"]["probe_accuracy"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        L.code_quality(x, y[:-1], xt, yt)


def test_the_data_baselines_are_computed_once_per_data_set_to_the_bit(tmp_path, monkeypatch):
    """The raw-input and PCA rows depend on the data alone: computed once, then read back (from this
    process, or from the cache file in another), the same numbers as computing them; other data, or
    another PCA size, is another entry; a damaged or foreign cache file is computed again."""
    x, y = blobs(dims=6)
    xt, yt = blobs(dims=6, seed=1)
    fresh = L.quality_table(x[:, :2], xt[:, :2], y, yt, x, xt)
    calls = []
    real = L.input_baselines
    monkeypatch.setattr(L, "input_baselines", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(C, "_BASELINES", {})
    first = C.input_baselines(x, xt, y, yt, 2, cache=tmp_path)
    assert first == {"pixels": fresh["pixels"], "pca": fresh["pca"]} and len(calls) == 1
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].stem == C.baseline_fingerprint(x, xt, y, yt, 2)
    first["pixels"]["probe_accuracy"] = -1.0  # a caller's copy: the memo keeps its own
    assert C.input_baselines(x, xt, y, yt, 2, cache=tmp_path)["pixels"] == fresh["pixels"] and len(calls) == 1
    monkeypatch.setattr(C, "_BASELINES", {})  # another process: the file answers
    assert C.input_baselines(x, xt, y, yt, 2, cache=tmp_path) == {"pixels": fresh["pixels"], "pca": fresh["pca"]}
    assert len(calls) == 1
    # another PCA size, one value of the data changed: each its own entry
    C.input_baselines(x, xt, y, yt, 3, cache=tmp_path)
    x2 = x.copy()
    x2[0, 0] += 1e-9
    C.input_baselines(x2, xt, y, yt, 2, cache=tmp_path)
    assert len(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 3
    for bad in ("not json", json.dumps({"pixels": {"probe_accuracy": "high"}, "pca": {}})):
        files[0].write_text(bad)
        monkeypatch.setattr(C, "_BASELINES", {})
        assert C.input_baselines(x, xt, y, yt, 2, cache=tmp_path)["pca"] == fresh["pca"]
    assert len(calls) == 5 and json.loads(files[0].read_text())["pca"] == fresh["pca"]  # and rewritten
    # a cache directory that cannot be written: the numbers all the same
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setattr(C, "_BASELINES", {})
    assert C.input_baselines(x, xt, y, yt, 2, cache=blocked / "sub")["pixels"] == fresh["pixels"]


def test_the_measures_run_on_one_thread(monkeypatch):
    """The probe, k-NN, k-means and PCA run with every thread pool at one thread whatever the pools
    were set to (small problems; numbers that do not depend on the machine's cores)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    x, y = blobs(n_per=60, dims=6)
    xt, yt = blobs(n_per=60, dims=6, seed=1)
    seen = []
    real = L._quiet

    def spy():
        seen.append([d["num_threads"] for d in threadpool_info()])
        return real()

    with threadpool_limits(limits=2):
        ref = L.quality_table(x[:, :2], xt[:, :2], y, yt, x, xt)
        monkeypatch.setattr(L, "_quiet", spy)
        assert L.quality_table(x[:, :2], xt[:, :2], y, yt, x, xt) == ref
    assert len(seen) >= 9 and all(n == [1] * len(n) for n in seen)


# -- anomaly detection --------------------------------------------------------------------------------
def test_anomaly_auc_by_hand():
    y = np.array([0, 0, 1, 1])
    assert L.anomaly_scores([0.1, 0.2, 0.9, 0.8], y, [1])["auc"] == 1.0
    assert L.anomaly_scores([0.9, 0.8, 0.1, 0.2], y, [1])["auc"] == 0.0
    # held out 0.35, 0.8 against 0.1, 0.4: three of the four pairs are ordered right
    r = L.anomaly_scores([0.1, 0.4, 0.35, 0.8], y, [1])
    assert r["auc"] == 0.75 and r["n_held_out"] == 2 and r["mean_error_held_out"] == pytest.approx(0.575)
    with pytest.raises(ValueError, match="both held-out"):
        L.anomaly_scores([0.1, 0.2], [0, 0], [1])


def test_reconstruction_errors_by_hand():
    e = L.reconstruction_errors([[1.0, 0.0]], [[0.5, 0.5]], "bce")
    assert e[0] == pytest.approx(math.log(2))
    assert L.reconstruction_errors([[1.0, 0.0]], [[0.5, 0.5]], "mse")[0] == pytest.approx(0.25)


# -- codes saved by training, aelab latent --------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    ae = make_cfg(model__encoder=["128:relu", "2:linear"], model__decoder=["128:relu", "784:sigmoid"],
                  train__epochs=10, data__limit=1024, data__test_limit=256, name="ae2")
    vae = make_cfg(model__family="vae", model__encoder=["64:relu"], model__decoder=["64:relu", "784:sigmoid"],
                   model__latent=2, train__epochs=3, name="vae2")
    dirs = [root / "ae2", root / "vae2"]
    train_runs([ae, vae], dirs, device="cpu", progress=False, workers=1)
    return dirs


def test_training_saves_codes_and_labels_without_pickle(trained):
    ae = trained[0]
    with np.load(ae / "codes.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert set(arrays) == set(C.CODE_KEYS)
    assert arrays["train_codes"].shape == (1024, 2) and arrays["test_codes"].shape == (256, 2)
    assert arrays["test_labels"].shape == (256,) and arrays["test_errors"].shape == (256,)
    m = json.loads((ae / "metrics.json").read_text())["latent"]
    assert m["dims"] == 2 and m["n_test"] == 256
    # synthetic strokes: a 2-D code after 10 epochs reads the class well above chance (0.35 against 0.11)
    assert m["probe_accuracy"] > m["chance"] + 0.15 and m["knn_accuracy"] > m["chance"] + 0.15


def test_a_damaged_codes_file_is_one_clear_error(tmp_path, trained):
    (tmp_path / "codes.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="damaged"):
        C.read_codes(tmp_path)
    assert C.read_codes(tmp_path / "nothing") is None


def test_analyse_writes_figures_and_latent_json(trained, tmp_path):
    rep = A.analyse(trained[0], tmp_path / "ae", seed=0)
    assert set(rep["figures"]) == {"map", "interpolation", "traversal", "manifold"}
    for p in rep["figures"].values():
        assert Path(p).read_bytes()[:8] == PNG
    saved = json.loads((tmp_path / "ae" / "latent.json").read_text())
    q = saved["quality"]
    assert set(q) == {"code", "pixels", "pca"} and q["pca"]["dims"] == 2 and q["pixels"]["dims"] == 784
    assert q["code"]["probe_accuracy"] > q["code"]["chance"] + 0.15
    vae = A.analyse(trained[1], tmp_path / "vae", baselines=False)
    assert {"prior", "manifold", "interpolation"} <= set(vae["figures"]) and vae["code_is_mean"]
    assert set(vae["quality"]) == {"code"}


def test_analyse_computes_the_data_baselines_once(trained, tmp_path, monkeypatch):
    """The raw-input and PCA rows of a second analysis of the same data come from the cache, the
    same numbers as computing the whole table."""
    monkeypatch.setattr(C, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(C, "_BASELINES", {})
    calls = []
    real = L.input_baselines
    monkeypatch.setattr(L, "input_baselines", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = A.analyse(trained[0], tmp_path / "a", methods=["code"])
    monkeypatch.setattr(C, "_BASELINES", {})  # another process: the cache file answers
    second = A.analyse(trained[0], tmp_path / "b", methods=["code"])
    assert len(calls) == 1 and len(list((tmp_path / "cache" / C.BASELINE_DIR).glob("*.json"))) == 1
    assert first["quality"] == second["quality"]
    arrays = C.read_codes(trained[0])
    ref = L.quality_table(arrays["train_codes"], arrays["test_codes"], arrays["train_labels"], arrays["test_labels"],
                          *calls[0][:2])
    assert second["quality"] == ref


def test_cli_latent(trained, tmp_path, capsys):
    assert main(["latent", str(trained[0]), "--out", str(tmp_path / "o"), "--methods", "code", "-q"]) == 0
    out = capsys.readouterr().out
    assert "2-D code" in out and "raw pixels" in out and "PCA, same dims as the code" in out
    assert (tmp_path / "o" / "latent.json").is_file()


@pytest.mark.parametrize("args, msg", [
    (["latent", "{missing}"], "is not a directory"),
    (["latent", "{empty}"], "has no config.json"),
    (["latent", "{ae}", "--methods", "mds"], "unknown map 'mds'"),
    (["latent", "{ae}", "--methods", "code,pca", "--out", "{empty}/x", "--no-baselines"], None),
])
def test_cli_latent_bad_input_is_one_line(trained, tmp_path, capsys, args, msg):
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "nope", empty=tmp_path / "empty", ae=trained[0]) for a in args]
    code = main(args + ["-q"])
    err = capsys.readouterr().err
    if msg is None:
        assert code == 0
        return
    assert code == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_latent_refuses_an_unfinished_run(tmp_path, capsys):
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "config.json").write_text(json.dumps(make_cfg().to_dict()))
    assert main(["latent", str(rd), "-q"]) == 2
    assert "has not finished training" in capsys.readouterr().err
    assert not (rd / "latent").exists()  # nothing half-written


# -- the report -----------------------------------------------------------------------------------------
STUDY = """
title = "latent test"
[defaults]
data.dataset = "synthetic"
data.limit = 512
data.test_limit = 128
train.epochs = 2
train.batch_size = 64
[baselines.base]
model.encoder = ["16:relu"]
model.decoder = ["784:sigmoid"]
data.noise_factor = 0.2
[variants.more]
base = "base"
data.noise_factor = 0.5
[variants.most]
base = "base"
data.noise_factor = 0.8
[variants.collapsed]
base = "base"
model.activity_l1 = 1.0
[[questions]]
id = "1"
question = "More noise?"
baseline = "base"
variant = "more"
[[questions]]
id = "2"
question = "A huge penalty?"
baseline = "base"
variant = "collapsed"
"""


def test_study_report_shows_codes_side_by_side_a_curve_and_every_run(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(STUDY)
    run_study(load_study(str(spec)), tmp_path / "out", device="cpu", progress=False, workers=1, report=build_report)
    figs = {p.name for p in (tmp_path / "out" / "figures").iterdir()}
    assert {"q1-latent.png", "q2-latent.png", "q1-series.png", "q1-series-recon.png", "latent-all.png"} <= figs
    assert "q2-series.png" not in figs  # activity_l1: only two runs differ in it
    html = (tmp_path / "out" / "report.html").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    # the answer comes first, in words; the evidence (table, figures, numbers) after it
    sec = html.split('<h2 id="q1">')[1]
    assert sec.index("<h3>Answer</h3>") < sec.index('<p class="lead">') < sec.index("<h3>Evidence</h3>") \
        < sec.index("linear-probe accuracy (code)") < sec.index("Inside the code") < sec.index("<h3>Claims</h3>")
    assert "Over every value of <code>data.noise_factor</code> in this study (0.2, 0.5, 0.8)" in sec
    assert '<table id="overview">' in html and "linear probe" in html
    assert "### Answer" in md and "figures/q1-latent.png" in md and "### Every run" in md
    # the collapsed code is named for what it is
    q2 = html.split('<h2 id="q2">')[1]
    assert "tells the classes apart far less well" in q2 or "every image" in q2.lower()
