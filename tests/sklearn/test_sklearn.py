"""The scikit-learn estimators: what fit/transform give, inside a Pipeline and a GridSearchCV, the
outlier detector's ROC-AUC, and one-line errors for what cannot be used.

Data: scikit-learn's digits (1,797 8×8 images) and a PyOD-style synthetic outlier set; few epochs.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from aelab.errors import ConfigError
from aelab.sklearn import AutoencoderOutlierDetector, AutoencoderTransformer, InputError


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data, d.target, d.images


@pytest.fixture(scope="module")
def fitted(digits):
    """A plain autoencoder fitted on digits scaled to [0, 1] (the Pipeline's way)."""
    x = digits[0] / 16.0
    return AutoencoderTransformer(code_size=8, epochs=3).fit(x), x


def pyod_style_data(n_train=600, n_test=300, n_features=16, contamination=0.1, seed=42):
    """PyOD's ``generate_data`` recipe: inliers ``coef·N(0, 1) + offset`` (one Gaussian blob), outliers
    uniform on ``[−offset, offset]`` per feature; labels 1 for outliers."""
    rng = np.random.RandomState(seed)
    offset = rng.randint(low=10)
    coef = rng.random_sample() + 0.001

    def make(n):
        n_out = int(n * contamination)
        inl = coef * rng.randn(n - n_out, n_features) + offset
        out = rng.uniform(low=-offset, high=offset, size=(n_out, n_features))
        return np.r_[inl, out], np.r_[np.zeros(n - n_out), np.ones(n_out)]

    return (*make(n_train), *make(n_test))


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text, text
    return text


# -- fit / transform ---------------------------------------------------------------------------------
def test_fit_transform_shapes_dtypes_and_score(fitted):
    est, x = fitted
    z = est.transform(x)
    assert z.shape == (len(x), 8) and z.dtype == np.float32 and est.n_components_ == 8
    assert est.n_features_in_ == 64 and est.input_shape_ == (64,)
    back = est.inverse_transform(z[:5])
    assert back.shape == (5, 64) and back.dtype == np.float32
    assert back.min() >= 0.0 and back.max() <= 1.0  # a sigmoid output on [0, 1] data, no scaling of its own
    assert est.scaling_ == "unit" and est.run_dir_ is None
    # the score is minus the run's own loss: the fit validated on X itself, with the same BCE
    assert est.score(x) == pytest.approx(-est.history_["val_loss"][-1], rel=1e-5)
    assert est.loss_curve_[-1] < est.loss_curve_[0]  # it learnt
    s = est.score_samples(x[:10])
    assert s.shape == (10,) and np.all(s < 0)
    names = est.get_feature_names_out()
    assert list(names[:2]) == ["autoencodertransformer0", "autoencodertransformer1"]
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(x[:20]), z[:20])


def test_images_in_their_own_shape_and_aelab_scaling(digits):
    """(N, H, W) images go in as they are; raw 0..16 values under a sigmoid model get aelab's
    minmax rule, inverted on the way out, so decodings come back in 0..16."""
    images = digits[2]
    est = AutoencoderTransformer(code_size=8, epochs=2).fit(images)
    assert est.input_shape_ == (8, 8) and est.config_.model.input_shape == (1, 8, 8)
    assert est.scaling_ == "minmax"
    z = est.transform(images)
    np.testing.assert_array_equal(est.transform(images.reshape(-1, 64)), z)  # flat works too
    np.testing.assert_array_equal(est.transform(images[:, None]), z)        # and (N, 1, H, W)
    back = est.inverse_transform(z[:4])
    assert back.shape == (4, 8, 8) and back.max() > 1.5 and back.max() <= 16.0 + 1e-4


def test_vae_codes_are_the_posterior_mean_and_scores_the_elbo(digits):
    x = digits[0][:400] / 16.0
    est = AutoencoderTransformer(family="vae", hidden=(32,), code_size=3, epochs=2).fit(x)
    z = est.transform(x)
    np.testing.assert_array_equal(z, est.transform(x))  # nothing sampled
    with torch.no_grad():
        mu, logvar = est.model_.encoder.distribution(torch.from_numpy(x[:2].astype(np.float32)))
        recon = est.model_.decoder(mu)  # the decoding of μ
        p = recon.double().clamp(1e-7, 1 - 1e-7)
        t = torch.from_numpy(x[:2])
        rec = -(t * p.log() + (1 - t) * (1 - p).log()).sum(dim=1)  # BCE summed over the pixels, in nats
        kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).double().sum(dim=1)
    np.testing.assert_allclose(z[:2], mu.numpy(), rtol=1e-5, atol=1e-6)  # another batch: last bits differ
    np.testing.assert_allclose(est.score_samples(x[:2]), -(rec + kl).numpy(), rtol=1e-4)


def test_kept_run_directory_is_reused(tmp_path, digits):
    x = digits[0][:300] / 16.0
    a = AutoencoderTransformer(code_size=4, epochs=2, run_dir=tmp_path).fit(x)
    assert a.run_dir_.parent == tmp_path and (a.run_dir_ / "DONE").is_file() and (a.run_dir_ / "recon.png").is_file()
    assert a.run_dir_.name == a.config_hash_ == json.loads((a.run_dir_ / "run.json").read_text())["config_hash"]
    mtime = (a.run_dir_ / "weights.safetensors").stat().st_mtime_ns
    b = AutoencoderTransformer(code_size=4, epochs=2, run_dir=tmp_path).fit(x)  # the finished run, reused
    assert b.run_dir_ == a.run_dir_ and (b.run_dir_ / "weights.safetensors").stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    c = AutoencoderTransformer(code_size=4, epochs=2, run_dir=tmp_path).fit(x[:200])  # other data: another run
    assert c.run_dir_ != a.run_dir_


class _Enc(torch.nn.Module):
    """A user's own convolutional encoder of 8×8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def _forget_custom_families():
    yield
    from aelab.models import FAMILIES, custom

    for name in custom.CUSTOM_FAMILIES:  # the shipped registry lists what builds from a config alone
        FAMILIES.pop(name, None)


def test_your_own_modules(digits, _forget_custom_families):
    """modules=(encoder, decoder): the custom family under aelab's objective, inside the estimator."""
    images = digits[2][:300] / 16.0
    torch.manual_seed(0)
    enc, dec = _Enc(), torch.nn.Linear(6, 64)
    est = AutoencoderTransformer(modules=(enc, dec), output="logits", epochs=3, batch_size=32).fit(images)
    assert est.config_.model.family == "custom" and est.config_.model.encoder_class.endswith("_Enc")
    z = est.transform(images)
    assert z.shape == (300, 6) and est.inverse_transform(z[:2]).shape == (2, 8, 8)
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.score(images) == pytest.approx(-est.history_["val_loss"][-1], rel=1e-5)
    with pytest.raises(ConfigError, match="code_size builds aelab's own layers"):
        AutoencoderTransformer(modules=(enc, dec), code_size=4).fit(images)


# -- Pipeline and GridSearchCV ------------------------------------------------------------------------
def test_pipeline_in_grid_search(digits):
    x, y, _ = digits
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    pipe = Pipeline([("scale", MinMaxScaler()), ("ae", AutoencoderTransformer(epochs=10, batch_size=32)),
                     ("clf", LogisticRegression(max_iter=500))])
    search = GridSearchCV(pipe, {"ae__code_size": [2, 16]}, cv=2).fit(xtr, ytr)
    scores = dict(zip([p["ae__code_size"] for p in search.cv_results_["params"]], search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"ae__code_size": 16}  # 16 numbers keep far more of a digit than 2
    assert scores[16] > scores[2] + 0.1
    test = search.score(xte, yte)
    assert 0.8 <= test <= 1.0, test  # ten classes: chance is 0.1
    assert search.best_estimator_.named_steps["ae"].transform(MinMaxScaler().fit(xtr).transform(xte)).shape[1] == 16


# -- the outlier detector ------------------------------------------------------------------------------
def test_outlier_detector_pyod_style_roc_auc():
    xtr, ytr, xte, yte = pyod_style_data()
    det = AutoencoderOutlierDetector(contamination=0.1, hidden=(8,), code_size=2, output="linear", loss="mse",
                                     epochs=10, batch_size=32).fit(xtr)
    assert det.decision_scores_.shape == (len(xtr),) and det.labels_.shape == (len(xtr),)
    assert set(np.unique(det.labels_)) <= {0, 1} and det.labels_.mean() == pytest.approx(0.1, abs=0.01)
    assert det.threshold_ == pytest.approx(np.percentile(det.decision_scores_, 90))
    train_auc = roc_auc_score(ytr, det.decision_scores_)
    scores = det.decision_function(xte)
    test_auc = roc_auc_score(yte, scores)
    assert train_auc >= 0.8 and test_auc >= 0.8, (train_auc, test_auc)  # PyOD's own floor
    pred = det.predict(xte)
    np.testing.assert_array_equal(pred, (scores > det.threshold_).astype(int))
    proba = det.predict_proba(xte)
    assert proba.shape == (len(xte), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    assert roc_auc_score(yte, det.predict_proba(xte, method="unify")[:, 1]) >= 0.8


# -- errors: one line each ----------------------------------------------------------------------------
def test_bad_input_is_one_line(fitted):
    est, x = fitted
    bad = x[:20].copy()
    bad[3, 5] = np.nan
    with pytest.raises(InputError, match="NaN or infinite value at sample 3, feature 5") as e:
        AutoencoderTransformer(epochs=1).fit(bad)
    one_line(e.value)
    with pytest.raises(ValueError, match="NaN"):  # a ValueError, as scikit-learn's checks ask
        est.transform(bad)
    with pytest.raises(ValueError, match="X has 10 features, but AutoencoderTransformer is expecting 64") as e:
        est.transform(x[:, :10])
    one_line(e.value)
    with pytest.raises(InputError, match=r"samples of shape \(9, 9\).*fitted on samples of shape \(64,\)") as e:
        est.transform(np.zeros((2, 9, 9)))
    one_line(e.value)
    with pytest.raises(InputError, match="Z has 3 values per code") as e:
        est.inverse_transform(np.zeros((2, 3)))
    one_line(e.value)
    with pytest.raises(NotFittedError) as e:
        AutoencoderTransformer().transform(x)
    one_line(e.value)
    with pytest.raises(InputError, match="X has 1 sample"):
        AutoencoderTransformer(epochs=1).fit(x[:1])


def test_bad_parameters_are_one_line(fitted):
    _, x = fitted
    cases = [(dict(family="nope"), "family='nope': unknown family"),
             (dict(hidden=(0,)), "hidden=\\(0,\\): give the hidden layers' sizes"),
             (dict(beta=2.0), "beta=2.0: family 'ae' has no such setting"),
             (dict(family="vae", hidden=()), "family 'vae' needs at least one hidden layer"),
             (dict(preset="nope"), "unknown preset 'nope'"),
             (dict(lr=-1.0), "train.lr")]
    for params, msg in cases:
        with pytest.raises(ConfigError, match=msg) as e:
            AutoencoderTransformer(epochs=1, **params).fit(x[:20])
        one_line(e.value)
    with pytest.raises(ConfigError, match="contamination=0.7"):
        AutoencoderOutlierDetector(contamination=0.7).fit(x[:20])


# -- display and imports --------------------------------------------------------------------------------
def test_html_display_shows_the_parameters_given():
    html = AutoencoderTransformer(code_size=8, preset="keras-blog-sparse")._repr_html_()
    assert "AutoencoderTransformer" in html and "keras-blog-sparse" in html and "code_size" in html
    pipe_html = Pipeline([("scale", MinMaxScaler()), ("ae", AutoencoderTransformer(code_size=8))])._repr_html_()
    assert "MinMaxScaler" in pipe_html and "AutoencoderTransformer" in pipe_html


def test_import_aelab_imports_no_sklearn():
    """Neither ``import aelab`` nor its data layer (whose digits source defers scikit-learn) loads it."""
    code = ("import sys, aelab, aelab.data; "
            "assert not [m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')], 'sklearn imported'; "
            "assert 'aelab.sklearn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
