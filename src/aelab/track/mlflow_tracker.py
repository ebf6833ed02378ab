"""``aelab.track.mlflow(tracking_uri=None, experiment=None)``: MLflow runs, a local SQLite store by default.

One MLflow run per aelab run, in one experiment (``aelab`` by default, or
``$MLFLOW_EXPERIMENT_NAME``); the runs of a study or sweep are children of one parent run named
after its output directory (``mlflow.parentRunId``, as MLflow's UI nests them). Each run holds:

* parameters: the flattened config (``model.encoder``, ``train.lr`` …, as dotted keys) and its hash;
* metrics per epoch, with the epoch as step: ``train/<term>``, ``val/<term>`` (every loss term of
  :class:`~aelab.runs.events.EpochEnded`), ``time/epoch_seconds``, ``time/images_per_second``;
  at the last epoch ``diagnostics/<path>`` for each number of ``metrics.json``;
* tags: ``aelab.data_sha256`` (the data's fingerprint), ``aelab.data``, ``aelab.seed``,
  ``aelab.version``, ``aelab.config_hash``, ``aelab.run_dir``, ``aelab.call`` (one id per tracker);
* artifacts: ``config.json``, ``history.json``, ``metrics.json``, ``run.json``, ``summary.md``,
  ``figures/recon.png``, ``figures/latent_map.png`` (and ``aelab latent``'s figures when present);
  the parent run: the study's ``report.html``, ``report.md``, ``results.json`` and ``figures/``.

The store: ``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<dir>/mlflow.db`` with
artifacts in ``<dir>/artifacts`` (``dir`` = ``mlruns``) — SQLite, since MLflow's file store is
deprecated. See it with ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Optional

from .._atomic import check_out_path
from .base import (EventTracker, Group, RunFiles, Tracked, TrackerError, code_images, diagnostics, flat_config,
                   latent_map_png, missing)

#: MLflow's limits on one log_batch call
_MAX_PARAMS, _MAX_METRICS = 100, 1000


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class MlflowTracker(EventTracker):
    """Logs each run into an MLflow tracking store (see the module docstring). ``experiment``: the
    experiment's name; ``dir``: where the default SQLite store and its artifacts live. Other
    keywords: :class:`~aelab.track.base.EventTracker`."""

    kind = "mlflow"

    def __init__(self, tracking_uri: Optional[str] = None, experiment: Optional[str] = None, *,
                 dir: str | Path = "mlruns", group: Optional[str] = None, output: Optional[Path] = None,
                 data=None, strict: bool = False) -> None:
        try:
            from mlflow.entities import Metric, Param, RunTag  # deferred: mlflow is optional (aelab[track]) and slow to import
            from mlflow.tracking import MlflowClient  # deferred: mlflow is optional (aelab[track])
        except ImportError as err:
            raise missing("mlflow", err) from None
        self._Metric, self._Param, self._Tag = Metric, Param, RunTag
        artifacts = None
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            d = check_out_path(Path(dir), "--track-dir").resolve()
            if d.exists() and not d.is_dir():
                raise TrackerError(f"--track-dir {d} is a file; give a directory for the MLflow store")
            d.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{d / 'mlflow.db'}"
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the working directory
            artifacts = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
        self.tracking_uri = uri
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "aelab"
        try:
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                self.experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
            elif exp.lifecycle_stage != "active":
                raise TrackerError(f"MLflow experiment {name!r} in {uri} is deleted; restore it (mlflow experiments "
                                   "restore) or name another one")
            else:
                self.experiment_id = exp.experiment_id
        except TrackerError:
            raise
        except Exception as err:  # noqa: BLE001 — any failure to open the store is one line, before training
            raise TrackerError(f"cannot open the MLflow tracking store {uri} ({_one_line(err)}); check --track-uri "
                               "or $MLFLOW_TRACKING_URI") from None
        self.experiment = name
        super().__init__(group=group, output=output, data=data, strict=strict)

    def run_id(self, run_dir: str | Path) -> Optional[str]:
        """The MLflow run id this tracker logged the run in ``run_dir`` to (None: not tracked)."""
        t = self._runs.get(str(Path(run_dir).resolve()))
        return None if t is None else t.handle

    # -- runs --------------------------------------------------------------------------------------------
    def _open(self, t: Tracked) -> None:
        tags = {"aelab.call": self.call_id, "aelab.run_dir": str(t.run_dir)}
        if t.group is not None:
            tags.update({"mlflow.parentRunId": t.group.handle, "aelab.group": t.group.name})
        run = self.client.create_run(self.experiment_id, run_name=t.name, tags=tags)
        t.handle = run.info.run_id

    def _epoch(self, t: Tracked, epoch: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._Metric(k, v, now, epoch) for k, v in values.items()]
        for s in range(0, len(metrics), _MAX_METRICS):
            self.client.log_batch(t.handle, metrics=metrics[s:s + _MAX_METRICS], synchronous=True)

    def _final(self, t: Tracked, files: RunFiles) -> None:
        c, rid, h = self.client, t.handle, files.history
        step = int((h.get("epoch") or [len(h["loss"])])[-1])
        params = [self._Param(k, str(v)) for k, v in flat_config(files.config).items()]
        for s in range(0, len(params), _MAX_PARAMS):
            c.log_batch(rid, params=params[s:s + _MAX_PARAMS], synchronous=True)
        now = int(time.time() * 1000)
        diag = [self._Metric(k, v, now, step) for k, v in diagnostics(files.metrics).items()]
        tags = [self._Tag(k, v) for k, v in files.tags().items()]
        for s in range(0, max(len(diag), 1), _MAX_METRICS):
            c.log_batch(rid, metrics=diag[s:s + _MAX_METRICS], tags=tags if s == 0 else [], synchronous=True)
        for name in ("config.json", "history.json", "metrics.json", "run.json"):
            c.log_artifact(rid, str(files.run_dir / name))
        for name, path in files.figures.items():
            sub = "figures" + ("/latent" if name.startswith("latent/") else "")
            c.log_artifact(rid, str(path), sub)
        c.log_text(rid, files.summary_markdown(), "summary.md")
        png = latent_map_png(files, code_images(files, self.data))
        if png is not None:
            with tempfile.TemporaryDirectory(prefix="aelab-track-") as tmp:
                p = Path(tmp) / "latent_map.png"
                p.write_bytes(png)
                c.log_artifact(rid, str(p), "figures")

    def _end(self, t: Tracked, status: str) -> None:
        if t.handle is not None:
            self.client.set_terminated(t.handle, status)

    # -- groups ------------------------------------------------------------------------------------------
    def _open_group(self, g: Group) -> None:
        tags = {"aelab.call": self.call_id, "aelab.group": g.name}
        if g.output is not None:
            tags["aelab.output"] = str(g.output)
        if g.describe:
            tags["mlflow.note.content"] = g.describe
        g.handle = self.client.create_run(self.experiment_id, run_name=g.name, tags=tags).info.run_id

    def _group_report(self, g: Group, results: dict) -> None:
        out = g.output
        if out is None:
            return
        for name in ("report.html", "report.md", "results.json"):
            if (out / name).is_file():
                self.client.log_artifact(g.handle, str(out / name))
        if (out / "figures").is_dir():
            self.client.log_artifacts(g.handle, str(out / "figures"), "figures")

    def _end_group(self, g: Group) -> None:
        done = all(t.finished for t in g.runs)
        self.client.set_terminated(g.handle, "FINISHED" if done else "KILLED")
