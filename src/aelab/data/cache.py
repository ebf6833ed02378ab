"""The per-process data cache: each data set read once, each scaled split once per device.

:class:`DataOptions` say where the IDX sets' files come from (not part of a run's identity);
:class:`DataCache` turns a :class:`~aelab.config.DataConfig` into what training needs — float32
``(N, D)`` tensors on a device — and checks, before anything is written, that a run can train on
its data (batch size, the model's input shape, the loss's value range, the labels it excludes).

Every cache key is the *whole* data config (its JSON) plus, for a path data set, the SHA-256 of
its content (:func:`aelab.data.registry.fingerprint`): no hand-listed fields, so two folders,
or one folder before and after an image changed, never share tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .config import DataConfig
from .dataset import Dataset
from .prepare import TrainData, binarize_fixed, scale
from .ranges import RunConfig, warn_unreachable
from .registry import fingerprint, load
from .source import DataOptions

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: Data fields each run applies on its own on top of the shared clean tensors (see ``TrainData``):
#: runs that differ only in these share tensors, and may train side by side.
PER_RUN_FIELDS = frozenset({"noise_factor", "noise_mode", "validate_on"})


_UNSET = object()


def data_key(cfg: DataConfig, content: Any = _UNSET) -> tuple:
    """What identifies the clean tensors a data config yields: every field but :data:`PER_RUN_FIELDS`
    (so a field added later counts at once), and the content of a path data set (``content``: its
    fingerprint when known already, else taken now)."""
    return (cfg.model_dump_json(exclude=set(PER_RUN_FIELDS)), fingerprint(cfg) if content is _UNSET else content)


def _read_key(cfg: DataConfig, content: Any) -> tuple:
    """What identifies the data as read (before scaling, noise and label exclusion)."""
    return (cfg.model_dump_json(include={"dataset", "limit", "test_limit", "source"}), content)


class DataCache:
    """Loads each data set once per process and each scaled split once per device."""

    def __init__(self, opts: DataOptions | None = None) -> None:
        self.opts = opts or DataOptions()
        self._sets: dict = {}
        self._tensors: dict = {}
        self._contents: dict = {}

    def content(self, cfg: DataConfig) -> str | None:
        """The fingerprint of ``cfg``'s data, taken once per cache (a folder of images is listed and
        its files stat'ed once, not at every lookup): a cache lives for one training call, and what
        it holds was read under this fingerprint."""
        if cfg.dataset not in self._contents:
            self._contents[cfg.dataset] = fingerprint(cfg)
        return self._contents[cfg.dataset]

    # -- the data as read ----------------------------------------------------------------------
    def dataset(self, cfg: DataConfig) -> Dataset:
        """The :class:`~aelab.data.registry.Dataset` of ``cfg`` (limits applied; whole, unscaled)."""
        key = _read_key(cfg, self.content(cfg))
        if key not in self._sets:
            self._sets[key] = load(cfg, self.opts)
        return self._sets[key]

    def raw(self, cfg_or_name, limit: int | None = None, test_limit: int | None = None):
        """``(x_train, y_train, x_test, y_test, provenance)`` as read (the tuple callers of old use);
        a data config, or a registered name with its limits."""
        if isinstance(cfg_or_name, str):
            cfg_or_name = DataConfig(dataset=cfg_or_name, limit=limit, test_limit=test_limit)
        ds = self.dataset(cfg_or_name)
        return ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.provenance

    def provenance(self, cfg: DataConfig) -> dict:
        """Where a DataConfig's samples came from: data set, source and the exact files or their hashes."""
        return self.dataset(cfg).provenance

    def _kept(self, cfg: DataConfig, y: np.ndarray | None) -> np.ndarray | None:
        """Indices of the samples whose labels ``cfg.exclude_labels`` does not name (None: keep all)."""
        if not cfg.exclude_labels or y is None:
            return None
        return np.flatnonzero(~np.isin(y, np.asarray(cfg.exclude_labels)))

    def labels(self, cfg: DataConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(train labels, test labels) in the order of :meth:`tensors` (train without the excluded
        labels, test whole); None where the data set has none."""
        ds = self.dataset(cfg)
        keep = self._kept(cfg, ds.y_train)
        ytr = ds.y_train if keep is None else ds.y_train[keep]
        return ytr, ds.y_test

    # -- checks --------------------------------------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        """Load a run's data and check that the run can train on it; raise before anything is written."""
        d = cfg.data
        ds = self.dataset(d)
        _check_labels(d, ds)
        keep = self._kept(d, ds.y_train)
        n_train = len(ds.x_train) if keep is None else len(keep)
        if cfg.train.batch_size > n_train:
            raise ConfigError(f"train.batch_size {cfg.train.batch_size} is larger than the training set "
                              f"({n_train} samples); lower it (the seed uses 64)")
        if len(ds.x_test) == 0:
            raise ConfigError("the test split is empty; raise data.test_limit")
        if tuple(cfg.model.input_shape) != ds.sample_shape:
            raise ConfigError(f"model.input_shape {list(cfg.model.input_shape)} does not match the samples of "
                              f"{d.dataset} {list(ds.sample_shape)}; build the run with aelab.data.fit_config(cfg) "
                              "(the CLI and the study runner do), or set model.input_shape to the data's shape")
        lo, hi = self._scaled_range(d)
        if cfg.train.loss in ("bce", "torch_bce") and (lo < 0.0 or hi > 1.0):
            raise ConfigError(f"train.loss {cfg.train.loss} needs inputs in [0, 1], but {d.dataset} scaled with "
                              f"'{d.scaling}' spans [{lo:.4g}, {hi:.4g}]; use --loss mse (train.loss = \"mse\"), or "
                              "--scaling minmax")
        if d.noise_factor > 0 and (lo < 0.0 or hi > 1.0):
            raise ConfigError(f"data.noise_factor clips noisy inputs to [0, 1], but {d.dataset} scaled with "
                              f"'{d.scaling}' spans [{lo:.4g}, {hi:.4g}]; use --scaling minmax or unit, or no noise")
        warn_unreachable(cfg, lo, hi)  # a last layer that cannot reach the data: one line, not an error

    def _scaled_range(self, cfg: DataConfig) -> tuple[float, float]:
        """The training split's value range after scaling, computed only where it is not known: min–max
        maps onto [0, 1] by construction, and so does ``unit`` for data that declares its range."""
        ds = self.dataset(cfg)
        if cfg.scaling == "minmax" or (cfg.scaling == "unit" and ds.value_range is not None):
            return 0.0, 1.0
        if cfg.scaling == "unit":
            return float(ds.x_train.min()), float(ds.x_train.max())
        ftr, _ = self._scaled(cfg)
        return float(ftr.min()), float(ftr.max())

    # -- what training reads ---------------------------------------------------------------------
    def _scaled(self, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
        """Both splits scaled and flattened, float32 ``(N, D)`` (training split without the excluded labels)."""
        key = ("scaled",) + data_key(cfg, self.content(cfg))
        if key not in self._tensors:
            ds = self.dataset(cfg)
            keep = self._kept(cfg, ds.y_train)
            xtr = ds.x_train if keep is None else ds.x_train[keep]
            unit = ds.value_range[1] if ds.value_range else None
            self._tensors[key] = scale(xtr, ds.x_test, method=cfg.scaling, fit=cfg.scaler_fit, unit_max=unit)
        return self._tensors[key]

    def tensors(self, cfg: DataConfig, device: torch.device):
        """(x_train, x_test, y_test) for a DataConfig: float32 (N, D) on ``device``; shared objects.

        The training split leaves out ``cfg.exclude_labels``; the test split is whole."""
        import torch  # deferred: torch is heavy; `aelab data info` reads the cache's data without it

        key = data_key(cfg, self.content(cfg)) + (str(device),)
        if key not in self._tensors:
            ftr, fte = self._scaled(cfg)
            if cfg.binarize != "none":
                _check_unit_range(cfg, ftr, fte)
            xtr = torch.from_numpy(np.ascontiguousarray(ftr.reshape(len(ftr), -1)))
            xte = torch.from_numpy(np.ascontiguousarray(fte.reshape(len(fte), -1)))
            # binarised on the CPU, then moved: the same bits on any device. The test split once from a
            # fixed stream (every run's the same); the training split too unless it is drawn per epoch.
            xte = binarize_fixed(xte, cfg.binarize, "test")
            if cfg.binarize != "dynamic":
                xtr = binarize_fixed(xtr, cfg.binarize, "train")
            self._tensors[key] = (xtr.to(device), xte.to(device), self.dataset(cfg).y_test)
        return self._tensors[key]

    def train_data(self, cfg: RunConfig, device: torch.device) -> TrainData:
        """What the training loop reads: the training split, and the validation split (the test split
        without ``data.exclude_labels``: validation measures the classes trained on)."""
        import torch  # deferred: as in tensors()

        xtr, xte, yte = self.tensors(cfg.data, device)
        d = cfg.data
        keep = self._kept(d, yte)
        if keep is not None:
            key = data_key(d, self.content(d)) + (str(device), "val")
            if key not in self._tensors:
                self._tensors[key] = xte[torch.from_numpy(keep).to(xte.device)]
            xte = self._tensors[key]
        return TrainData(xtr, xte, noise_factor=d.noise_factor, noise_mode=d.noise_mode,
                         validate_on=d.validate_on, seed=cfg.train.seed, binarize=d.binarize)


def _check_unit_range(cfg: DataConfig, *splits: np.ndarray) -> None:
    """Binarising reads values as probabilities: refuse data scaled outside [0, 1]."""
    for x in splits:
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ConfigError(f"data.binarize {cfg.binarize} needs values in [0, 1], but {cfg.dataset} scaled by "
                              f"unit lies in [{float(x.min()):g}, {float(x.max()):g}]; binarize image data, or "
                              "set binarize = \"none\"")


def _check_labels(cfg: DataConfig, ds: Dataset) -> None:
    if not cfg.exclude_labels:
        return
    if ds.y_train is None:
        raise ConfigError(f"data.exclude_labels needs labels, but {cfg.dataset} has none (give a folder class "
                          "sub-folders, a CSV --label-column, or an .npz y); drop exclude_labels")
    present = set(np.unique(ds.y_train).tolist()) | (set(np.unique(ds.y_test).tolist()) if ds.y_test is not None else set())
    missing = [lab for lab in cfg.exclude_labels if lab not in present]
    if missing:
        raise ConfigError(f"data.exclude_labels: label {missing[0]} does not occur in {cfg.dataset} (its labels: "
                          f"{_ranges(sorted(present))}); exclude labels that exist")
    if len(set(present) - set(cfg.exclude_labels)) == 0 or not (~np.isin(ds.y_train, cfg.exclude_labels)).any():
        raise ConfigError(f"data.exclude_labels {list(cfg.exclude_labels)} leaves no training samples in "
                          f"{cfg.dataset}; exclude fewer labels")


def _ranges(values: list[int]) -> str:
    if len(values) > 12:
        return f"{values[0]}…{values[-1]}"
    return ", ".join(str(v) for v in values)


__all__ = ["DataCache", "DataOptions", "data_key"]
