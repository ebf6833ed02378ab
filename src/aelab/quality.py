"""How good are a generative model's samples, measured without a download.

The standard FID compares Inception-v3 features of real and generated images; its weights come from
the internet, which aelab must not fetch. aelab measures the same things on the features of a small
classifier it trains itself, per data set: a multilayer perceptron (inputs → 256 → 64 → classes,
ReLU; the 64 units before the class scores are the features), trained with a fixed seed on (up to
:data:`MAX_TRAIN` of) the data's training images as the models see them, and kept in aelab's cache
under the fingerprint of exactly those images, labels and settings. On top of those features:

* **Fréchet distance** (Heusel et al. 2017): ``‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^½)`` between
  Gaussians fitted to the features of test images and of samples. 0 for identical statistics.
* **Precision and recall** (Kynkäänniemi et al. 2019, k = 3): the fraction of samples that fall inside
  the real images' feature manifold (each real feature's ball reaching its k-th nearest real
  neighbour), and the fraction of real images inside the samples' manifold. Precision: are the
  samples realistic; recall: do they cover the data's variety.
* **Confidence**: the classifier's mean top-class probability on the samples (beside the same on
  test images): how confidently a digit classifier recognises a prior sample as some digit.

The numbers are **comparable only within aelab** (another classifier gives another scale; they are
not FID values), on one data set and, like every float, on one kind of CPU.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ._atomic import atomic_path

#: changes with anything that changes the classifier (its architecture, training, the data it sees)
CLASSIFIER_VERSION = 1
#: training images the classifier sees at most (the first ones, in the data's order)
MAX_TRAIN = 20_000
EPOCHS = 3
#: steps it takes at least (a small data set, such as digits' 1,438 images, gets more epochs)
MIN_STEPS = 300
BATCH = 128
LR = 1e-3
WIDTH, FEATURES = 256, 64
#: the k of the k-nearest-neighbour balls of precision and recall (Kynkäänniemi et al. 2019)
K_NN = 3
#: aelab's cache subdirectory for the classifiers
CACHE_DIR = "feature-classifiers"


class FeatureClassifier(nn.Module):
    """inputs → 256 → 64 → classes, ReLU; :meth:`features` gives the 64 units before the class scores."""

    def __init__(self, d_in: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d_in, WIDTH), nn.ReLU(), nn.Linear(WIDTH, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _settings(d_in: int, n_classes: int, seed: int) -> dict[str, Any]:
    return {"version": CLASSIFIER_VERSION, "d_in": d_in, "classes": n_classes, "seed": seed, "epochs": EPOCHS,
            "batch": BATCH, "min_steps": MIN_STEPS, "lr": LR, "width": WIDTH, "features": FEATURES, "max_train": MAX_TRAIN}


def classifier_fingerprint(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0) -> str:
    """SHA-256 of everything the classifier depends on: the images and labels it trains on (dtype,
    shape, bytes) and its settings. Another data set, slice or scaling: another classifier."""
    h = hashlib.sha256(json.dumps(_settings(int(np.prod(x.shape[1:])), n_classes, seed), sort_keys=True).encode())
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(f"\0{a.dtype.str}{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class _OneThread:
    """The classifier trains and measures on one thread: CPU matmuls round differently with another
    thread count, and one classifier (kept by fingerprint) must not depend on which process made it."""

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.before)


def _train(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int) -> FeatureClassifier:
    with _OneThread():
        return _train_on_one_thread(x, y, n_classes, seed)


def _train_on_one_thread(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int) -> FeatureClassifier:
    g = torch.Generator().manual_seed(seed)
    net = FeatureClassifier(int(np.prod(x.shape[1:])), n_classes)
    with torch.no_grad():  # PyTorch's own default initialisation, drawn from the seeded generator
        for m in net.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / m.in_features ** 0.5
                m.weight.uniform_(-bound, bound, generator=g)
                m.bias.uniform_(-bound, bound, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    n = x.shape[0]
    for _ in range(max(EPOCHS, -(-MIN_STEPS // -(-n // BATCH)))):  # EPOCHS epochs, or enough for MIN_STEPS steps
        order = torch.randperm(n, generator=g)
        for s in range(0, n, BATCH):
            idx = order[s:s + BATCH]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def fit_classifier(x: Any, y: Any, n_classes: Optional[int] = None, seed: int = 0,
                   cache: Optional[Path] = None) -> FeatureClassifier:
    """The feature classifier of training images ``x`` (N, …) in [0, 1] with integer labels ``y``:
    read from ``cache/<fingerprint>.safetensors`` when it is there and fits, else trained (a few
    seconds) and saved there atomically. ``cache`` None: not kept. A damaged or unreadable file is
    trained again; an unwritable directory only costs the next process the training."""
    import safetensors  # deferred: only when a classifier is read or kept
    import safetensors.torch  # deferred: as above

    xa = np.asarray(x, dtype=np.float32)[:MAX_TRAIN]
    ya = np.asarray(y).astype(np.int64)[:MAX_TRAIN]
    if xa.shape[0] != ya.shape[0] or xa.shape[0] < 2:
        raise ValueError(f"the classifier needs at least 2 labelled images, got {xa.shape[0]} images and "
                         f"{ya.shape[0]} labels")
    n_classes = int(n_classes if n_classes is not None else ya.max() + 1)
    path = Path(cache) / f"{classifier_fingerprint(xa, ya, n_classes, seed)}.safetensors" if cache else None
    net = FeatureClassifier(int(np.prod(xa.shape[1:])), n_classes)
    if path is not None:
        try:
            net.load_state_dict(safetensors.torch.load_file(str(path)))
            return net.eval()
        except (OSError, RuntimeError, ValueError, KeyError, safetensors.SafetensorError):  # absent, damaged: train
            pass
    net = _train(torch.from_numpy(xa), torch.from_numpy(ya), n_classes, seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(safetensors.torch.save({k: v.contiguous() for k, v in net.state_dict().items()}))
        except OSError:
            pass
    return net


@torch.no_grad()
def features_and_probs(net: FeatureClassifier, x: Any, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's features (N, 64) and class probabilities (N, C) of images ``x``, in float64."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    feats, probs = [], []
    with _OneThread():
        for s in range(0, t.shape[0], chunk):
            f = net.features(t[s:s + chunk])
            feats.append(f.double())
            probs.append(torch.softmax(net.head(f).double(), dim=1))
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F):
    ``‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½`` (the symmetric form of
    ``tr (Σ_a Σ_b)^½``, computed with eigendecompositions, so it is real and never negative)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"two feature sets (N, F) with the same F and at least 2 rows each, got {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    ra = _sqrt_psd(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ cb @ ra), 0.0, None)).sum()
    return float(max(mu @ mu + np.trace(ca) + np.trace(cb) - 2.0 * cross, 0.0))


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NN) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): the fraction of ``fake`` features
    inside some real feature's k-NN ball, and of ``real`` features inside some fake one's."""
    r, f = torch.as_tensor(np.asarray(real, np.float64)), torch.as_tensor(np.asarray(fake, np.float64))
    if min(r.shape[0], f.shape[0]) <= k:
        raise ValueError(f"precision and recall need more than k={k} features in each set, got {r.shape[0]} and {f.shape[0]}")
    rr, rf = _kth_radius(r, k), _kth_radius(f, k)
    d = torch.cdist(f, r)  # (fake, real)
    precision = (d <= rr[None, :]).any(dim=1).double().mean().item()
    recall = (d.T <= rf[None, :]).any(dim=1).double().mean().item()
    return float(precision), float(recall)


def sample_quality(net: FeatureClassifier, real: Any, samples: Any, k: int = K_NN) -> dict[str, float]:
    """Every number of this module for test images ``real`` against a model's ``samples`` (both
    (N, …) in [0, 1], as the classifier's training images): ``frechet``, ``precision``, ``recall``,
    ``confidence`` (mean top-class probability on the samples) and ``real_confidence`` (the same on
    ``real``, the value to read it against), plus ``n``: samples compared."""
    fr, pr = features_and_probs(net, real)
    fs, ps = features_and_probs(net, samples)
    precision, recall = precision_recall(fr, fs, k)
    return {"frechet": frechet_distance(fr, fs), "precision": precision, "recall": recall,
            "confidence": float(ps.max(1).mean()), "real_confidence": float(pr.max(1).mean()),
            "n": int(min(fr.shape[0], fs.shape[0]))}


__all__ = ["FeatureClassifier", "fit_classifier", "features_and_probs", "frechet_distance", "precision_recall",
           "sample_quality", "classifier_fingerprint"]
