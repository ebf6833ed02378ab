"""Experiment trackers (``--track tensorboard|mlflow``): event consumers, nothing imported unless asked.

A tracker is a callable taking aelab's training events (:mod:`aelab.runs.events`) with a
``close()``, usable as a context manager; pass it as ``on_event``::

    import aelab
    with aelab.track.mlflow() as tracker:                 # sqlite:///mlruns/mlflow.db
        aelab.train(cfg, "runs/digits", on_event=tracker)
    with aelab.track.tensorboard("tb-logs") as tracker:   # tensorboard --logdir tb-logs
        aelab.run_study(study, out, on_event=tracker)

Importing this package imports neither TensorBoard nor MLflow (nor PyTorch): each is imported when
its tracker is made, and a missing one is one line naming ``pip install 'aelab[track]'``. What
each writes: :mod:`aelab.track.tensorboard_tracker`, :mod:`aelab.track.mlflow_tracker`; what they
share (grouping, reading the run back): :mod:`aelab.track.base`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import ConfigError

#: the trackers ``--track`` takes
TRACKERS = ("tensorboard", "mlflow")

__all__ = ["TRACKERS", "tensorboard", "mlflow", "open_tracker"]


def tensorboard(log_dir: str | Path = "tb-logs", **kw):
    """A TensorBoard tracker writing into ``log_dir`` (:class:`~aelab.track.tensorboard_tracker.TensorBoardTracker`:
    scalars per epoch, hparams, figures, text, and an Embedding Projector folder per run)."""
    from .tensorboard_tracker import TensorBoardTracker  # deferred: PyTorch and TensorBoard, only when asked

    return TensorBoardTracker(log_dir, **kw)


def mlflow(tracking_uri: Optional[str] = None, experiment: Optional[str] = None, **kw):
    """An MLflow tracker (:class:`~aelab.track.mlflow_tracker.MlflowTracker`): ``tracking_uri``, else
    ``$MLFLOW_TRACKING_URI``, else a SQLite store ``sqlite:///mlruns/mlflow.db`` (``dir=`` moves it)."""
    from .mlflow_tracker import MlflowTracker  # deferred: MLflow takes seconds to import, only when asked

    return MlflowTracker(tracking_uri, experiment, **kw)


def open_tracker(kind: str, *, dir: Optional[str] = None, uri: Optional[str] = None, **kw):
    """The tracker ``--track KIND`` names, with ``--track-dir`` (TensorBoard's log directory, or where
    MLflow's default SQLite store lives) and ``--track-uri`` (MLflow's tracking URI)."""
    if kind == "tensorboard":
        if uri:
            raise ConfigError("--track-uri is MLflow's tracking URI; for TensorBoard give --track-dir DIR")
        return tensorboard(dir or "tb-logs", **kw)
    if kind == "mlflow":
        return mlflow(uri, dir=dir or "mlruns", **kw)
    raise ConfigError(f"--track {kind}: unknown tracker; choose one of {', '.join(TRACKERS)}")
