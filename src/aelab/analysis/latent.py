"""``aelab latent RUN_DIR``: a trained model's code space, looked at — figures and ``latent.json``.

What belongs here: :func:`analyse`, which writes a finished run's latent figures and
``latent.json`` into an output directory it owns (new, empty, or marked as this run's latent
output: :func:`check_latent_out`), and :func:`quality_lines`, the numbers for the terminal. The
codes themselves (``codes.npz``) are :mod:`aelab.runs.codes`'s, the arithmetic :mod:`aelab.latent`'s,
the drawing :mod:`aelab.plots.latent`'s. The raw-input and PCA rows of the quality table depend
on the data alone and come from :func:`aelab.runs.codes.input_baselines`, computed once per data set.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .. import _display as D
from .. import latent as L
from .._atomic import atomic_path, ensure_dir, write_json
from .._lock import dir_lock, is_lock_file
from .._owned import clean_temps, names_text, output_contents, write_mark
from ..artifacts import read_samples
from ..config import config_hash
from ..errors import AelabError, DataError
from ..models import family_of
from ..plots import latent as LF
from ..runs import DataCache, is_done, load_model
from ..runs.trained import check_run_modules
from ..runs.codes import (CODES_FILE, FIGURES, LATENT_FORMAT, LATENT_LAYOUT, LATENT_MARK, class_names, code_arrays,
                          decode, encode, input_baselines, labels_for, names_of, read_codes, write_codes)

__all__ = ["LatentAnalysis", "analyse", "check_latent_out", "latent_mark", "quality_lines", "dumps", "MAP_POINTS"]

#: the test points a t-SNE / UMAP map lays out (t-SNE's cost grows faster than linearly)
MAP_POINTS = 2000


#: the figures of an analysis in the order a display shows them, each with what to look at
FIGURE_CAPTIONS = {
    "map": "test codes in 2-D, coloured by class, with one image per class at its point: separate colour "
           "groups mean the code keeps what tells the classes apart",
    "interpolation": "decoding the path between the codes of two test images (the images themselves at both ends)",
    "traversal": "one code dimension changed at a time around a test image (the most variable dimensions)",
    "manifold": "the 2-D code decoded on a grid",
    "prior": "decoded samples from the prior z ~ N(0, I)",
}


class LatentAnalysis(dict):
    """What :func:`analyse` returns: ``latent.json``'s content (this dict, as the CLI and the file hold
    it) with ``figures``, the PNG bytes of each figure by name (``"map"``, ``"interpolation"``, …), and
    a notebook display: the quality table (the code against the raw inputs and PCA of the same size)
    and the figures inline (``_repr_html_``, self-contained), the map as ``_repr_png_``."""

    def __init__(self, report: dict[str, Any], figures: Optional[dict[str, bytes]] = None) -> None:
        super().__init__(report)
        if figures is None:  # read back from the files latent.json names
            figures = {}
            for name, path in (report.get("figures") or {}).items():
                with contextlib.suppress(OSError):
                    figures[f"{name}.png"] = Path(path).read_bytes()
        self.figures = {name.rsplit(".", 1)[0]: png for name, png in figures.items()}

    def __repr__(self) -> str:
        return (f"LatentAnalysis({self.get('run')!r}, {self.get('code_dims')}-D code, "
                f"figures: {', '.join(self.figures) or 'none'})")

    def _repr_png_(self) -> Optional[bytes]:
        return self.figures.get("map")

    def _quality(self) -> str:
        q = self.get("quality")
        if not q:
            return f'<p class="meta">{D.escape(self.get("quality_note", "no labels: no probe numbers"))}</p>'
        names = {"code": "code" + (" (μ)" if self.get("code_is_mean") else ""),
                 "pixels": f"raw {self.get('inputs') or 'pixels'}", "pca": "PCA, as many dimensions as the code"}
        rows = [[names[k], q[k]["dims"], q[k]["probe_accuracy"], q[k]["knn_accuracy"], q[k]["ari"], q[k]["nmi"]]
                for k in ("code", "pixels", "pca") if k in q]
        code = q["code"]
        note = (f"chance (the most frequent class): {code['chance']:.3f}; {code['n_train']:,} training and "
                f"{code['n_test']:,} test codes. A code is a useful feature when it beats the PCA of the same size.")
        return (D.table(["features", "dims", "linear-probe accuracy", "5-NN accuracy", "k-means ARI", "NMI"], rows,
                        digits=3) + f'<p class="meta">{D.escape(note)}</p>')

    def _repr_html_(self) -> str:
        """The analysis as a notebook shows it: key numbers, the quality table, every figure inline."""
        parts = [D.key_table([("code dimensions", self.get("code_dims")),
                              ("dimensions that vary over the test codes", self.get("active_dims")),
                              ("2-D maps", ", ".join(self.get("map_methods") or []) or None),
                              ("anomaly ROC-AUC (held-out classes)", (self.get("anomaly") or {}).get("auc"))]),
                 "<h4>What the code tells about the classes</h4>", self._quality()]
        for name, png in self.figures.items():
            parts.append(D.figure(png, f"{self.get('run')}: {name}", FIGURE_CAPTIONS.get(name, name)))
        family = self.get("family")
        meta = " · ".join(str(x) for x in (f"family {family}" if family else "",
                                           f"{self.get('n_test_codes', 0):,} test codes", self.get("run_dir"))
                          if x)
        return D.card(f"{self.get('run')}: its code space", meta, *parts)


# -- aelab latent RUN_DIR ------------------------------------------------------------------------------
def _run_data(cfg, data, device) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
    x_train, x_test, _ = data.tensors(cfg.data, device)
    y_train, y_test = labels_for(data, cfg.data)
    return x_train, x_test, y_train, y_test


def _class_name(y: Any, names: Sequence[str] = ()) -> str:
    """A label as its class's name (``names[y]``) where the data set names its classes, else the number."""
    if isinstance(y, (int, np.integer)) and 0 <= int(y) < len(names):
        return str(names[int(y)])
    return str(int(y)) if isinstance(y, (int, np.integer)) else str(y)


def analyse(run_dir: str | Path, out: Optional[str | Path] = None, *, data=None, baselines: bool = True,
            recompute: bool = False, methods: Optional[list[str]] = None, seed: int = 0,
            log=None, modules=None) -> "LatentAnalysis":
    """Write a finished run's latent figures and ``latent.json`` into ``out`` (default ``RUN_DIR/latent``).

    Figures: ``map.png`` (test codes in 2-D, coloured by label: the code itself when it has two
    dimensions, else PCA, t-SNE and UMAP when installed, with thumbnails of a few images),
    ``interpolation.png`` (between pairs of test images; spherical for a VAE), ``traversal.png``
    (single code dimensions around a test image), ``manifold.png`` (a 2-D latent decoded on a
    grid) and ``prior.png`` (samples from a VAE's prior). ``latent.json``: the probe, k-NN and
    k-means numbers of the code and — with ``baselines`` and the run's data at hand — of the raw
    inputs (``inputs``: an image's pixels or a table's features; the key stays ``"pixels"``) and
    of PCA with as many dimensions; the anomaly ROC-AUC when the run was trained without some
    classes (``data.exclude_labels``); ``class_names`` when the data set names its classes.

    ``data``: a :class:`~aelab.runs.DataCache` (the images are needed for the baselines, and for
    runs trained before codes were saved). Returns the ``latent.json`` dict as a
    :class:`LatentAnalysis` (the same dict, with the figures' PNG bytes and a notebook display).
    ``modules``: ``(encoder, decoder)`` for a run of your own modules (``aelab.models.custom``).
    """
    say = log or (lambda _msg: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AelabError(f"{run_dir} is not a directory; give a run directory written by aelab train or a study")
    if not (run_dir / "config.json").is_file():
        raise AelabError(f"{run_dir} has no config.json; give a run directory written by aelab train or a study "
                         "(studies keep theirs under <out>/runs/)")
    if not is_done(run_dir):
        raise AelabError(f"{run_dir} has not finished training; resume it with aelab train --resume {run_dir}")
    t0 = time.perf_counter()
    check_run_modules(run_dir, modules)  # your own modules' run: they are given, and they are the run's
    model, cfg = load_model(run_dir, "cpu")
    given = out is not None and str(out) != ""
    out = Path(out) if given else run_dir / "latent"
    mark = latent_mark(run_dir, cfg)
    check_latent_out(out, mark, run_dir, given)  # before anything is created or computed
    # the run directory is written too when codes.npz is (re)made there, or the output lies inside it
    inside = _is_inside(out, run_dir)
    writes_run = inside or recompute or not (run_dir / CODES_FILE).is_file()
    created = not out.exists()
    try:
        with contextlib.ExitStack() as locks:
            if writes_run:
                locks.enter_context(dir_lock(run_dir))
            ensure_dir(out)
            locks.enter_context(dir_lock(out))
            try:
                check_latent_out(out, mark, run_dir, given)  # under the lock: what another process wrote meanwhile
                with contextlib.suppress(OSError):
                    clean_temps(out, LATENT_LAYOUT)  # a killed write's temporary files
                write_mark(out, LATENT_MARK, mark)
                return _analyse(run_dir, out, model, cfg, t0, data=data, baselines=baselines, recompute=recompute,
                                methods=methods, seed=seed, say=say)
            except BaseException:
                if created:  # nothing written yet but the mark: leave no folder behind
                    _drop_if_bare(out)
                raise
    finally:
        if created:  # after the lock (and its file) is released; only when empty
            _rmdir_if_empty(out)


def _analyse(run_dir: Path, out: Path, model, cfg, t0: float, *, data, baselines: bool, recompute: bool,
             methods: Optional[list[str]], seed: int, say) -> dict[str, Any]:
    """:func:`analyse` in an output directory it owns (checked, locked, marked)."""
    arrays = None if recompute else read_codes(run_dir)
    tensors = None
    if arrays is None or baselines:
        data = data or DataCache()
        say("loading the run's data")
        tensors = _run_data(cfg, data, torch.device("cpu"))
    if arrays is not None:
        _check_codes_fit(run_dir, arrays, model, cfg, tensors)
    if arrays is None:
        say("encoding the run's samples (no codes.npz yet)")
        arrays = code_arrays(model, cfg, *tensors, class_names(data, cfg.data))
        write_codes(run_dir, arrays)
    z_test, y_test = arrays["test_codes"], arrays.get("test_labels")
    # the classes' own names for legends and rows: saved with the codes, else from the data at hand
    names = names_of(arrays) or (class_names(data, cfg.data) if data is not None else ())
    dims = int(z_test.shape[1])
    family = cfg.model.family
    stochastic = bool(getattr(model, "stochastic", False))
    # a conditional model (a conditional VAE) decodes every code with a class label: a walk keeps its
    # image's own label; every other model is called without labels
    conditional = bool(family_of(cfg.model).conditional)

    def as_class(y: Any, n: int) -> dict[str, np.ndarray]:
        return {"labels": np.full(n, int(y), dtype=np.int64)} if conditional else {}

    # a discrete code (codebook indices) is a name per position, not a point: measured one-hot, shown as the
    # histogram of the entries it uses, and never laid out in 2-D, interpolated or traversed
    discrete = family_of(cfg.model).code == "discrete"
    book = int(getattr(cfg.model, "codebook_size", 0) or 0) or (L.code_usage(z_test).size if discrete else 0)
    shape = tuple(cfg.model.input_shape)
    report: dict[str, Any] = {"run": cfg.name, "run_dir": str(run_dir), "family": family, "code_dims": dims,
                              "code_is_mean": stochastic, "active_dims": L.active_dims(z_test, relative=not stochastic),
                              "n_train_codes": int(len(arrays["train_codes"])), "n_test_codes": int(len(z_test)),
                              # what the raw baseline is made of: an image's pixels or a table's features
                              "inputs": L.input_noun(shape), "figures": {}, "code_kind": family_of(cfg.model).code}
    if names:
        report["class_names"] = list(names)
    figures: dict[str, bytes] = {}

    # numbers
    if "train_labels" in arrays and y_test is not None:
        say("probes, k-NN and k-means" + (f" (code, raw {report['inputs']}, PCA)" if baselines else ""))
        xtr = xte = None
        if baselines and tensors is not None:
            xtr = tensors[0][torch.as_tensor(arrays["train_index"])].cpu().numpy()
            xte = tensors[1][torch.as_tensor(arrays["test_index"])].cpu().numpy()
        ztr, zte = arrays["train_codes"], z_test
        if discrete:
            ztr, zte = L.one_hot(ztr, book), L.one_hot(zte, book)
        report["quality"] = {"code": L.code_quality(ztr, arrays["train_labels"], zte, y_test, seed)}
        if xtr is not None and xte is not None:  # the data's own rows: once per data set
            report["quality"].update(input_baselines(xtr, xte, arrays["train_labels"], y_test,
                                                     int(arrays["train_codes"].shape[1]), seed))
    else:
        report["quality"] = None
        report["quality_note"] = "the data set has no labels, so no probe, k-NN or clustering numbers"
    held = getattr(cfg.data, "exclude_labels", None)
    if held and y_test is not None and "test_errors" in arrays:
        try:
            report["anomaly"] = L.anomaly_scores(arrays["test_errors"], y_test, held)
        except ValueError as err:
            report["anomaly"] = {"error": str(err)}

    if discrete:
        counts = L.code_usage(z_test, book)
        figures["map.png"] = LF.code_histogram(counts, dims, title=f"{cfg.name}: how often each codebook entry is "
                                                                  "used by the test codes")
        report.update({"map_methods": ["usage"], "codebook_used": int((counts > 0).sum()),
                       "codebook_size": int(len(counts))})
    else:  # a map of the codes, and walks through the code space
        # the map
        idx = L.subsample(len(z_test), MAP_POINTS, seed)
        labels = y_test[idx] if y_test is not None else np.zeros(len(idx), dtype=int)
        panels = []
        for m in (methods or L.map_methods(dims)):
            say(f"2-D map: {m}")
            if m == "code" and dims > 2:
                raise AelabError(f"--methods code needs a code of at most 2 dimensions; this run's has {dims}; "
                                 "use pca, tsne or umap")
            if m == "umap" and not L.have_umap():
                raise AelabError("--methods umap needs umap-learn; install it with pip install 'aelab[umap]'")
            pts = L.embed_2d(z_test[idx], m, seed)
            panels.append(LF.map_panel(m, pts, labels, dims, stochastic))
        thumbs = None
        if tensors is not None and LF.image_like(shape):
            thumbs = tensors[1][torch.as_tensor(arrays["test_index"][idx])].cpu().numpy()
        figures["map.png"] = LF.latent_maps(panels, thumbs=thumbs, image_shape=shape, class_names=names,
                                            title=f"{cfg.name}: test codes, coloured by class")
        report["map_methods"] = [p["method"] for p in panels]
        report["map_points"] = int(len(idx))

        # walking the code space (needs images to show)
        if LF.image_like(shape):
            if tensors is not None:
                x_show = tensors[1][torch.as_tensor(arrays["test_index"][:10])]
                y_show = y_test[:10] if y_test is not None else None
            else:
                x_show, y_show = _first_test_images(run_dir), None
            if conditional and y_show is None:  # no labels at hand for these images: no walks
                x_show = None
            if x_show is not None and x_show.shape[0] >= 2:
                z_show = encode(model, x_show, labels=None if not conditional else np.asarray(y_show[:len(x_show)]))
                rows = []
                originals = x_show.cpu().numpy()
                for a, b in [(0, 1), (2, 3), (4, 5)][: x_show.shape[0] // 2]:
                    path = decode(model, L.interpolate(z_show[a], z_show[b], 8, spherical=stochastic),
                                  **as_class(y_show[a] if conditional else 0, 8))  # a conditional one: A's class
                    name = (f"{_class_name(y_show[a], names)} → {_class_name(y_show[b], names)}" if y_show is not None
                            else f"image {a + 1} → {b + 1}")
                    rows.append((name, np.concatenate([originals[a:a + 1], path, originals[b:b + 1]])))
                figures["interpolation.png"] = LF.image_rows(
                    rows, shape, title=("spherical" if stochastic else "linear") + " interpolation between the codes "
                                       "of two test images (outer columns: the images themselves)",
                    columns=["image A", "decoded A"] + [""] * 6 + ["decoded B", "image B"])
                order = np.argsort(-z_test.var(axis=0))[: min(8, dims)]
                trows = []
                for d in order:
                    vals = L.traversal_values(z_test, int(d), 9, prior=stochastic)
                    trows.append((f"dimension {int(d) + 1}", np.concatenate(
                        [originals[:1], decode(model, L.traversal(z_show[0], int(d), vals),
                                               **as_class(y_show[0] if conditional else 0, len(vals)))])))
                figures["traversal.png"] = LF.image_rows(
                    trows, shape, title="one code dimension changed at a time, the others kept at the image's code "
                                        + ("(−2.5 … +2.5, the prior's σ)" if stochastic
                                           else "(from its 2nd to its 98th percentile over the test codes)"),
                    columns=["image", "low"] + [""] * 7 + ["high"])
                report["traversal_dims"] = [int(d) for d in order]
            if dims == 2:
                if stochastic:
                    pts, xs, ys = L.manifold_grid(15, prior=True)
                else:
                    lo, hi = np.percentile(z_test, 2, axis=0), np.percentile(z_test, 98, axis=0)
                    pts, xs, ys = L.manifold_grid(15, prior=False, lo=lo, hi=hi)
                first = int(y_test[0]) if conditional and y_test is not None else 0
                if not conditional or y_test is not None:
                    figures["manifold.png"] = LF.manifold(decode(model, pts, **as_class(first, len(pts))), xs, ys,
                                                          shape, prior=stochastic)
            if stochastic and not conditional:
                figures["prior.png"] = LF.image_rows(
                    [(f"row {i + 1}", decode(model, L.prior_samples(10, dims, seed + i))) for i in range(4)], shape,
                    title="decoded samples z ~ N(0, I) from the prior")
            elif stochastic and y_test is not None:  # a conditional model: one row per class, the same draws
                z = L.prior_samples(10, dims, seed)
                figures["prior.png"] = LF.image_rows(
                    [(_class_name(int(c), names), decode(model, z, **as_class(c, 10)))
                     for c in sorted(set(np.asarray(y_test).tolist()))], shape,
                    title="decoded samples z ~ N(0, I) from the prior, one row per class")
    for name, png in figures.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
        report["figures"][name.rsplit(".", 1)[0]] = str(out / name)
    for name in FIGURES:  # an earlier analysis's figure this one does not draw (this run's: checked)
        p = out / name
        if name not in figures and p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    report["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "latent.json", report)
    return LatentAnalysis(report, figures)


# -- the latent output directory: aelab's, one run's ---------------------------------------------------
def latent_mark(run_dir: Path, cfg) -> dict:
    """The mark of a directory holding ``cfg``'s latent output (its config hash decides whose it is)."""
    return {"format": LATENT_FORMAT, "version": 1, "run": cfg.name, "run_dir": str(Path(run_dir).resolve()),
            "config_hash": config_hash(cfg)}


def _is_inside(path: Path, directory: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(directory).resolve())
    except OSError:
        return False


def _same_run(path: Path, run_dir: Path) -> bool:
    """Whether latent.json (written before marks) names ``run_dir`` as its run."""
    try:
        rd = json.loads(path.read_text(encoding="utf-8")).get("run_dir")
        return isinstance(rd, str) and Path(rd).resolve() == Path(run_dir).resolve()
    except (OSError, ValueError, AttributeError):
        return False


def check_latent_out(out: Path, mark: dict, run_dir: Path, given: bool = True) -> None:
    """Refuse, with one line and before anything is written, a latent output directory that is not
    aelab's for this run: one holding files aelab latent did not write there (a user's ``map.png``
    included), another run's latent output, or a run directory. A new or empty directory, and one
    carrying this run's latent mark (or, written before marks, the run's own ``latent/`` or a
    latent.json naming this run, with nothing else), are fine."""
    out, run_dir = Path(out), Path(run_dir)
    where = f"--out {out}" if given else str(out)
    contents = output_contents(out, LATENT_LAYOUT, LATENT_MARK, LATENT_FORMAT, where)
    if contents is None:
        return
    entries, others, theirs = contents
    if theirs is not None and theirs.get("config_hash") != mark["config_hash"]:
        what = (f"holds the latent output of another run (run {theirs.get('run', '?')}, config hash "
                f"{theirs.get('config_hash', '?')}; this is run {mark['run']}, {mark['config_hash']})")
    else:
        # unmarked, aelab's only when written before marks: the run's own latent/, or a latent.json of this run
        if theirs is None and not (not others and (not given or _is_inside(out, run_dir)
                                                   or _same_run(out / "latent.json", run_dir))):
            others = [n + ("/" if (out / n).is_dir() else "") for n in entries]
        if not others:
            return  # this run's own latent output: rewritten
        if (out / ".aelab-run.json").exists() or (out / "config.json").exists():
            what = "is a run directory"
        else:
            what = f"holds files aelab latent did not write there ({names_text(others)})"
    raise AelabError(f"{where} {what}; aelab latent replaces nothing it did not write: give --out a new or empty "
                     "directory")


def _drop_if_bare(out: Path) -> None:
    """After a failure in a directory this call created: remove the mark when nothing else was written."""
    with contextlib.suppress(OSError):
        rest = [p.name for p in out.iterdir() if not is_lock_file(p.name) and p.name != LATENT_MARK]
        if not rest:
            (out / LATENT_MARK).unlink(missing_ok=True)


def _rmdir_if_empty(out: Path) -> None:
    with contextlib.suppress(OSError):
        out.rmdir()  # only when empty: another process that took it meanwhile keeps it


def _check_codes_fit(run_dir: Path, arrays: dict[str, np.ndarray], model, cfg, tensors) -> None:
    """A valid codes.npz is this run's: codes as wide as the model's, positions inside its splits."""
    fix = f"run aelab latent {run_dir} --recompute to rebuild it from the model"
    path = Path(run_dir) / CODES_FILE
    # a conditional model encodes with a label: any class does for the code's width
    lab = {"labels": np.zeros(1, dtype=np.int64)} if family_of(cfg.model).conditional else {}
    width = encode(model, torch.zeros(1, int(np.prod(tuple(cfg.model.input_shape)))), **lab).shape[1]
    if arrays["test_codes"].shape[1] != width:
        raise DataError(f"{path} holds {arrays['test_codes'].shape[1]}-D codes, the run's model makes {width}-D "
                        f"ones; {fix}")
    for split in ("train", "test"):
        if f"{split}_index" not in arrays:
            raise DataError(f"{path} is not a valid codes file (no {split}_index array); {fix}")
    for split, x in zip(("train", "test"), tensors[:2] if tensors is not None else ()):
        idx = arrays[f"{split}_index"]
        if idx.size and int(idx.max()) >= x.shape[0]:
            raise DataError(f"{path}: {split}_index points past the run's {x.shape[0]} {split} images; {fix}")


def _first_test_images(run_dir: Path) -> Optional[torch.Tensor]:
    """The run's first test images from samples.npz (runs whose data is not at hand)."""
    path = Path(run_dir) / "samples.npz"
    if not path.is_file():
        return None
    arrays = read_samples(path, "retrain the run, or let aelab latent read the run's data (drop --no-baselines)")
    return torch.from_numpy(arrays["original"].astype(np.float32))


def quality_lines(report: dict[str, Any]) -> list[str]:
    """The numbers of ``latent.json`` as aligned lines for the terminal."""
    q = report.get("quality")
    if not q:
        return [report.get("quality_note", "no labels: no probe numbers")]
    chance = q["code"]["chance"]
    lines = [f"{'representation':<26}{'dims':>6}{'probe acc':>11}{'k-NN acc':>10}{'ARI':>8}{'NMI':>8}"]
    # the raw baseline's key is "pixels" in latent.json whatever the data; its name follows the data
    names = {"code": "code" + (" (μ)" if report.get("code_is_mean") else ""),
             "pixels": f"raw {report.get('inputs') or 'pixels'}", "pca": "PCA, same dims as the code"}
    for key in ("code", "pixels", "pca"):
        if key in q:
            r = q[key]
            lines.append(f"{names[key]:<26}{r['dims']:>6}{r['probe_accuracy']:>11.3f}{r['knn_accuracy']:>10.3f}"
                         f"{r['ari']:>8.3f}{r['nmi']:>8.3f}")
    lines.append(f"chance (most frequent class): {chance:.3f}; {q['code']['n_train']} training and "
                 f"{q['code']['n_test']} test codes")
    a = report.get("anomaly")
    if a and "auc" in a:
        held = ", ".join(_class_name(int(c), report.get("class_names") or ()) for c in a["held_out"])
        lines.append(f"anomaly: held-out classes {held}: ROC-AUC of the reconstruction error {a['auc']:.3f}")
    return lines


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)
