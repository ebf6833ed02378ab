"""Data sets as plug-ins: the registry, each kind trained end to end through the CLI, shapes taken
from the data, cache keys, exclude_labels, and one clear line for every kind of bad input.

All data is made here (PNG folders, CSV, .npz) or ships with scikit-learn (digits); Fashion-MNIST
and KMNIST are small IDX files whose SHA-256 sums are substituted into their source tables.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import aelab.data as aelab_data
from aelab.cli import main
from aelab.config import DataConfig, RunConfig
from aelab.data import (
    DATASETS,
    IDX_SETS,
    fit_config,
    load,
    register_source,
    sample_shape,
    sources,
    unregister_source,
)
from aelab.data.cache import DataCache, data_key
from aelab.data.idx import encode_idx
from aelab.errors import ConfigError, DataError


# -- makers -----------------------------------------------------------------------------------------
def make_png_folder(root: Path, size=(12, 12), per_class=6, classes=("circle", "square"), mode="L",
                    seed=0) -> Path:
    """Class sub-folders of small generated PNGs: a bright disc or a bright square on black."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cy, cx = rng.uniform(h * 0.35, h * 0.65), rng.uniform(w * 0.35, w * 0.65)
            r = rng.uniform(0.2, 0.3) * min(h, w)
            shape = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if c == 0 else \
                ((abs(yy - cy) <= r) & (abs(xx - cx) <= r))
            img = (shape * 255).astype(np.uint8)
            if mode == "RGB":
                img = np.stack([img, img // 2, 255 - img], axis=-1)
            Image.fromarray(img, mode=mode).save(root / name / f"{i:03d}.png")
    return root


def make_csv(path: Path, n=60, d=5, label=True, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, d))
    y = (x[:, 0] > 0.5).astype(int)
    cols = [f"f{j}" for j in range(d)] + (["kind"] if label else [])
    lines = [",".join(cols)]
    for i in range(n):
        vals = [f"{v:.5f}" for v in x[i]] + ([["low", "high"][y[i]]] if label else [])
        lines.append(",".join(vals))
    path.write_text("\n".join(lines) + "\n")
    return path


def last_line(capsys) -> str:
    out = capsys.readouterr()
    return (out.out + out.err).strip().splitlines()[-1]


def train(tmp_path, *args) -> int:
    return main(["train", "--epochs", "2", "--batch-size", "8", "-q", "--device", "cpu", *args])


# -- the registry -------------------------------------------------------------------------------------
def test_registered_names_and_their_shapes():
    assert list(DATASETS) == ["mnist", "fashion-mnist", "kmnist", "digits", "synthetic", "shapes"]
    assert sample_shape(DataConfig(dataset="digits")) == (1, 8, 8)
    assert sample_shape(DataConfig(dataset="fashion-mnist")) == (1, 28, 28)


def test_digits_loads_offline_with_a_seeded_stratified_split():
    ds = load(DataConfig(dataset="digits"))
    assert ds.sample_shape == (1, 8, 8) and ds.value_range == (0, 16)
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == 359  # round(1797 * 0.2)
    assert ds.x_train.max() == 16 and ds.x_train.dtype == np.uint8
    again = load(DataConfig(dataset="digits"))
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = load(DataConfig(dataset="digits", split_seed=1))
    assert not np.array_equal(ds.y_test, other.y_test)
    # stratified: every digit is in the test split in proportion (about 36 each)
    assert np.bincount(ds.y_test).min() >= 34


def test_fit_config_takes_the_input_shape_from_the_data_and_leaves_mnist_alone():
    mn = RunConfig()
    assert fit_config(mn) is mn  # MNIST with the default model: the same object, the same hash
    dg = fit_config(RunConfig().with_overrides({"data.dataset": "digits"}))
    assert dg.model.input_shape == (1, 8, 8)
    assert str(dg.model.decoder[-1]) == "64:sigmoid"
    deep = RunConfig().with_overrides({"data.dataset": "digits", "model.encoder": ["128:relu", "32:relu"],
                                       "model.decoder": ["128:relu", "784:relu"]})
    assert [str(l) for l in fit_config(deep).model.decoder] == ["128:relu", "64:relu"]


def test_a_conv_stack_that_cannot_take_the_data_is_one_clear_error(tmp_path):
    from aelab.presets import load_preset

    conv = load_preset("keras-blog-conv").with_overrides({"data.dataset": "digits"})
    with pytest.raises(ConfigError, match=r"does not fit data set digits \(samples of shape \[1, 8, 8\]\)"):
        fit_config(conv)
    table = make_csv(tmp_path / "t.csv", label=False)
    with pytest.raises(ConfigError, match="needs images, but data set .* holds vectors of 5 features"):
        fit_config(load_preset("keras-blog-conv").with_overrides({"data.dataset": str(table)}))


def test_a_conv_stack_follows_the_channels_of_an_rgb_folder(tmp_path):
    folder = make_png_folder(tmp_path / "rgb", size=(28, 28), mode="RGB", per_class=3)
    from aelab.presets import load_preset

    cfg = fit_config(load_preset("keras-blog-conv").with_overrides({"data.dataset": str(folder)}))
    assert cfg.model.input_shape == (3, 28, 28)
    assert cfg.model.decoder_output_shape() == (3, 28, 28)


# -- every kind, end to end through the CLI ------------------------------------------------------------------
def test_train_on_digits_through_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", "digits", "--out", str(out), "--epochs", "3", "--batch-size", "32") == 0
    line = last_line(capsys)
    assert "on digits (scikit-learn" in line
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [1, 8, 8] and cfg["model"]["decoder"] == ["64:sigmoid"]
    hist = json.loads((out / "history.json").read_text())
    assert hist["loss"][-1] < hist["loss"][0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "ssim" not in metrics and metrics["psnr"] > 0  # 8×8 is smaller than SSIM's window
    src = json.loads((out / "run.json").read_text())["data_source"]
    assert src["dataset"] == "digits" and len(src["sha256"]) == 64
    samples = np.load(out / "samples.npz")
    assert samples["original"].shape == (10, 64)


def test_train_on_an_image_folder_with_class_subfolders(tmp_path, capsys):
    folder = make_png_folder(tmp_path / "shapes")
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", str(folder), "--out", str(out), "--test-fraction", "0.25") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [1, 12, 12] and cfg["model"]["decoder"] == ["144:sigmoid"]
    assert cfg["data"]["test_fraction"] == 0.25
    ds = load(DataConfig(dataset=str(folder), test_fraction=0.25))
    assert ds.classes == ("circle", "square") and len(ds.x_test) == 3 and len(ds.x_train) == 9
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == [0] * 6 + [1] * 6
    src = json.loads((out / "run.json").read_text())["data_source"]
    assert src["kind"] == "images" and src["files"] == 12


def test_train_on_an_rgb_folder_resized_with_train_and_test_subfolders(tmp_path, capsys):
    make_png_folder(tmp_path / "rgb" / "train", size=(10, 14), mode="RGB", per_class=4)
    make_png_folder(tmp_path / "rgb" / "test", size=(20, 20), mode="RGB", per_class=2, seed=1)
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", str(tmp_path / "rgb"), "--image-size", "16", "--out", str(out)) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [3, 16, 16] and cfg["data"]["image_size"] == [16, 16]
    ds = load(DataConfig(dataset=str(tmp_path / "rgb"), image_size=16))
    assert len(ds.x_train) == 8 and len(ds.x_test) == 4  # the split as given
    gray = load(DataConfig(dataset=str(tmp_path / "rgb"), image_size=(16, 16), channels=1))
    assert gray.sample_shape == (1, 16, 16)


def test_train_on_a_csv_table_with_a_label_column(tmp_path, capsys):
    table = make_csv(tmp_path / "sensors.csv")
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", str(table), "--label-column", "kind", "--out", str(out), "--epochs", "5",
                 "--encoder", "3:relu") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["input_shape"] == [5] and cfg["model"]["decoder"] == ["5:sigmoid"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["feature_mse"]) == 5 and "ssim" not in metrics and "psnr" not in metrics
    ds = load(DataConfig(dataset=str(table), label_column="kind"))
    assert ds.classes == ("high", "low") and ds.sample_shape == (5,)
    assert (out / "recon.png").stat().st_size > 1000


def test_a_standard_scaled_table_needs_mse_and_trains_with_it(tmp_path, capsys):
    table = make_csv(tmp_path / "t.csv", label=False)
    rc = train(tmp_path, "--dataset", str(table), "--scaling", "standard", "--out", str(tmp_path / "bce"))
    assert rc == 2
    line = last_line(capsys)
    assert "needs inputs in [0, 1]" in line and "--loss mse" in line
    assert not (tmp_path / "bce").exists()
    out = tmp_path / "mse"
    assert train(tmp_path, "--dataset", str(table), "--scaling", "standard", "--loss", "mse", "--decoder", "5:linear",
                 "--out", str(out)) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist["loss"][-1] < hist["loss"][0]


def test_train_on_an_npz_with_its_own_test_split(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x[:30], y=np.arange(30) % 3, x_test=x[30:], y_test=np.arange(10) % 3)
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", str(tmp_path / "d.npz"), "--out", str(out)) == 0
    ds = load(DataConfig(dataset=str(tmp_path / "d.npz")))
    assert len(ds.x_train) == 30 and len(ds.x_test) == 10 and ds.y_test.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    np.testing.assert_array_equal(ds.x_test, x[30:])


def test_standard_scaling_is_sklearns_standard_scaler():
    from sklearn.preprocessing import StandardScaler

    from aelab.data import scale

    rng = np.random.default_rng(1)
    tr, te = rng.normal(3, 2, (50, 4)), rng.normal(3, 2, (20, 4))
    tr[:, 2] = 7.0  # a constant feature: std counts as 1
    a, b = scale(tr, te, method="standard", fit="train", unit_max=None)
    sk = StandardScaler().fit(tr)
    np.testing.assert_allclose(a, sk.transform(tr).astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b, sk.transform(te).astype(np.float32), rtol=1e-6, atol=1e-6)


# -- Fashion-MNIST and KMNIST: one source table each, tested with substituted hashes ---------------------------
@pytest.fixture
def fake_idx(monkeypatch, tmp_path):
    """Small IDX .gz files for both gz-pinned sets, their SHA-256 sums patched into the tables."""
    def forbidden(*a, **k):
        raise AssertionError("test tried to reach the network")

    monkeypatch.setattr(sources.urllib.request, "urlopen", forbidden)
    monkeypatch.setenv("AELAB_DATA_DIR", str(tmp_path / "cache" / "mnist"))
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(40) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8)}
    gz = {n: gzip.compress(encode_idx(a), mtime=0) for n, a in arrays.items()}
    for s in ("fashion-mnist", "kmnist"):
        for n, data in gz.items():
            monkeypatch.setitem(IDX_SETS[s].sha256, n, hashlib.sha256(data).hexdigest())
    src = tmp_path / "src"
    src.mkdir()
    for n, data in gz.items():
        (src / f"{n}.gz").write_bytes(data)
    return arrays, gz, src


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_gz_pinned_sets_come_from_their_mirror_verified_and_cached(fake_idx, monkeypatch, name):
    arrays, gz, _ = fake_idx
    calls = []

    def download(url, progress, desc):
        calls.append(url)
        return gz[url.rsplit("/", 1)[1][:-3]]

    monkeypatch.setattr(sources, "_download", download)
    ds = load(DataConfig(dataset=name))
    assert calls[0].startswith(IDX_SETS[name].mirrors[0])
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["train-images-idx3-ubyte"])
    assert ds.sample_shape == (1, 28, 28) and ds.provenance["dataset"] == name
    cache = sources.default_cache_dir(name)
    assert cache.name == name and sorted(p.name for p in cache.iterdir()) == sorted(
        [f"{n}.gz" for n in gz] + ["source.json"])
    calls.clear()
    load(DataConfig(dataset=name))  # from the verified cache now
    assert calls == []


def test_a_mirror_serving_another_file_is_refused(fake_idx, monkeypatch):
    _, gz, _ = fake_idx
    monkeypatch.setattr(sources, "_download", lambda url, p, desc: gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01x"))
    with pytest.raises(DataError, match=r"SHA-256 of train-images-idx3-ubyte.gz is .* \(not the original Fashion-MNIST"):
        load(DataConfig(dataset="fashion-mnist"))


def test_gz_pinned_local_copies_must_be_the_published_gz_files(fake_idx, tmp_path, capsys):
    arrays, gz, src = fake_idx
    out = tmp_path / "run"
    assert train(tmp_path, "--dataset", "kmnist", "--data-file", str(src), "--offline", "--out", str(out),
                 "--batch-size", "20") == 0
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train-images-idx3-ubyte").write_bytes(encode_idx(arrays["train-images-idx3-ubyte"]))
    with pytest.raises(DataError, match="pins the published .gz files"):
        sources.load_idx_set("kmnist", files=[raw / "train-images-idx3-ubyte"], offline=True)
    # offline with an empty cache: the one line names the set and the fix
    with pytest.raises(DataError, match=r"^Fashion-MNIST is not available .* mirrors \(skipped: offline\)"):
        sources.load_idx_set("fashion-mnist", data_dir=tmp_path / "empty", offline=True)


# -- caches and hashes key on the whole data config and the data's content -------------------------------------
def test_two_folders_never_share_cached_tensors_and_hash_differently(tmp_path):
    a = make_png_folder(tmp_path / "a", seed=0)
    b = make_png_folder(tmp_path / "b", seed=1)
    ca = fit_config(RunConfig().with_overrides({"data.dataset": str(a)}))
    cb = fit_config(RunConfig().with_overrides({"data.dataset": str(b)}))
    assert ca.hash() != cb.hash() and data_key(ca.data) != data_key(cb.data)
    cache = DataCache()
    import torch

    ta = cache.tensors(ca.data, torch.device("cpu"))[0]
    tb = cache.tensors(cb.data, torch.device("cpu"))[0]
    assert not torch.equal(ta, tb)
    # the same folder with one image changed is another data set too
    before = ca.hash()
    img = sorted((a / "circle").iterdir())[0]
    img.write_bytes((b / "square" / "000.png").read_bytes())
    assert fit_config(RunConfig().with_overrides({"data.dataset": str(a)})).hash() != before


def test_new_data_fields_keep_old_hashes_until_used():
    base = RunConfig()
    assert base.hash() == RunConfig().with_overrides({"data.test_fraction": 0.2}).hash()
    assert base.hash() != RunConfig().with_overrides({"data.exclude_labels": [3]}).hash()
    # every data field counts in the cache key, the per-run noise settings aside
    assert data_key(DataConfig(dataset="digits", split_seed=1)) != data_key(DataConfig(dataset="digits"))
    assert data_key(DataConfig(noise_factor=0.3)) == data_key(DataConfig())


# -- exclude_labels --------------------------------------------------------------------------------------------
def test_exclude_labels_leaves_a_class_out_of_training_but_not_out_of_the_test_split():
    import torch

    cfg = fit_config(RunConfig().with_overrides({"data.dataset": "digits", "data.exclude_labels": [3]}))
    cache = DataCache()
    cache.check(cfg)
    ytr, yte = cache.labels(cfg.data)
    assert 3 not in ytr.tolist() and 3 in yte.tolist()
    xtr, xte, _ = cache.tensors(cfg.data, torch.device("cpu"))
    assert len(xtr) == len(ytr) and len(xte) == len(yte)
    td = cache.train_data(cfg, torch.device("cpu"))
    assert td.x_val.shape[0] == int((yte != 3).sum())
    bad = fit_config(RunConfig().with_overrides({"data.dataset": "digits", "data.exclude_labels": [12]}))
    with pytest.raises(ConfigError, match="label 12 does not occur in digits"):
        cache.check(bad)


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------------------
def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    from PIL import Image

    empty = tmp_path / "empty"
    empty.mkdir()
    trunc = make_png_folder(tmp_path / "trunc", per_class=2)
    victim = trunc / "circle" / "000.png"
    victim.write_bytes(victim.read_bytes()[:60])
    mixed = make_png_folder(tmp_path / "mixed", per_class=2)
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(mixed / "square" / "big.png")
    text = tmp_path / "words.csv"
    text.write_text("a,b\n1,2\n3,oops\n")
    nan = tmp_path / "nan.csv"
    nan.write_text("a,b\n1,2\n3,nan\n")
    noheader = tmp_path / "noheader.csv"
    noheader.write_text("1,2\n3,4\n")
    np.savez(tmp_path / "nox.npz", data=np.zeros((4, 3)))
    good = make_csv(tmp_path / "good.csv", label=False)
    return [
        (["--dataset", str(empty)], f"{empty}: no images"),
        (["--dataset", str(trunc)], f"{victim}: not a readable image"),
        (["--dataset", str(mixed)], "images differ in size"),
        (["--dataset", str(text)], f"{text}: row 3, column 'b' holds 'oops', not a number"),
        (["--dataset", str(nan)], f"{nan}: row 3, column 'b' is nan"),
        (["--dataset", str(noheader)], "add a header row"),
        (["--dataset", str(good), "--label-column", "label"], "no column 'label' for --label-column"),
        (["--dataset", str(tmp_path / "nox.npz")], "has no array x (it holds data)"),
        (["--dataset", str(tmp_path / "nowhere")], "neither a registered name"),
        (["--dataset", "fasion-mnist"], "neither a registered name"),
        (["--dataset", "digits", "--test-fraction", "1.5"], "data.test_fraction"),
        (["--dataset", "digits", "--test-fraction", "0"], "data.test_fraction"),
        (["--dataset", "digits", "--image-size", "16"], "applies to the shapes set or a folder of images"),
        (["--dataset", str(good), "--image-size", "2x"], "data.image_size"),
    ]


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    for args, needle in _bad_inputs(tmp_path):
        out = tmp_path / "never"
        rc = train(tmp_path, *args, "--out", str(out))
        captured = capsys.readouterr()
        text = (captured.out + captured.err).strip()
        assert rc == 2, (args, text)
        assert len(text.splitlines()) == 1 and text.startswith("aelab: error: "), (args, text)
        assert needle in text, (args, text)
        assert not out.exists(), args


def test_the_real_cli_prints_no_traceback_for_a_broken_image(tmp_path):
    trunc = make_png_folder(tmp_path / "trunc", per_class=2)
    (trunc / "square" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    proc = subprocess.run([sys.executable, "-m", "aelab.cli", "train", "--dataset", str(trunc), "--out",
                           str(tmp_path / "never")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "001.png: not a readable image" in proc.stderr and not (tmp_path / "never").exists()


def test_figures_follow_the_shape_of_the_data():
    import io

    from PIL import Image

    from aelab.report.figures import feature_error_plot, infer_shape, recon_grid

    assert infer_shape(784) == (1, 28, 28) and infer_shape(64) == (1, 8, 8) and infer_shape(3072) == (3, 32, 32)
    assert infer_shape(10) == (10,)
    rgb = np.zeros((4, 3 * 16 * 16), np.float32)
    rgb[:, :256] = 1.0  # the red plane only: the grid must show red, not gray
    im = np.asarray(Image.open(io.BytesIO(recon_grid([("a", rgb)], shape=(3, 16, 16)))).convert("RGB")).astype(int)
    red = (im[..., 0] > 200) & (im[..., 1] < 60) & (im[..., 2] < 60)
    assert red.sum() > 100
    gray8 = recon_grid([("a", np.full((3, 64), 0.5, np.float32))], shape=(1, 8, 8))
    assert gray8.startswith(b"\x89PNG")
    bars = feature_error_plot([0.1, 0.2, 0.05], [("original", np.zeros((2, 3))), ("reconstruction", np.ones((2, 3)))])
    assert bars.startswith(b"\x89PNG")


# -- sources registered from code -----------------------------------------------------------------------------
def _blobs(cfg):
    """Two Gaussian blobs of 6 features in [0, 1], 40 + 12 samples, labelled by blob."""
    rng = np.random.default_rng(0)
    y = np.arange(52) % 2
    x = np.clip(0.3 + 0.4 * y[:, None] + 0.05 * rng.standard_normal((52, 6)), 0, 1).astype(np.float32)
    return x[:40], y[:40], x[40:], y[40:]


@pytest.fixture
def blobs():
    name = "blobs-test"
    src = register_source(name, _blobs, noun=("blob", "blobs"), classes=("low", "high"), value_range=(0.0, 1.0),
                          sample_shape=(6,))
    yield src
    unregister_source(name)


def test_a_source_registered_from_test_code_is_read_through_a_run_config(blobs):
    import torch

    cfg = aelab_data.with_overrides(RunConfig(), {"data.dataset": "blobs-test", "train.batch_size": 8,
                                                  "model.encoder": "4:relu", "model.decoder": "6:sigmoid"})
    assert cfg.model.input_shape == (6,) and cfg.data.source.kind == "plain"
    cache = DataCache()
    cache.check(cfg)
    ds = cache.dataset(cfg.data)
    assert ds.sample_shape == (6,) and len(ds.x_train) == 40 and ds.classes == ("low", "high")
    assert ds.noun == ("blob", "blobs") and ds.noun.count(1) == "1 blob"
    d = cache.train_data(cfg, torch.device("cpu"))
    assert tuple(d.x_train.shape) == (40, 6) and tuple(d.x_val.shape) == (12, 6)
    # the name round-trips through config.json and hashes like any registered set (no content fingerprint)
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hash() == cfg.hash()
    assert aelab_data.fingerprint(cfg.data) is None
    assert aelab_data.nouns(cfg) == ("blob", "blobs") and aelab_data.nouns("blobs-test").plural == "blobs"


def test_a_source_with_its_own_options_validates_them(blobs):
    from typing import Literal

    from aelab.data import SourceOptions

    class SpreadOptions(SourceOptions):
        kind: Literal["spread-test"] = "spread-test"
        spread: float = 0.05

    seen = []

    def read(cfg):
        seen.append(cfg.source.spread)
        return _blobs(cfg)

    register_source("spread-test", read, options=SpreadOptions)
    try:
        cfg = RunConfig().with_overrides({"data.dataset": "spread-test", "data.spread": 0.5})
        assert cfg.data.source == SpreadOptions(spread=0.5) and cfg.to_dict()["data"]["spread"] == 0.5
        load(cfg.data)
        assert seen == [0.5]
        with pytest.raises(ConfigError, match=r"^invalid config: data.spread: got 'x'"):
            RunConfig().with_overrides({"data.dataset": "spread-test", "data.spread": "x"})
        # another source's option, set, is refused in one line; left at its default it is dropped
        with pytest.raises(ConfigError, match=r"^invalid config: data.spread applies to the data source spread-test, "
                                              r"but data.dataset mnist is MNIST"):
            RunConfig().with_overrides({"data.spread": 0.5})
        assert RunConfig.from_dict({"data": {"dataset": "mnist", "spread": 0.05}}) == RunConfig()
    finally:
        unregister_source("spread-test")


def test_a_name_clash_is_refused_in_one_line(blobs):
    for name in ("blobs-test", "mnist"):
        with pytest.raises(ConfigError, match=rf"^data source '{name}' is already registered \(.*\); choose another name$"):
            register_source(name, _blobs)
    assert DATASETS["mnist"].noun == ("digit", "digits")  # the clash replaced nothing


def test_nouns_and_classes_come_from_the_source_without_reading_it(tmp_path):
    assert aelab_data.nouns("mnist") == ("digit", "digits")
    assert aelab_data.nouns(DataConfig(dataset="fashion-mnist")) == ("image", "images")
    assert aelab_data.nouns(RunConfig().with_overrides({"data.dataset": "digits"})).singular == "digit"
    assert aelab_data.nouns(str(tmp_path / "photos")) == ("image", "images")  # a folder, not read
    assert aelab_data.nouns(str(tmp_path / "t.csv")) == ("sample", "samples")
    assert aelab_data.classes("fashion-mnist")[0] == "T-shirt/top"
    assert load(DataConfig(dataset="digits")).noun == ("digit", "digits")


def test_a_fingerprint_is_hashed_once_per_content(tmp_path, monkeypatch):
    from aelab.config import config_hash
    from aelab.data import content

    folder = make_png_folder(tmp_path / "f")
    cfg = fit_config(RunConfig().with_overrides({"data.dataset": str(folder)}))
    fp = aelab_data.fingerprint(cfg.data)
    assert len(fp) == 64 and config_hash(cfg, fingerprint=fp) == cfg.hash()

    def no_reading(*a, **k):
        raise AssertionError("the content was read again")

    monkeypatch.setattr(content, "open", no_reading, raising=False)
    assert aelab_data.fingerprint(cfg.data) == fp and cfg.hash() == config_hash(cfg, fingerprint=fp)
    monkeypatch.undo()
    img = sorted((folder / "circle").iterdir())[0]
    img.write_bytes(img.read_bytes() + b"\0")  # one image changed: another data set
    assert aelab_data.fingerprint(cfg.data) != fp


def _shape_in_worker(opts, name):
    ds = DataCache(opts).dataset(DataConfig(dataset=name))
    return len(ds.x_train), tuple(ds.noun)


def test_an_added_source_travels_to_a_spawned_worker(blobs):
    """A spawned worker starts with the built-in sources; the data options an executor sends it take
    along the ones added from code (a registered function is pickled by reference, not as a closure)."""
    import multiprocessing as mp

    assert aelab_data.added_sources() == (blobs,)
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_shape_in_worker, (aelab_data.DataOptions(progress=False), "blobs-test"))
    assert got == (40, ("blob", "blobs"))
