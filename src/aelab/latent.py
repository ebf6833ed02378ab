"""Latent-space tools: what an autoencoder's code holds, computed from arrays alone.

What belongs here: functions of codes, labels and images as NumPy arrays — no model files, no
data sets, no drawing, no I/O (:mod:`aelab.runs.codes` reads and writes run directories and calls
these; :mod:`aelab.plots.latent` draws). Shapes: ``codes`` are ``(N, K)`` float arrays
(flattened codes; μ for a VAE), ``labels`` ``(N,)`` integer class labels, images ``(N, D)``.

- **2-D maps** (:func:`embed_2d`): the code itself when it has two dimensions, otherwise PCA,
  t-SNE (scikit-learn) or UMAP (``umap-learn``, optional).
- **How good is the code, in numbers** (:func:`code_quality`, :func:`quality_table`):
  linear-probe accuracy (a logistic regression trained on training codes, tested on test codes),
  k-NN accuracy, and the agreement of a k-means clustering with the labels (ARI, NMI) — for the
  code, and the same measures on the raw inputs (an image's pixels, a table's features:
  :func:`input_noun`) and on PCA with as many dimensions as the code (the baseline any claim
  about "useful features" needs; :func:`input_baselines`, numbers of the data alone).

scikit-learn is imported where it is used (it takes about two seconds to import, and most callers
of this module never fit anything). The measures run scikit-learn on one thread
(:func:`_measuring`): their problems are small (thousands of points, tens to hundreds of values),
where a second thread costs more than it gives (and on a loaded machine, with PyTorch's and
OpenBLAS's threads still spinning, many times more), and their numbers then do not depend on how
many cores the machine has.
- **Walking the code space**: :func:`lerp` / :func:`slerp` interpolation, :func:`traversal` of
  single dimensions, :func:`manifold_grid` (a 2-D latent decoded on a grid, as keras.io's VAE
  does), :func:`prior_samples` for a VAE.
- **Anomaly detection** (:func:`anomaly_scores`): ROC-AUC of the reconstruction error of held-out
  classes against the rest.
- **Discrete codes** (a VQ-VAE's codebook indices, ``Family.code == "discrete"``): an index is a
  name, not a position — indices 3 and 4 are no nearer than 3 and 40 — so nothing is interpolated
  between them, and what one looks at is how often each codebook entry is used
  (:func:`code_usage`); measures that need distances see them one-hot (:func:`one_hot`).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "subsample", "embed_2d", "map_methods", "have_umap", "linear_probe", "knn_accuracy", "cluster_agreement",
    "pca_features", "code_quality", "quality_table", "lerp", "slerp", "interpolate", "traversal_values",
    "traversal", "manifold_grid", "prior_samples", "reconstruction_errors", "anomaly_scores", "active_dims",
    "input_noun", "input_baselines", "code_usage", "one_hot",
]

#: k of the k-NN classifier (scikit-learn's default).
KNN_K = 5
#: k-means runs on at most this many codes
CLUSTER_POINTS = 2000
#: a code dimension whose variance over the test set is at most this carries nothing (Burda et al.
#: 2016 use 0.01 for a VAE's μ; the same threshold reads any code)
ACTIVE_VARIANCE = 0.01


def input_noun(sample_shape: Sequence[int]) -> str:
    """What a sample's raw values are called, from its shape: ``"pixels"`` for an image
    ``(C, H, W)``, ``"features"`` for a vector ``(D,)`` (a table's row). Wording follows the data,
    never a data set's name."""
    return "pixels" if len(tuple(sample_shape)) == 3 else "features"


def _flat(codes: Any) -> np.ndarray:
    a = np.asarray(codes, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    return a


@contextlib.contextmanager
def _quiet():
    """scikit-learn's convergence and degenerate-data warnings: a collapsed code is a finding, not an error."""
    from sklearn.exceptions import ConvergenceWarning  # deferred: scikit-learn takes seconds to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*distinct clusters.*")
        yield


_MEASURING = [0]  # how deep inside _measuring this process is (the pools are the process's)


@contextlib.contextmanager
def _measuring():
    """:func:`_quiet`, with every thread pool (OpenMP, BLAS) at one thread: see the module's docstring.
    Nested inside another, only :func:`_quiet` (the pools are already set)."""
    if _MEASURING[0]:
        with _quiet():
            yield
        return
    from threadpoolctl import threadpool_limits  # deferred: scikit-learn's dependency, loaded with it

    with threadpool_limits(limits=1), _quiet():
        _MEASURING[0] += 1
        try:
            yield
        finally:
            _MEASURING[0] -= 1


def subsample(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, k)`` of ``range(n)``, drawn without replacement from ``seed``
    (all of them, in order, when ``k`` is None or ``k >= n``)."""
    if k is None or k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(k), replace=False))


# -- 2-D maps --------------------------------------------------------------------------------------
def have_umap() -> bool:
    try:
        import umap  # noqa: F401  # deferred: optional, and slow to import
    except Exception:  # noqa: BLE001 - not installed, or broken: either way not usable
        return False
    return True


def map_methods(dims: int, umap: bool | None = None) -> list[str]:
    """The 2-D views of a ``dims``-dimensional code: ``["code"]`` for 2 (or 1) dimensions, else
    ``["pca", "tsne"]`` and ``"umap"`` when umap-learn is installed."""
    if dims <= 2:
        return ["code"]
    out = ["pca", "tsne"]
    if have_umap() if umap is None else umap:
        out.append("umap")
    return out


def embed_2d(codes: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(N, K)`` codes → ``(N, 2)`` points.

    ``method``: ``"code"`` (the code itself; a 1-D code gets y = 0), ``"pca"``, ``"tsne"`` (init
    from PCA, perplexity ≤ 30 and below N/3) or ``"umap"``. A code that does not vary (every
    image gets the same code) maps to the origin: there is nothing to lay out.
    """
    z = _flat(codes)
    n, k = z.shape
    out = np.zeros((n, 2))
    if method == "code":
        if k > 2:
            raise ValueError(f"method 'code' needs a code of at most 2 dimensions, got {k}")
        out[:, :k] = z
        return out
    if n < 3 or float(z.var(axis=0).sum()) <= 1e-12:
        return out
    with _quiet():
        if method == "pca":
            from sklearn.decomposition import PCA  # deferred: scikit-learn takes seconds to import

            p = PCA(n_components=min(2, k, n), random_state=seed).fit_transform(z)
            out[:, :p.shape[1]] = p
        elif method == "tsne":
            from sklearn.manifold import TSNE  # deferred: scikit-learn takes seconds to import

            perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
            out = TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity,
                       random_state=seed).fit_transform(z)
        elif method == "umap":
            if not have_umap():
                raise ValueError("method 'umap' needs umap-learn; install it with pip install 'aelab[umap]'")
            import umap  # deferred: optional (aelab[umap]), and slow to import

            out = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(z)
        else:
            raise ValueError(f"unknown 2-D map method {method!r}; use code, pca, tsne or umap")
    return np.asarray(out, dtype=np.float64)


# -- how good is the code ----------------------------------------------------------------------------
def _classes(*labels: np.ndarray) -> int:
    return len(np.unique(np.concatenate([np.asarray(y).ravel() for y in labels])))


def linear_probe(train_codes: Any, train_labels: Any, test_codes: Any, test_labels: Any, seed: int = 0) -> float:
    """Accuracy on the test codes of a logistic regression trained on the training codes.

    The codes are standardised first (fitted on the training codes), so the probe reads what the
    code separates, not how large its numbers are. A training set with one class predicts it.
    """
    from sklearn.linear_model import LogisticRegression  # deferred: scikit-learn takes seconds to import
    from sklearn.pipeline import make_pipeline  # deferred: scikit-learn takes seconds to import
    from sklearn.preprocessing import StandardScaler  # deferred: scikit-learn takes seconds to import

    xtr, xte = _flat(train_codes), _flat(test_codes)
    ytr, yte = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0]))
    with _measuring():
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200, random_state=seed))
        clf.fit(xtr, ytr)
        return float(clf.score(xte, yte))


def knn_accuracy(train_codes: Any, train_labels: Any, test_codes: Any, test_labels: Any, k: int = KNN_K) -> float:
    """Accuracy on the test codes of a k-nearest-neighbour vote among the training codes (Euclidean)."""
    from sklearn.neighbors import KNeighborsClassifier  # deferred: scikit-learn takes seconds to import

    xtr = _flat(train_codes)
    ytr = np.asarray(train_labels).ravel()
    with _measuring():
        clf = KNeighborsClassifier(n_neighbors=max(1, min(k, len(xtr))))
        clf.fit(xtr, ytr)
        return float(clf.score(_flat(test_codes), np.asarray(test_labels).ravel()))


def cluster_agreement(codes: Any, labels: Any, n_clusters: int | None = None, seed: int = 0) -> dict[str, float]:
    """k-means on the codes (as many clusters as classes), compared with the labels; on at most
    :data:`CLUSTER_POINTS` of them (a seeded subsample).

    Returns ``{"ari", "nmi"}``: the adjusted Rand index (0 = chance, 1 = the same partition) and
    the normalised mutual information (0 = independent, 1 = the same partition).
    """
    # deferred: scikit-learn takes seconds to import
    from sklearn.cluster import KMeans
    # deferred: scikit-learn takes seconds to import
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    z = _flat(codes)
    y = np.asarray(labels).ravel()
    if len(z) > CLUSTER_POINTS:  # k-means' cost grows with N; a seeded subsample keeps it under a second
        keep = subsample(len(z), CLUSTER_POINTS, seed)
        z, y = z[keep], y[keep]
    k = int(n_clusters or _classes(y))
    if len(np.unique(z, axis=0)) < 2 or k < 2:
        pred = np.zeros(len(y), dtype=int)
    else:
        with _measuring():
            pred = KMeans(n_clusters=min(k, len(z)), n_init=2, random_state=seed).fit_predict(z)
    return {"ari": float(adjusted_rand_score(y, pred)), "nmi": float(normalized_mutual_info_score(y, pred))}


def pca_features(train_x: Any, test_x: Any, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """PCA fitted on ``train_x`` with ``dims`` components (at most the data allows), applied to both."""
    from sklearn.decomposition import PCA  # deferred: scikit-learn takes seconds to import

    xtr, xte = _flat(train_x), _flat(test_x)
    d = max(1, min(int(dims), xtr.shape[1], xtr.shape[0]))
    with _measuring():
        p = PCA(n_components=d, random_state=seed).fit(xtr)
        return p.transform(xtr), p.transform(xte)


def code_quality(train_codes: Any, train_labels: Any, test_codes: Any, test_labels: Any, seed: int = 0) -> dict:
    """Linear probe, k-NN, k-means ARI/NMI of one set of features.

    Returns ``{"probe_accuracy", "knn_accuracy", "ari", "nmi", "dims", "n_train", "n_test",
    "classes", "chance"}``; ``chance`` is the accuracy of always guessing the most frequent
    training class on the test set. ARI/NMI are computed on the test codes.
    """
    xtr, xte = _flat(train_codes), _flat(test_codes)
    ytr, yte = np.asarray(train_labels).ravel(), np.asarray(test_labels).ravel()
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"codes and labels differ in length: {len(xtr)}/{len(ytr)} train, {len(xte)}/{len(yte)} test")
    if len(xtr) == 0 or len(xte) == 0:
        raise ValueError("code_quality needs at least one training and one test code")
    values, counts = np.unique(ytr, return_counts=True)
    with _measuring():
        out = {
            "probe_accuracy": linear_probe(xtr, ytr, xte, yte, seed),
            "knn_accuracy": knn_accuracy(xtr, ytr, xte, yte),
            **cluster_agreement(xte, yte, seed=seed),
            "dims": int(xtr.shape[1]), "n_train": int(len(xtr)), "n_test": int(len(xte)),
            "classes": int(_classes(ytr, yte)), "chance": float(np.mean(yte == values[np.argmax(counts)])),
        }
    return out


def quality_table(train_codes: Any, test_codes: Any, train_labels: Any, test_labels: Any,
                  train_x: Any | None = None, test_x: Any | None = None, seed: int = 0) -> dict[str, dict]:
    """:func:`code_quality` of the code, and (given the inputs) of the raw inputs — pixels or a
    table's features; the key is ``"pixels"`` either way — and of PCA with as many dimensions as
    the code: ``{"code": {...}, "pixels": {...}, "pca": {...}}``."""
    out = {"code": code_quality(train_codes, train_labels, test_codes, test_labels, seed)}
    if train_x is not None and test_x is not None:
        out.update(input_baselines(train_x, test_x, train_labels, test_labels, _flat(train_codes).shape[1], seed))
    return out


def input_baselines(train_x: Any, test_x: Any, train_labels: Any, test_labels: Any, dims: int,
                    seed: int = 0) -> dict[str, dict]:
    """The rows of :func:`quality_table` that depend on the data alone, not on any model:
    :func:`code_quality` of the raw inputs (``"pixels"``) and of PCA with ``dims`` dimensions
    (``"pca"``). (:func:`aelab.runs.codes.input_baselines` computes them once per data set.)"""
    with _measuring():
        ptr, pte = pca_features(train_x, test_x, dims, seed)
        return {"pixels": code_quality(train_x, train_labels, test_x, test_labels, seed),
                "pca": code_quality(ptr, train_labels, pte, test_labels, seed)}


def active_dims(codes: Any, threshold: float = ACTIVE_VARIANCE, relative: bool = False) -> int:
    """How many code dimensions vary over the images by more than ``threshold`` (variance).

    ``relative=False``: an absolute variance, for a VAE's μ, whose prior fixes the scale (Burda et
    al. 2016). ``relative=True``: a fraction of the most variable dimension's variance, for a
    deterministic code, whose scale is whatever training made it (a sigmoid code varies far less
    than a relu one, yet uses its dimensions). A code that does not vary has none either way."""
    var = _flat(codes).var(axis=0)
    if relative:
        top = float(var.max()) if var.size else 0.0
        return 0 if top <= 1e-12 else int((var > threshold * top).sum())
    return int((var > threshold).sum())


# -- walking the code space --------------------------------------------------------------------------
def lerp(z0: Any, z1: Any, steps: int) -> np.ndarray:
    """``steps`` points on the straight line from ``z0`` to ``z1`` (both ends included): ``(steps, K)``."""
    a, b = np.asarray(z0, dtype=np.float64).ravel(), np.asarray(z1, dtype=np.float64).ravel()
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    return (1 - t) * a + t * b


def slerp(z0: Any, z1: Any, steps: int) -> np.ndarray:
    """Spherical interpolation (Shoemake 1985; White 2016 for generative models) from ``z0`` to ``z1``:
    ``sin((1−t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1`` with Ω the angle between them. Under a Gaussian
    prior most mass lies near a sphere, and the straight line between two codes passes through
    the unlikely region near the origin; this path keeps to the sphere's shell. Falls back to
    :func:`lerp` for (anti)parallel or zero vectors."""
    a, b = np.asarray(z0, dtype=np.float64).ravel(), np.asarray(z1, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return lerp(a, b, steps)
    cos = float(np.clip(np.dot(a / na, b / nb), -1.0, 1.0))
    omega = math.acos(cos)
    if math.sin(omega) < 1e-6:
        return lerp(a, b, steps)
    t = np.linspace(0.0, 1.0, int(steps))[:, None]
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / math.sin(omega)


def interpolate(z0: Any, z1: Any, steps: int, spherical: bool = False) -> np.ndarray:
    return slerp(z0, z1, steps) if spherical else lerp(z0, z1, steps)


def traversal_values(codes: Any, dim: int, steps: int, prior: bool = False) -> np.ndarray:
    """The values a traversal of code dimension ``dim`` visits: ``steps`` evenly spaced numbers over
    ±2.5 (a unit Gaussian prior, ``prior=True``) or over the 2nd–98th percentile of that
    dimension in ``codes`` (a deterministic code, whose range is whatever training made it)."""
    if prior:
        return np.linspace(-2.5, 2.5, int(steps))
    col = _flat(codes)[:, dim]
    lo, hi = np.percentile(col, [2, 98])
    if hi <= lo:
        hi = lo + 1e-6
    return np.linspace(lo, hi, int(steps))


def traversal(z: Any, dim: int, values: Iterable[float]) -> np.ndarray:
    """Copies of code ``z`` with dimension ``dim`` set to each of ``values``: ``(len(values), K)``."""
    base = np.asarray(z, dtype=np.float64).ravel()
    vals = np.asarray(list(values), dtype=np.float64)
    out = np.repeat(base[None, :], len(vals), axis=0)
    out[:, dim] = vals
    return out


def manifold_grid(n: int, prior: bool = True, lo: Sequence[float] = (-1.0, -1.0),
                  hi: Sequence[float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of an ``n × n`` grid over a 2-D latent, in reading order (rows top to bottom).

    ``prior``: the grid is placed at the Gaussian quantiles 5 % … 95 % in each dimension, as the
    Keras blog's VAE does (equal prior mass between neighbours); otherwise evenly from ``lo`` to
    ``hi`` (a deterministic code's range). Returns ``(points (n·n, 2), xs (n,), ys (n,))``; row
    ``i`` has ``z₂ = ys[i]`` (``ys`` decreasing, so up is larger), column ``j`` has ``z₁ = xs[j]``.
    """
    n = int(n)
    if prior:
        nd = statistics.NormalDist()
        q = [nd.inv_cdf(p) for p in np.linspace(0.05, 0.95, n)]
        xs = np.asarray(q)
        ys = np.asarray(q)[::-1]
    else:
        xs = np.linspace(lo[0], hi[0], n)
        ys = np.linspace(lo[1], hi[1], n)[::-1]
    pts = np.array([[x, y] for y in ys for x in xs], dtype=np.float64)
    return pts, xs, ys


def prior_samples(n: int, dims: int, seed: int = 0) -> np.ndarray:
    """``n`` draws from a VAE's prior N(0, I) in ``dims`` dimensions, from ``seed``."""
    return np.random.default_rng(seed).standard_normal((int(n), int(dims)))


# -- anomaly detection -------------------------------------------------------------------------------
def reconstruction_errors(x: Any, recon: Any, loss: str = "bce") -> np.ndarray:
    """One number per image: the mean over its values of the run's loss (``bce``: Keras'
    binary cross-entropy, the reconstruction clipped to [1e-7, 1 − 1e-7]; ``mse`` otherwise)."""
    a, r = _flat(x), _flat(recon)
    if loss in ("bce", "torch_bce"):
        p = np.clip(r, 1e-7, 1 - 1e-7)
        return -(a * np.log(p) + (1 - a) * np.log(1 - p)).mean(axis=1)
    return ((a - r) ** 2).mean(axis=1)


def anomaly_scores(errors: Any, labels: Any, held_out: Iterable[int]) -> dict[str, Any]:
    """How well the reconstruction error tells the ``held_out`` classes (never seen in training)
    from the rest: ``{"auc", "held_out", "n_held_out", "n_rest", "mean_error_held_out",
    "mean_error_rest"}``. ``auc`` is the ROC-AUC of the error as a score for "held out": 0.5 is
    chance, 1 means every held-out image reconstructs worse than every other image.
    """
    from sklearn.metrics import roc_auc_score  # deferred: scikit-learn takes seconds to import

    e = np.asarray(errors, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    held = sorted({int(c) for c in held_out})
    positive = np.isin(y, held)
    if len(e) != len(y):
        raise ValueError(f"{len(e)} errors for {len(y)} labels")
    if positive.all() or not positive.any():
        raise ValueError(f"the test images need both held-out ({held}) and other classes for a ROC-AUC; "
                         f"got {int(positive.sum())} held out of {len(y)}")
    return {"auc": float(roc_auc_score(positive, e)), "held_out": held, "n_held_out": int(positive.sum()),
            "n_rest": int((~positive).sum()), "mean_error_held_out": float(e[positive].mean()),
            "mean_error_rest": float(e[~positive].mean())}


# -- discrete codes --------------------------------------------------------------------------------------
def code_usage(codes: Any, k: int | None = None) -> np.ndarray:
    """How often each codebook entry appears in discrete ``codes`` (N, M) of indices (floats holding
    integers, as ``codes.npz`` keeps them), over every position: ``(K,)`` int64, K = ``k`` or the
    largest index + 1."""
    idx = np.rint(_flat(codes)).astype(np.int64).ravel()
    if idx.size and idx.min() < 0:
        raise ValueError("discrete codes are codebook indices, >= 0; these hold negative values")
    size = int(k) if k is not None else (int(idx.max()) + 1 if idx.size else 0)
    return np.bincount(idx, minlength=size)[:max(size, 0)] if size else np.zeros(0, np.int64)


def one_hot(codes: Any, k: int) -> np.ndarray:
    """Discrete ``codes`` (N, M) as (N, M·K) float32 one-hot rows, position by position: two codes
    are as far apart as the positions where they differ, whatever the indices' values."""
    idx = np.rint(_flat(codes)).astype(np.int64)
    n, m = idx.shape
    out = np.zeros((n, m * int(k)), np.float32)
    out[np.arange(n)[:, None], np.arange(m)[None, :] * int(k) + np.clip(idx, 0, int(k) - 1)] = 1.0
    return out
