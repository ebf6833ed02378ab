"""``AutoencoderOutlierDetector``: reconstruction-error outlier detection with PyOD's conventions.

PyOD's detectors (``pyod.models.base.BaseDetector``, its ``AutoEncoder`` among them) share one
interface, which this class follows so it drops into code written for them:

- ``contamination`` (default 0.1): the share of outliers expected in the training data; it sets
  ``threshold_``, the ``100·(1 − contamination)`` percentile of the training scores;
- ``fit(X)`` sets ``decision_scores_`` (the training samples' outlier scores), ``threshold_`` and
  ``labels_`` (0 inlier, 1 outlier: ``decision_scores_ > threshold_``);
- ``decision_function(X)``: the outlier score, **higher is more abnormal** (scikit-learn's own
  outlier detectors use the opposite sign and −1/+1 labels; PyOD's is kept here on purpose);
- ``predict(X)``: 0/1 against ``threshold_``; ``predict_proba(X, method="linear"|"unify")``:
  PyOD's two ways of turning scores into an outlier probability.

The score is the autoencoder's per-sample reconstruction error (the config's loss, mean over the
features), or for a VAE the negative ELBO: minus :meth:`AutoencoderTransformer.score_samples`.
The autoencoder is fitted on all of ``X`` (unsupervised, as PyOD's ``AutoEncoder``): it learns the
bulk of the data and reconstructs the rare, unlike samples worse.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError
from .estimators import AutoencoderBase


class AutoencoderOutlierDetector(AutoencoderBase):
    """Outlier detection by reconstruction error, with PyOD's interface.

    ``contamination``: the share of outliers in the training data, in (0, 0.5] (PyOD's range).
    The other parameters are :class:`~aelab.sklearn.AutoencoderTransformer`'s (the autoencoder's
    config; every one ``None`` by default: the preset's or aelab's).

    Fitted attributes: ``decision_scores_``, ``threshold_``, ``labels_`` and the transformer's
    (``config_``, ``model_``, ``scaler_``, ``history_``, …).
    """

    def __init__(self, contamination=0.1, family=None, hidden=None, code_size=None, activation=None, output=None,
                 activity_l1=None, beta=None, noise_factor=None, epochs=None, batch_size=None, loss=None, lr=None,
                 seed=None, scaling=None, preset=None, run_dir=None, device=None, modules=None):
        self.contamination = contamination
        self.family = family
        self.hidden = hidden
        self.code_size = code_size
        self.activation = activation
        self.output = output
        self.activity_l1 = activity_l1
        self.beta = beta
        self.noise_factor = noise_factor
        self.epochs = epochs
        self.batch_size = batch_size
        self.loss = loss
        self.lr = lr
        self.seed = seed
        self.scaling = scaling
        self.preset = preset
        self.run_dir = run_dir
        self.device = device
        self.modules = modules

    def fit(self, X, y=None) -> AutoencoderOutlierDetector:
        """Fit the autoencoder on ``X`` (``y`` is ignored: unsupervised), then score ``X`` and set
        ``decision_scores_``, ``threshold_`` and ``labels_``."""
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < c <= 0.5:
            raise ConfigError(f"contamination={c!r}: give the share of outliers in the training data, a number in "
                              "(0, 0.5] such as 0.1")
        self._fit(X)
        self.decision_scores_ = -self._score_samples(X)
        self.threshold_ = float(np.percentile(self.decision_scores_, 100.0 * (1.0 - c)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X) -> np.ndarray:
        """The outlier score of each sample of ``X``: higher is more abnormal (float64, ``(N,)``)."""
        return -self._score_samples(X)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's sign: higher is more normal (minus :meth:`decision_function`)."""
        return self._score_samples(X)

    def predict(self, X) -> np.ndarray:
        """0 (inlier) or 1 (outlier) per sample: whether its score exceeds ``threshold_``."""
        check_is_fitted(self, "threshold_")
        return (self.decision_function(X) > self.threshold_).astype(int)

    def predict_proba(self, X, method: str = "linear") -> np.ndarray:
        """``(N, 2)``: the probability of being an inlier, then an outlier, as PyOD computes it.

        ``"linear"``: the score min-max scaled by the training scores, clipped to [0, 1].
        ``"unify"``: Kriegel et al. 2011's unification, ``erf((s − mean) / (std·√2))`` of the
        training scores' mean and standard deviation, clipped to [0, 1].
        """
        check_is_fitted(self, "threshold_")
        s = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            lo, hi = float(train.min()), float(train.max())
            p = (s - lo) / (hi - lo if hi > lo else 1.0)
        elif method == "unify":
            std = float(train.std())
            p = erf((s - float(train.mean())) / ((std if std > 0 else 1.0) * np.sqrt(2.0)))
        else:
            raise ConfigError(f"method={method!r}: give 'linear' or 'unify'")
        p = np.clip(p, 0.0, 1.0)
        return np.column_stack([1.0 - p, p])


__all__ = ["AutoencoderOutlierDetector"]
