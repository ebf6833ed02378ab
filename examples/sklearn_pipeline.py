"""aelab's scikit-learn estimators, measured: the figures of the README's scikit-learn section.

1. A Pipeline (MinMaxScaler → AutoencoderTransformer → LogisticRegression) tuned by GridSearchCV over
   the code size on scikit-learn's digits; the best code size and its accuracy on a held-out test split.
2. AutoencoderOutlierDetector on a synthetic outlier set made as PyOD's ``generate_data`` makes it
   (inliers from one Gaussian, outliers uniform): ROC-AUC of ``decision_function`` on its test split.
3. The same detector on MNIST with a held-out class: fitted on the training images of the other nine
   digits, it scores the whole test split; the held-out digit's images are the outliers (ROC-AUC).

    python examples/sklearn_pipeline.py                      # all three (MNIST: 10 epochs, all images; ~30 min on 2 busy vCPUs)
    python examples/sklearn_pipeline.py --held-out 0 1 7 --mnist-epochs 5 --mnist-limit 20000
    python examples/sklearn_pipeline.py --skip-mnist         # digits and synthetic only (offline)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

import aelab
from aelab.sklearn import AutoencoderOutlierDetector, AutoencoderTransformer


def pipeline_on_digits(epochs: int) -> None:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    pipe = Pipeline([("scale", MinMaxScaler()), ("ae", AutoencoderTransformer(epochs=epochs, batch_size=32)),
                     ("clf", LogisticRegression(max_iter=1000))])
    t = time.perf_counter()
    search = GridSearchCV(pipe, {"ae__code_size": [2, 4, 8, 16, 32]}, cv=3).fit(xtr, ytr)
    wall = time.perf_counter() - t
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  code_size {params['ae__code_size']:>2}: cross-validated accuracy {score:.3f}")
    print(f"digits pipeline: best {search.best_params_}, test accuracy {search.score(xte, yte):.3f} "
          f"({len(xtr)} train / {len(xte)} test digits, {epochs} epochs, search {wall:.0f} s)")
    raw = LogisticRegression(max_iter=1000).fit(MinMaxScaler().fit_transform(xtr), ytr)
    print(f"  for reference, logistic regression on the 64 scaled pixels: {raw.score(MinMaxScaler().fit(xtr).transform(xte), yte):.3f}")


def pyod_style_data(n_train=1000, n_test=500, n_features=16, contamination=0.1, seed=42):
    """PyOD's ``generate_data`` recipe: inliers ``coef·N(0, 1) + offset``, outliers uniform on
    ``[−offset, offset]``; labels 1 for outliers."""
    rng = np.random.RandomState(seed)
    offset = rng.randint(low=10)
    coef = rng.random_sample() + 0.001

    def make(n):
        n_out = int(n * contamination)
        inl = coef * rng.randn(n - n_out, n_features) + offset
        out = rng.uniform(low=-offset, high=offset, size=(n_out, n_features))
        return np.r_[inl, out], np.r_[np.zeros(n - n_out), np.ones(n_out)]

    return (*make(n_train), *make(n_test))


def detector_on_synthetic() -> None:
    for seed in (0, 1, 42):
        xtr, ytr, xte, yte = pyod_style_data(seed=seed)
        det = AutoencoderOutlierDetector(hidden=(8,), code_size=2, output="linear", loss="mse", epochs=10,
                                         batch_size=32).fit(xtr)
        print(f"synthetic (PyOD generate_data style, seed {seed}): ROC-AUC train {roc_auc_score(ytr, det.decision_scores_):.3f}, "
              f"test {roc_auc_score(yte, det.decision_function(xte)):.3f}")


def detector_on_mnist(held_out: list[int], epochs: int, limit: int | None) -> None:
    ds = aelab.data.load(aelab.DataConfig(dataset="mnist"))
    x_train, y_train = ds.x_train / 255.0, ds.y_train  # the scaler a Pipeline would hold: pixels to [0, 1]
    x_test, y_test = ds.x_test / 255.0, ds.y_test
    for digit in held_out:
        keep = x_train[y_train != digit][:limit]
        t = time.perf_counter()
        det = AutoencoderOutlierDetector(epochs=epochs, batch_size=256).fit(keep)  # Keras blog: 784 → 32 → 784
        scores = det.decision_function(x_test)
        auc = roc_auc_score(y_test == digit, scores)
        print(f"MNIST, digit {digit} held out: ROC-AUC {auc:.3f} (fitted on {len(keep)} images of the other nine "
              f"digits, {epochs} epochs, {time.perf_counter() - t:.0f} s; {int((y_test == digit).sum())} outliers "
              f"among {len(y_test)} test images)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digits-epochs", type=int, default=20)
    p.add_argument("--held-out", type=int, nargs="+", default=[0, 1, 7])
    p.add_argument("--mnist-epochs", type=int, default=10)
    p.add_argument("--mnist-limit", type=int, default=None, help="training images of the nine digits (default: all)")
    p.add_argument("--skip-mnist", action="store_true")
    a = p.parse_args()
    pipeline_on_digits(a.digits_epochs)
    detector_on_synthetic()
    if not a.skip_mnist:
        detector_on_mnist(a.held_out, a.mnist_epochs, a.mnist_limit)


if __name__ == "__main__":
    main()
