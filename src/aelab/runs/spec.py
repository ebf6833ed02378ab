"""A run's identity: its config, its directory, its fingerprint and its data key, computed once.

:class:`RunSpec` is what travels through the whole trip of a run — validation, the run
directory's state, grouping, the worker process or Ray task, every checkpoint, the finishing
work — so the config hash (which for an image folder lists and stats every file, and for
starting weights reads their bytes) is computed once per run and call of ``train_runs``, when
the spec is made. A spec sent to another process carries its fingerprint with it (``__reduce__``):
the receiver rebuilds the config from its dict and does not hash again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..config import RunConfig, config_hash
from ..data.cache import DataCache, data_key
from ..engine.steppers import ModelSpec
from ..streams import STREAM_INIT, derived_seed


def spec_of(cfg: RunConfig) -> ModelSpec:
    """The engine's view of a run's model: its config, loss, initialisation seed and run seed."""
    return ModelSpec(cfg.model, cfg.train.loss, derived_seed(cfg.train.seed, STREAM_INIT), cfg.train.seed,
                     optimizer=cfg.train.optimizer)


@dataclass(frozen=True)
class RunSpec:
    """One run of a ``train_runs`` call.

    ``config``: the validated run config. ``run_dir``: where this process writes the run (a Ray
    task without a shared filesystem writes into a scratch copy, see :meth:`moved`).
    ``fingerprint``: :func:`aelab.config.config_hash` of the config (what config.json, run.json,
    the mark and every checkpoint record). ``data_key``: what identifies the clean tensors the
    config trains on (runs with equal keys may share them). ``index``: the run's position among
    the configs given to ``train_runs``; events carry it, so the caller can tell runs apart even
    when they share a name.
    """

    config: RunConfig
    run_dir: Path
    fingerprint: str
    data_key: tuple
    index: int = 0

    @classmethod
    def of(cls, cfg: RunConfig, run_dir: str | Path, index: int = 0, data: DataCache | None = None) -> "RunSpec":
        """The spec of ``cfg`` trained into ``run_dir``: the one place a run's fingerprint is computed
        (with its data's content fingerprint, which for a folder of images lists every file, taken
        once for both the config hash and the data key — and, given the ``data`` cache the run
        reads, the same one the cache keys its arrays by)."""
        # (the clean data's settings, the data's fingerprint)
        key = data_key(cfg.data) if data is None else data_key(cfg.data, data.content(cfg.data))
        return cls(cfg, Path(run_dir), config_hash(cfg, fingerprint=key[-1]), key, index)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model_spec(self) -> ModelSpec:
        return spec_of(self.config)

    def moved(self, run_dir: Path) -> "RunSpec":
        """The same run written into another directory (a Ray task's scratch copy)."""
        return replace(self, run_dir=Path(run_dir))

    def __reduce__(self):
        # to another process: the config as its dict (the form config.json holds), the fingerprint kept
        return (_rebuild, (self.config.to_dict(), str(self.run_dir), self.fingerprint, self.data_key, self.index))


def _rebuild(cfg: dict, run_dir: str, fingerprint: str, key: tuple, index: int) -> RunSpec:
    return RunSpec(RunConfig.from_dict(cfg), Path(run_dir), fingerprint, key, index)
