"""A finished run as an object: its config, history and metrics, and a model that encodes, decodes
and reconstructs arrays given in the data's own shape and range.

``aelab.open_run(run_dir)`` gives a :class:`TrainedRun`. It takes what ``aelab.data.load`` gives
(``x_test`` of a :class:`~aelab.data.Dataset`: ``(N, *sample_shape)``, uint8 pixels for images)
and applies the run's own scaling before the model sees it, exactly as training did
(:class:`Scaler`, fitted on the run's training split as ``data.scaling``/``data.scaler_fit`` say);
decodings and reconstructions come back in the data's range and shape (float32, the scaling
inverted). So a notebook never scales by hand, and cannot scale differently from training.

What ``encode`` gives is the family's code (``Family.code``): a deterministic code, or the
posterior mean of a VAE; nothing is sampled, so encoding twice gives the same code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..artifacts import HistoryFile, MetricsFile, read_dict, retrain_fix
from ..config import RunConfig
from ..data import SOURCES, DataCache, DataOptions, Dataset
from ..data.prepare import Scaler
from ..errors import AelabError, DataError
from .directory import is_done, load_model
from .events import OnEvent, Stop
from .train import train_runs

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

    def encode(self, x: Any) -> np.ndarray:
        """Codes of samples ``x`` ``(N, *sample_shape)`` in the data's range → float32 ``(N, K)``
        (the code flattened; a VAE's posterior mean μ)."""
        t = self._inputs(x)
        with torch.no_grad():
            out = [self.model.encode(t[s:s + BATCH]).reshape(len(t[s:s + BATCH]), -1) for s in range(0, len(t), BATCH)]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros((0, 0), np.float32)

    def decode(self, z: Any) -> np.ndarray:
        """Samples decoded from codes ``z`` ``(M, K)`` → float32 ``(M, *sample_shape)`` in the data's range."""
        t = torch.as_tensor(np.asarray(z, dtype=np.float32)).to(self.device)
        if t.ndim != 2:
            raise DataError(f"{self.config.name}: expected codes of shape (M, K), got an array of shape {tuple(t.shape)}")
        with torch.no_grad():
            out = [self.model.decode(t[s:s + BATCH]).reshape(len(t[s:s + BATCH]), -1) for s in range(0, len(t), BATCH)]
        return self._outputs(torch.cat(out) if out else t.new_zeros((0, math.prod(self.sample_shape))))

    def reconstruct(self, x: Any) -> np.ndarray:
        """The model's reconstructions of samples ``x`` ``(N, *sample_shape)``, in the data's range and
        shape (float32). Deterministic: a VAE decodes its posterior mean, nothing is sampled."""
        t = self._inputs(x)
        with torch.no_grad():
            out = [self.model(t[s:s + BATCH]).recon for s in range(0, len(t), BATCH)]
        return self._outputs(torch.cat(out) if out else t)


def _cache(data: "DataCache | DataOptions | None") -> DataCache:
    if isinstance(data, DataCache):
        return data
    return DataCache(data or DataOptions(progress=False))


def open_run(run_dir: str | Path, *, data: "DataCache | DataOptions | None" = None,
             device: str | torch.device = "cpu") -> TrainedRun:
    """Open a finished run directory (written by ``aelab train``, a study, a sweep or :func:`train`).

    ``data``: where the run's data comes from when the scaling needs it (:class:`~aelab.data.DataOptions`,
    or a :class:`~aelab.data.DataCache` to share one already read). A directory that is not a
    finished run, or whose weights or files do not verify, is one :class:`~aelab.errors.AelabError` line.
    """
    run_dir = Path(run_dir)
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
          progress: bool = False, resume: bool = True, overwrite: bool = False) -> TrainedRun:
    """Train one config into ``run_dir`` and open the finished run (:func:`open_run`).

    ``cfg`` trains as given: fit its shapes to its data first with :func:`aelab.fit_config` when its
    model was written for another data set (the CLI does that for its flags). A finished run of the
    same config in ``run_dir`` is reused, an interrupted one resumes; a directory holding another
    run is refused unless ``overwrite``. ``on_event``: called with each training event
    (:mod:`aelab.runs.events`: run started, epoch ended, finishing, finished, progress).
    ``stop``: an :class:`aelab.runs.Stop`; ``stop.set()`` (from a callback or another thread)
    checkpoints the run as Ctrl-C does and raises :class:`~aelab.runs.Interrupted`; the same call
    again resumes it. ``progress``: the training loop's own output on stderr.
    """
    cache = _cache(data)
    train_runs([cfg], [Path(run_dir)], device=device, engine=engine, data=cache, progress=progress, resume=resume,
               overwrite=overwrite, on_event=on_event, stop=stop)
    return open_run(run_dir, data=cache)


__all__ = ["Scaler", "TrainedRun", "open_run", "train"]

