"""A finished run as an object: its config, history and metrics, and a model that encodes, decodes
and reconstructs arrays given in the data's own shape and range.

``aelab.open_run(run_dir)`` gives a :class:`TrainedRun`. It takes what ``aelab.data.load`` gives
(``x_test`` of a :class:`~aelab.data.Dataset`: ``(N, *sample_shape)``, uint8 pixels for images)
and applies the run's own scaling before the model sees it, exactly as training did
(:class:`Scaler`, fitted on the run's training split as ``data.scaling``/``data.scaler_fit`` say);
decodings and reconstructions come back in the data's range and shape (float32, the scaling
inverted). So a notebook never scales by hand, and cannot scale differently from training.

What ``encode`` gives is the family's code (``Family.code``): a deterministic code, or the
posterior mean of a VAE; nothing is sampled, so encoding twice gives the same code. A conditional
VAE (``Family.conditional``) encodes, decodes and reconstructs each sample with its class label:
its ``encode``/``decode``/``reconstruct`` take ``labels=`` (one integer class per sample, or one
for all) and refuse, in one line, to run without them; every other family refuses ``labels=``.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .. import _display as D
from .. import numfmt as N
from .. import plots
from ..artifacts import HistoryFile, MetricsFile, read_dict, read_samples, retrain_fix
from ..config import RunConfig
from ..data import SOURCES, DataCache, DataOptions, Dataset
from ..data.prepare import Scaler
from ..errors import AelabError, ConfigError, DataError
from ..models import custom, family_of
from ..models.custom import CUSTOM_FAMILIES
from .directory import is_done, load_model
from .events import OnEvent, Stop
from .train import TrainOptions, train_runs

#: samples encoded or decoded per forward pass (bounds the memory of a large array)
BATCH = 1024


class TrainedRun:
    """A finished run directory, opened: ``config``, ``history``, ``metrics``, ``model`` and the
    arrays-in, arrays-out methods ``encode``, ``decode`` and ``reconstruct``.

    Open one with :func:`open_run` (or get one from :func:`aelab.train`). The model's weights were
    checked against the SHA-256 its ``run.json`` records; the data is read only when a method first
    needs the scaling's parameters (``minmax``/``standard``, or ``unit`` on data whose source does
    not declare its range).
    """

    def __init__(self, run_dir: Path, model: torch.nn.Module, config: RunConfig, history: dict, metrics: dict,
                 data: DataCache, device: torch.device) -> None:
        self.run_dir = run_dir
        self.model = model
        self.config = config
        self.history = history
        self.metrics = metrics
        self.device = device
        self._data = data
        self._scaler: Optional[Scaler] = None

    def __repr__(self) -> str:
        return f"TrainedRun({str(self.run_dir)!r}, {self.config.name!r}, {len(self.history['loss'])} epochs)"

    # -- rich display (a notebook shows a run by itself) ---------------------------------------
    def _repr_html_(self) -> str:
        """The run as a notebook shows it: its name, family, data and key numbers (final losses, each
        loss term, the test-set diagnostics, the family's own), the reconstructions and the loss
        curves. Self-contained (:mod:`aelab._display`): figures inline, no script, no network."""
        training, test = self.key_numbers()
        return D.card(self.config.name, self._meta(),
                      '<div class="row">' + D.key_table(training, caption="training")
                      + D.key_table(test, caption="test-set diagnostics") + "</div>",
                      D.figure(self.recon_png(), f"{self.config.name}: test images and their reconstructions",
                               "top: test images; below: their reconstructions (the seed's compare_digits)"),
                      D.figure(self.curves_png(), f"{self.config.name}: loss per epoch",
                               "loss per epoch: train solid, validation dashed"))

    def _repr_png_(self) -> Optional[bytes]:
        """The run's reconstruction figure (test images above their reconstructions), as PNG bytes."""
        return self.recon_png()

    def recon_png(self) -> Optional[bytes]:
        """The reconstruction figure: the run's ``recon.png`` as training wrote it, or drawn again from
        its ``samples.npz`` (None when neither is there)."""
        path = self.run_dir / "recon.png"
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            if data.startswith(D.PNG_SIGNATURE):
                return data
        with contextlib.suppress(AelabError, OSError, KeyError, ValueError):
            arrays = read_samples(self.run_dir / "samples.npz", "retrain the run to redraw its reconstructions")
            return plots.recon_grid([("original", arrays["original"]), ("reconstruction", arrays["recon"])],
                                    n=len(arrays["original"]), shape=self.sample_shape)
        return None

    def curves_png(self) -> bytes:
        """Train (solid) and validation (dashed) loss per epoch and, when the family adds terms to the
        loss (a KL, a penalty), those terms in a panel of their own, as PNG bytes."""
        fam = family_of(self.config.model)
        terms = [k for k, v in (self.history.get("terms") or {}).items()
                 if k != "reconstruction" and any(isinstance(x, (int, float)) and x != 0 for x in v)]
        return plots.loss_curves({"history": self.history}, {}, (self.config.name, ""), terms=terms,
                                 term_names={k: fam.term_label(k) for k in terms},
                                 terms_title=f"{', '.join(fam.term_label(k) for k in terms)} (in the loss)" if terms else None)

    def _record(self) -> dict:
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads((self.run_dir / "run.json").read_text(encoding="utf-8"))
            if isinstance(rec, dict):
                return rec
        return {}

    def _meta(self) -> str:
        cfg, rec = self.config, self._record()
        fam = family_of(cfg.model)
        src = rec.get("data_source") if isinstance(rec.get("data_source"), dict) else {}
        n_train = rec.get("n_train")
        data = f"data {cfg.data.dataset} ({'×'.join(map(str, self.sample_shape))}"
        data += f", {n_train:,} training samples)" if isinstance(n_train, int) else ")"
        if src.get("source"):
            data += f" from {src['source']}"
        arch = " → ".join(_layer_text(layer) for part in ("encoder", "decoder")
                          for layer in (getattr(cfg.model, part, None) or ()))
        epochs = len(self.history.get("loss") or [])
        return (f"family {cfg.model.family} ({fam.label})" + (f": {arch}" if arch else "")
                + f" · {data} · {epochs} epochs, batch {cfg.train.batch_size} · {self.run_dir}")

    def key_numbers(self) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        """The run's key numbers as (label, value) pairs, those of training and those of the test set
        (``metrics.json``: reconstruction, code, latent and the family's own diagnostics); a value is
        None where the run does not have it."""
        h, m = self.history, self.metrics
        fam = family_of(self.config.model)

        def last(values: Any) -> Any:
            return values[-1] if isinstance(values, list) and values else None

        train: list[tuple[str, Any]] = [("final loss (train)", last(h.get("loss"))),
                                        ("final loss (validation)", last(h.get("val_loss")))]
        for k, v in (h.get("val_terms") or {}).items():
            if k != "reconstruction" or len(h.get("val_terms") or {}) > 1:
                train.append((f"{fam.term_label(k)} (validation, final)", last(v)))
        secs = h.get("epoch_seconds")
        train.append(("training time (s)", float(sum(secs)) if isinstance(secs, list) and secs else None))
        code = m.get("code") if isinstance(m.get("code"), dict) else {}
        lat = m.get("latent") if isinstance(m.get("latent"), dict) else {}
        test: list[tuple[str, Any]] = [
            ("test BCE per pixel", m.get("bce")), ("test MSE", m.get("mse")), ("PSNR (dB)", m.get("psnr")),
            ("SSIM", m.get("ssim")), ("reconstruction diversity", m.get("diversity")),
            ("dead code units", f"{code['dead_units']} of {code['units']}" if "units" in code else None),
            ("linear-probe accuracy of the code", lat.get("probe_accuracy")),
            ("5-NN accuracy of the code", lat.get("knn_accuracy")),
            ("k-means ARI / NMI", f"{N.fmt_num(lat['ari'], 3)} / {N.fmt_num(lat['nmi'], 3)}" if "ari" in lat else None),
        ]
        anomaly = lat.get("anomaly") if isinstance(lat.get("anomaly"), dict) else {}
        test.append(("anomaly ROC-AUC (held-out classes)", anomaly.get("auc")))
        noisy = m.get("noisy") if isinstance(m.get("noisy"), dict) else {}
        test.append(("PSNR on noisy inputs (dB)", noisy.get("psnr")))
        for k, v in (m.get("family") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                test.append((fam.diagnostic_label(k), v))
        return train, test

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample, as the data gives it: (C, H, W) for images, (D,) for a table."""
        return tuple(int(d) for d in self.config.model.input_shape)

    @property
    def dataset(self) -> Dataset:
        """The run's data as read (``aelab.data.load`` of its ``config.data``; limits applied, unscaled)."""
        return self._data.dataset(self.config.data)

    @property
    def scaler(self) -> Scaler:
        """The run's own scaling, fitted on its training split (the samples it trained on: without
        ``data.exclude_labels``) as ``data.scaling`` says; with ``data.scaler_fit = "per_split"`` too,
        an array given here is scaled with the training split's parameters."""
        if self._scaler is None:
            d = self.config.data
            src = SOURCES.get(d.dataset)
            if d.scaling == "unit" and src is not None and src.value_range is not None:
                self._scaler = Scaler("unit", src.value_range[1])  # known without reading the data
                return self._scaler
            ds = self.dataset
            x = ds.x_train
            if d.exclude_labels and ds.y_train is not None:
                x = x[~np.isin(ds.y_train, np.asarray(d.exclude_labels))]
            unit = ds.value_range[1] if ds.value_range else None
            self._scaler = Scaler.fit(d.scaling, x, unit)
        return self._scaler

    # -- arrays in, arrays out -----------------------------------------------------------------
    def _inputs(self, x: Any) -> torch.Tensor:
        x = np.asarray(x)
        shape, d = self.sample_shape, math.prod(self.sample_shape)
        if x.ndim < 1 or (tuple(x.shape[1:]) != shape and tuple(x.shape[1:]) != (d,)):
            raise DataError(f"{self.config.name}: expected samples of shape {shape} (or flat {d}) along a first "
                            f"axis, got an array of shape {tuple(x.shape)}; give (N, {', '.join(map(str, shape))})")
        return torch.from_numpy(np.ascontiguousarray(self.scaler.apply(x))).to(self.device)

    def _outputs(self, scaled: torch.Tensor) -> np.ndarray:
        flat = self.scaler.invert(scaled.detach().float().cpu().numpy())
        return flat.reshape(len(flat), *self.sample_shape)

    @property
    def conditional(self) -> bool:
        """Whether the model is conditioned on class labels (a conditional VAE): then :meth:`encode`,
        :meth:`decode` and :meth:`reconstruct` need ``labels=``, one integer class per sample."""
        return bool(family_of(self.config.model).conditional)

    def _labels(self, labels: Any, n: int, what: str) -> dict[str, torch.Tensor]:
        """``{"labels": (n,) int64}`` for a conditional model, ``{}`` for any other; one line when they
        are missing, given to a model that takes none, or not one class in 0 … classes − 1 per sample."""
        name = self.config.name
        if not self.conditional:
            if labels is not None:
                raise ConfigError(f"{name}: a {family_of(self.config.model).label} takes no labels; call {what}() "
                                  "without labels=")
            return {}
        k = int(getattr(self.config.model, "classes", 0))
        if labels is None:
            raise ConfigError(f"{name} is a conditional VAE: {what}() needs labels=, one class in 0 … {k - 1} per "
                              "sample (the data's y_train / y_test)")
        y = np.asarray(labels)
        if y.ndim == 0:  # one class for every sample
            y = np.full(n, y)
        if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{name}: labels= must be {n} integer classes (one per sample), got an array of "
                            f"shape {tuple(y.shape)} and type {y.dtype}")
        if n and (int(y.min()) < 0 or int(y.max()) >= k):
            raise DataError(f"{name}: labels= must lie in 0 … {k - 1} (the model's classes), got {int(y.min())} … "
                            f"{int(y.max())}")
        return {"labels": torch.from_numpy(y.astype(np.int64)).to(self.device)}

    @staticmethod
    def _rows(labels: dict[str, torch.Tensor], s: int) -> dict[str, torch.Tensor]:
        return {k: v[s:s + BATCH] for k, v in labels.items()}

    def encode(self, x: Any, labels: Any = None) -> np.ndarray:
        """Codes of samples ``x`` ``(N, *sample_shape)`` in the data's range → float32 ``(N, K)``
        (the code flattened; a VAE's posterior mean μ). ``labels``: for a conditional VAE (required
        there, refused elsewhere), each sample's class — ``(N,)`` integers, or one integer for all."""
        t = self._inputs(x)
        lab = self._labels(labels, len(t), "encode")
        with torch.no_grad():
            out = [self.model.encode(t[s:s + BATCH], **self._rows(lab, s)).reshape(len(t[s:s + BATCH]), -1)
                   for s in range(0, len(t), BATCH)]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros((0, 0), np.float32)

    def decode(self, z: Any, labels: Any = None) -> np.ndarray:
        """Samples decoded from codes ``z`` ``(M, K)`` → float32 ``(M, *sample_shape)`` in the data's range.
        ``labels``: for a conditional VAE (required there), the class to draw each code as — ``(M,)``
        integers, or one integer for all (the same code decoded with another label: the same style
        as another class)."""
        t = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(self.device)
        if t.ndim != 2:
            raise DataError(f"{self.config.name}: expected codes of shape (M, K), got an array of shape {tuple(t.shape)}")
        lab = self._labels(labels, len(t), "decode")
        with torch.no_grad():
            out = [self.model.decode(t[s:s + BATCH], **self._rows(lab, s)).reshape(len(t[s:s + BATCH]), -1)
                   for s in range(0, len(t), BATCH)]
        return self._outputs(torch.cat(out) if out else t.new_zeros((0, math.prod(self.sample_shape))))

    def reconstruct(self, x: Any, labels: Any = None) -> np.ndarray:
        """The model's reconstructions of samples ``x`` ``(N, *sample_shape)``, in the data's range and
        shape (float32). Deterministic: a VAE decodes its posterior mean, nothing is sampled.
        ``labels``: as :meth:`encode`'s (a conditional VAE's samples' classes)."""
        t = self._inputs(x)
        lab = self._labels(labels, len(t), "reconstruct")
        with torch.no_grad():
            out = [self.model(t[s:s + BATCH], **self._rows(lab, s)).recon for s in range(0, len(t), BATCH)]
        return self._outputs(torch.cat(out) if out else t)


def _layer_text(layer: Any) -> str:
    """A layer as a person reads it in one line: ``32:relu`` for a dense layer, else its kind
    (with its filters for a convolution)."""
    kind = getattr(layer, "kind", type(layer).__name__)
    if kind == "dense":
        return str(layer)
    filters = getattr(layer, "filters", None)
    return f"{kind} {filters}" if filters else str(kind)


def _cache(data: "DataCache | DataOptions | None") -> DataCache:
    if isinstance(data, DataCache):
        return data
    return DataCache(data or DataOptions(progress=False))


def _given_modules(modules: Any) -> tuple[Any, Any]:
    if not (isinstance(modules, (tuple, list)) and len(modules) == 2):
        raise ConfigError("modules: give your encoder and decoder as a pair, modules=(encoder, decoder)")
    return modules[0], modules[1]


def check_run_modules(run_dir: Path, modules: Any) -> None:
    """Before a run of your own modules is read: make its family known and its modules this process's,
    checking that they are the run's (their classes and parameter shapes); one line when they are
    missing or other ones."""
    try:
        model = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("model") or {}
    except (OSError, ValueError, AttributeError):
        return  # read_config says what is wrong with the file
    if not isinstance(model, dict) or model.get("family") not in CUSTOM_FAMILIES:
        if modules is not None:
            raise ConfigError(f"modules: {run_dir} is a run of the {model.get('family')!r} family, which builds "
                              "its model from its config; open it without modules=")
        return
    if modules is None:
        raise ConfigError(f"{run_dir}: " + custom.missing_modules_line(str(model.get("encoder_class")),
                                                                       str(model.get("decoder_class"))))
    encoder, decoder = _given_modules(modules)
    key = custom.use_modules(encoder, decoder)
    if key != model.get("modules"):
        raise ConfigError(f"modules: these are not the modules {run_dir} was trained with (theirs: "
                          f"{model.get('encoder_class')}, {model.get('decoder_class')}; the classes or the "
                          f"parameter shapes differ: given {custom.class_name(encoder)}, {custom.class_name(decoder)})")


def open_run(run_dir: str | Path, *, data: "DataCache | DataOptions | None" = None,
             device: str | torch.device = "cpu", modules: Any = None) -> TrainedRun:
    """Open a finished run directory (written by ``aelab train``, a study, a sweep or :func:`train`).

    ``data``: where the run's data comes from when the scaling needs it (:class:`~aelab.data.DataOptions`,
    or a :class:`~aelab.data.DataCache` to share one already read). A directory that is not a
    finished run, or whose weights or files do not verify, is one :class:`~aelab.errors.AelabError` line.
    ``modules``: ``(encoder, decoder)`` for a run of your own modules (:mod:`aelab.models.custom`),
    which a run cannot keep; modules of other classes or shapes are refused.
    """
    run_dir = Path(run_dir)
    check_run_modules(run_dir, modules)
    if run_dir.is_dir() and (run_dir / "config.json").is_file() and not is_done(run_dir):
        raise AelabError(f"{run_dir} is not a finished run (no DONE mark): resume it (aelab train --resume "
                         f"{run_dir}) or train it again")
    model, cfg = load_model(run_dir, device)
    fix = retrain_fix(run_dir)
    history = read_dict(HistoryFile, run_dir / "history.json", fix)
    metrics = read_dict(MetricsFile, run_dir / "metrics.json", fix)
    return TrainedRun(run_dir, model, cfg, history, metrics, _cache(data), torch.device(device))


def train(cfg: RunConfig, run_dir: str | Path, *, on_event: Optional[OnEvent] = None, stop: Optional[Stop] = None,
          data: "DataCache | DataOptions | None" = None, device: str = "auto", engine: str = "auto",
          progress: bool = False, resume: bool = True, overwrite: bool = False, figures: bool = True,
          modules: Any = None) -> TrainedRun:
    """Train one config into ``run_dir`` and open the finished run (:func:`open_run`).

    ``cfg`` trains as given: fit its shapes to its data first with :func:`aelab.fit_config` when its
    model was written for another data set (the CLI does that for its flags). A finished run of the
    same config in ``run_dir`` is reused, an interrupted one resumes; a directory holding another
    run is refused unless ``overwrite``. ``on_event``: called with each training event
    (:mod:`aelab.runs.events`: run started, epoch ended, finishing, finished, progress).
    ``stop``: an :class:`aelab.runs.Stop`; ``stop.set()`` (from a callback or another thread)
    checkpoints the run as Ctrl-C does and raises :class:`~aelab.runs.Interrupted`; the same call
    again resumes it. ``progress``: the training loop's own output on stderr. ``figures``: False
    skips drawing recon.png while finishing (``TrainedRun.recon_png()`` draws it when asked).
    ``modules``: ``(encoder, decoder)``, your own ``torch.nn.Module`` instances, for a config of the
    ``custom`` or ``custom_vae`` family (:mod:`aelab.models.custom`): trained from their weights as
    given, in this process; the config records their classes and fingerprint.
    """
    cache = _cache(data)
    if modules is not None:
        if not isinstance(cfg.model, custom.Config):
            raise ConfigError(f"modules: a config of the {cfg.model.family!r} family builds its own model; set "
                              "model.family to 'custom' or 'custom_vae' to train your modules")
        encoder, decoder = _given_modules(modules)
        cfg = cfg.model_copy(update={"model": custom.fit_modules(cfg.model, encoder, decoder)})
    elif isinstance(cfg.model, custom.Config) and cfg.model.modules not in custom.PAIRS:
        raise ConfigError(custom.missing_modules_line(cfg.model.encoder_class, cfg.model.decoder_class))
    opts = TrainOptions(device=device, engine=engine, progress=progress, resume=resume, overwrite=overwrite,
                        figures=figures)
    train_runs([cfg], [Path(run_dir)], data=cache, on_event=on_event, stop=stop, options=opts)
    return open_run(run_dir, data=cache, modules=modules)


__all__ = ["Scaler", "TrainedRun", "check_run_modules", "open_run", "train"]

