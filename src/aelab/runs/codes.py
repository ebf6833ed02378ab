"""A run's codes on disk: ``codes.npz`` written when a run finishes, read by ``aelab latent`` and the report.

What belongs here: turning a model and its data into code arrays (:func:`code_arrays`), reading
and writing ``codes.npz`` in a run directory (compact, ``allow_pickle=False``), the summary
numbers a finished run records in ``metrics.json["latent"]`` (:func:`summary`, :func:`record`),
and the numbers of the latent quality table that depend on the data alone (:func:`input_baselines`:
a probe on the raw inputs and on PCA), computed once per data set and kept in aelab's cache. The
arithmetic is in :mod:`aelab.latent` (pure); ``aelab latent`` itself is :mod:`aelab.analysis.latent`.

``codes.npz`` holds, for a seeded subsample of at most :data:`MAX_TRAIN` training and
:data:`MAX_TEST` test images (so t-SNE and the probes stay within seconds on large sets):
``train_index``/``test_index`` (positions in the run's splits), ``train_codes``/``test_codes``
(float32, flattened; μ for a VAE), ``train_labels``/``test_labels`` and ``test_errors`` (each
test image's reconstruction error under the run's loss, per value); with labels, ``class_names``
(strings: label ``i`` is ``class_names[i]``, the CSV label column's values or the image folders'
sub-folder names) when the data set names its classes, for legends.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .. import latent as L
from .._atomic import atomic_path, write_json
from .._paths import cache_root
from ..artifacts import codes_problem, load_npz
from ..errors import AelabError, DataError
from ..models import family_of

CODES_FILE = "codes.npz"
#: the mark aelab latent writes first into its output directory (docs/formats.md): the directory
#: holds that run's latent output
LATENT_MARK = ".aelab-latent.json"
LATENT_FORMAT = "aelab-latent"
#: the figures aelab latent writes (each only where it applies)
FIGURES = ("map.png", "interpolation.png", "traversal.png", "manifold.png", "prior.png")
#: every name aelab latent writes in its output directory: it replaces these and nothing else (a
#: run directory's ``latent/`` holds exactly these)
LATENT_LAYOUT = {LATENT_MARK: None, "latent.json": None, **{f: None for f in FIGURES}}
#: the subsample sizes saved in codes.npz (seeded by the run's seed)
MAX_TRAIN = 5000
MAX_TEST = 5000
CODE_KEYS = ("train_index", "train_codes", "train_labels", "test_index", "test_codes", "test_labels", "test_errors",
             "class_names")
#: where :func:`input_baselines` keeps its numbers, under aelab's cache directory (beside the data)
BASELINE_DIR = "latent-baselines"
#: the version of the cached baselines' file: a change to how they are computed changes it
BASELINE_VERSION = 1


# -- codes from a model ------------------------------------------------------------------------------
def _labelled(labels: Any, device, s: int, batch: int) -> dict[str, torch.Tensor]:
    """``{"labels": rows s … s + batch}`` of a conditional model's labels, or ``{}`` without them."""
    if labels is None:
        return {}
    return {"labels": torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels),
                                      dtype=torch.long)[s:s + batch].to(device)}


@torch.no_grad()
def encode(model, x: torch.Tensor, batch: int = 1024, labels: Any = None) -> np.ndarray:
    """``model.encode`` over ``x`` (N, D) in batches → (N, K) float32 (the code flattened). ``labels``
    (N,): a conditional model's class labels, passed as ``labels=`` row for row."""
    model.eval()
    out = [model.encode(x[s:s + batch], **_labelled(labels, x.device, s, batch)).reshape(min(batch, x.shape[0] - s), -1)
           .float().cpu() for s in range(0, x.shape[0], batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def decode(model, z: np.ndarray, device: torch.device | str = "cpu", batch: int = 1024, labels: Any = None) -> np.ndarray:
    """``model.decode`` of flat codes ``z`` (M, K) → images (M, D) float32 (the decoder reshapes its input).
    ``labels`` (M,): a conditional model's class labels, one per code."""
    model.eval()
    t = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device)
    out = [model.decode(t[s:s + batch], **_labelled(labels, device, s, batch)).float().cpu()
           for s in range(0, t.shape[0], batch)]
    return torch.cat(out).numpy()


def _errors(model, x: torch.Tensor, loss: str, batch: int = 1024, labels: Any = None) -> np.ndarray:
    out = []
    with torch.no_grad():  # no generator: a VAE decodes μ
        for s in range(0, x.shape[0], batch):
            xb = x[s:s + batch]
            recon = model(xb, **_labelled(labels, xb.device, s, batch)).recon
            out.append(L.reconstruction_errors(xb.cpu().numpy(), recon.float().cpu().numpy(), loss))
    return np.concatenate(out) if out else np.zeros(0)


def code_arrays(model, cfg, x_train: torch.Tensor, x_test: torch.Tensor, y_train: Optional[np.ndarray],
                y_test: Optional[np.ndarray], classes: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of ``codes.npz`` for a trained model on its (clean) splits; labels may be None
    (then no labels are saved, and the probes cannot be computed). ``classes``: the data set's
    class names (label ``i`` is ``classes[i]``), saved beside the labels."""
    seed = int(cfg.train.seed)
    tr = L.subsample(x_train.shape[0], MAX_TRAIN, seed)
    te = L.subsample(x_test.shape[0], MAX_TEST, seed + 1)
    xtr, xte = x_train[torch.as_tensor(tr, device=x_train.device)], x_test[torch.as_tensor(te, device=x_test.device)]
    ltr = lte = None
    if family_of(cfg.model).conditional:  # a conditional model encodes each sample with its label
        if y_train is None or y_test is None or len(y_train) != x_train.shape[0] or len(y_test) != x_test.shape[0]:
            raise DataError(f"{cfg.name}: a conditional model's codes need a label per sample, and the data at hand "
                            "has none; open it with its labelled data set")
        ltr, lte = np.asarray(y_train)[tr], np.asarray(y_test)[te]
    out = {"train_index": tr.astype(np.int64), "test_index": te.astype(np.int64),
           "train_codes": encode(model, xtr, labels=ltr), "test_codes": encode(model, xte, labels=lte),
           "test_errors": _errors(model, xte, cfg.train.loss, labels=lte).astype(np.float32)}
    if y_train is not None and len(y_train) == x_train.shape[0]:
        out["train_labels"] = np.asarray(y_train)[tr].astype(np.int64)
    if y_test is not None and len(y_test) == x_test.shape[0]:
        out["test_labels"] = np.asarray(y_test)[te].astype(np.int64)
    if classes and ("train_labels" in out or "test_labels" in out):
        out["class_names"] = np.asarray([str(c) for c in classes], dtype=np.str_)
    return out


def class_names(data, data_cfg) -> tuple[str, ...]:
    """The class names of a data config's data set from a data cache (``Dataset.classes``: label
    ``i`` is the ``i``-th name); () when it names none or cannot say."""
    try:
        return tuple(str(c) for c in data.dataset(data_cfg).classes)
    except (AttributeError, TypeError, ValueError, KeyError):
        return ()


def names_of(arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The ``class_names`` saved in a run's codes (``()`` for codes saved before names were)."""
    names = arrays.get("class_names")
    return tuple(str(c) for c in names.tolist()) if names is not None and names.ndim == 1 else ()


def labels_for(data, data_cfg) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(train labels, test labels) of a data config from a data cache, in the order of its tensors;
    (None, None) when the data set has none."""
    try:
        if hasattr(data, "labels"):
            return data.labels(data_cfg)
        _, ytr, _, yte, _ = data.raw(data_cfg.dataset, data_cfg.limit, data_cfg.test_limit)
        return ytr, yte
    except (AttributeError, TypeError, ValueError, KeyError):
        return None, None


# -- codes.npz -----------------------------------------------------------------------------------------
def write_codes(run_dir: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``codes.npz`` into ``run_dir`` atomically; its path."""
    path = Path(run_dir) / CODES_FILE
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def read_codes(run_dir: Path) -> Optional[dict[str, np.ndarray]]:
    """The arrays of a run's ``codes.npz``; None when the run has none (trained before codes were
    saved); :class:`DataError` when it is damaged."""
    path = Path(run_dir) / CODES_FILE
    if not path.is_file():
        return None
    fix = f"run aelab latent {run_dir} --recompute to rebuild it from the model"
    arrays = load_npz(path, "codes file", fix)
    why = codes_problem(arrays)  # every array: its name, dtype and shape, one entry per code
    if why:
        raise DataError(f"{path} is not a valid codes file ({why}); {fix}")
    return arrays


def summary(arrays: dict[str, np.ndarray], seed: int = 0, stochastic: bool = False,
            codebook: Optional[int] = None) -> Optional[dict[str, Any]]:
    """What ``metrics.json["latent"]`` records: :func:`aelab.latent.code_quality` of the saved codes
    plus ``active_dims`` (:func:`aelab.latent.active_dims` of the test codes: variance above 0.01
    for a VAE's μ, above 1 % of the most variable dimension's for a deterministic code); None
    without labels. ``codebook``: K for a discrete code (codebook indices): the probes, k-NN and
    k-means then see it one-hot (:func:`aelab.latent.one_hot`), since an index is a name, not a
    coordinate."""
    if "train_labels" not in arrays or "test_labels" not in arrays or len(arrays["train_codes"]) == 0:
        return None
    ztr, zte = arrays["train_codes"], arrays["test_codes"]
    if codebook:
        ztr, zte = L.one_hot(ztr, codebook), L.one_hot(zte, codebook)
    q = L.code_quality(ztr, arrays["train_labels"], zte, arrays["test_labels"], seed)
    q["active_dims"] = L.active_dims(arrays["test_codes"], relative=not stochastic)
    return q


def record(run_dir: Path, model, cfg, x_train: torch.Tensor, x_test: torch.Tensor, labels,
           classes: Sequence[str] = ()) -> Optional[dict]:
    """At the end of training: write ``codes.npz`` and return the ``metrics.json["latent"]`` block."""
    y_train, y_test = labels if labels is not None else (None, None)
    arrays = code_arrays(model, cfg, x_train, x_test, y_train, y_test, classes)
    write_codes(run_dir, arrays)
    discrete = family_of(cfg.model).code == "discrete"
    book = (int(getattr(cfg.model, "codebook_size", 0) or 0) or L.code_usage(arrays["test_codes"]).size) if discrete else None
    out = summary(arrays, stochastic=bool(getattr(model, "stochastic", False)), codebook=book)
    held = getattr(cfg.data, "exclude_labels", None)
    if out is not None and held and "test_labels" in arrays:
        try:  # trained without these classes: how well the reconstruction error finds them
            out["anomaly"] = L.anomaly_scores(arrays["test_errors"], arrays["test_labels"], held)
        except ValueError:  # the test subsample has no image of them (or only those)
            pass
    return out


# -- the data's own numbers: computed once per data set ---------------------------------------------------
#: this process's baselines by fingerprint (the on-disk cache's copy, or what it computed)
_BASELINES: dict[str, dict[str, dict]] = {}


def baseline_fingerprint(train_x: np.ndarray, test_x: np.ndarray, train_labels: np.ndarray,
                         test_labels: np.ndarray, dims: int, seed: int = 0) -> str:
    """SHA-256 of everything :func:`input_baselines` depends on: the inputs and labels themselves
    (dtype, shape, bytes), the PCA's dimensions, the seed, the measures' settings and the
    scikit-learn version that computes them. Another subsample, another data set, one changed
    value: another fingerprint."""
    h = hashlib.sha256()
    meta = {"version": BASELINE_VERSION, "dims": int(dims), "seed": int(seed), "sklearn": _sklearn_version(),
            "knn_k": L.KNN_K, "cluster_points": L.CLUSTER_POINTS}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for a in (train_x, test_x, train_labels, test_labels):
        a = np.ascontiguousarray(a)
        h.update(f"\0{a.dtype.str}{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


@functools.cache
def _sklearn_version() -> str:
    """scikit-learn's version from its metadata (importing scikit-learn itself takes seconds)."""
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _valid_baselines(obj: Any) -> bool:
    """Whether a cached file holds what :func:`input_baselines` returns (two blocks of numbers)."""
    if not isinstance(obj, dict) or list(obj) != ["pixels", "pca"]:
        return False
    return all(isinstance(b, dict) and b and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in b.values()) for b in obj.values())


def input_baselines(train_x: Any, test_x: Any, train_labels: Any, test_labels: Any, dims: int,
                    seed: int = 0, cache: Optional[Path] = None) -> dict[str, dict]:
    """:func:`aelab.latent.input_baselines` — the quality numbers of the raw inputs (``"pixels"``)
    and of PCA with ``dims`` dimensions (``"pca"``), which depend on the data alone, not on any
    model — computed once per data set: kept by :func:`baseline_fingerprint` in this process and
    in ``<cache>/<fingerprint>.json`` (``cache``: default ``latent-baselines/`` in aelab's cache
    directory, written atomically; an unreadable or damaged file is recomputed, an unwritable
    directory only costs the next process the computation). The numbers are the computed ones,
    to the bit (JSON keeps a float's shortest exact form)."""
    xtr, xte = np.asarray(train_x), np.asarray(test_x)
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    key = baseline_fingerprint(xtr, xte, ytr, yte, dims, seed)
    if key in _BASELINES:
        return copy.deepcopy(_BASELINES[key])
    path = (Path(cache) if cache is not None else cache_root() / BASELINE_DIR) / f"{key}.json"
    out = None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        out = stored if _valid_baselines(stored) else None
    except (OSError, ValueError):
        pass
    if out is None:
        out = L.input_baselines(xtr, xte, ytr, yte, dims, seed)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, out)
        except (OSError, AelabError):  # a read-only or full cache directory: the numbers are still right
            pass
    _BASELINES[key] = out
    return copy.deepcopy(out)
