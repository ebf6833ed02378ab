"""Training from the page: the form, the background worker, and the progress stream.

The form is checked by the same rules as ``aelab train``'s flags (``aelab.runs.plan.run_config``:
the config's pydantic validation, then the model fitted to the data); each error is shown beside
the field it names. A run trains in a worker thread with :func:`aelab.train` into ``runs/<name>``
of the workspace, its events kept by a :class:`Job`; the page follows them by server-sent events
(``/train/run/<dir>/events``), so a closed tab stops nothing: the thread trains on, and the page
opened again gets the whole history first.

Stop is :meth:`aelab.runs.Stop.set`, exactly Ctrl-C's checkpoint; resume is :func:`aelab.train` on
the same directory (bit for bit, from the CLI too). Pause stops at the end of the current epoch:
the flag is set when the epoch's event arrives, and the loop checks it before each step, so the
checkpoint is taken at batch 0 of the next epoch (no step of it taken); step resumes and pauses
after one more epoch. One writer per run directory: this server refuses a second
job on a directory it trains (aelab's locks are re-entrant within a process), and another process's
lock arrives as its one-line message.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import catalog
from ..errors import AelabError
from .pages import page
from .stream import follow
from .uploads import UploadRefused, Uploads
from .workspace import PathRefused, Workspace, _history

#: the training images a recon row shows
RECON_N = 10
#: the test codes the Train page's map shows each epoch
MAP_N = 300
#: the most of the wall time the per-epoch preview may take (it rests after each draw)
PREVIEW_SHARE = 0.1


# -- the form ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One form field: its config key (dotted; ``code_size`` and ``name`` are the form's own),
    label, kind ("text", "int", "float", "select"), a hint, and the families it applies to."""

    key: str
    label: str
    kind: str
    hint: str = ""
    families: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    group: str = "model"

    @property
    def id(self) -> str:
        return "f-" + self.key.replace(".", "-")


DENSE_FAMILIES = ("ae", "contractive", "kl_sparse", "tied")
FIELDS = (
    Field("name", "Run name", "text", "optional: made from the layers when empty", group="run"),
    Field("model.encoder", "Encoder layers", "text", "SIZE:ACTIVATION, …  e.g. 128:relu,32:relu"),
    Field("code_size", "Code size", "int", "units of the code (the last encoder layer)", DENSE_FAMILIES),
    Field("model.decoder", "Decoder layers", "text", "the last as large as the input: 784 is fitted to the data"),
    Field("model.latent", "Code size (latent)", "int", "dimensions of z", ("vae",)),
    Field("model.activity_l1", "λ  activity L1", "float", "sparsity penalty on the code (0: none)", ("ae",)),
    Field("model.lam", "λ  contractive", "float", "weight of the Jacobian penalty", ("contractive",)),
    Field("model.beta", "β", "float", "weight of the KL term (VAE), of the sparsity (KL-sparse), "
          "of the commitment (VQ-VAE)", ("vae", "kl_sparse", "vqvae")),
    Field("model.rho", "ρ  target activation", "float", "the mean activation sparsity aims at", ("kl_sparse",)),
    Field("model.codebook_size", "Codebook size", "int", "code vectors", ("vqvae",)),
    Field("model.embedding_dim", "Embedding size", "int", "dimensions of a code vector", ("vqvae",)),
    Field("data.dataset", "Data set", "select", "digits: 8×8, trains in seconds", choices=catalog.DATASETS,
          group="data"),
    Field("data.noise_factor", "Noise", "float", "denoising: inputs x + F·N(0, 1), clipped; 0: none", group="data"),
    Field("data.limit", "Training images", "int", "optional: only the first N (faster)", group="data"),
    Field("train.epochs", "Epochs", "int", group="train"),
    Field("train.batch_size", "Batch size", "int", group="train"),
    Field("train.lr", "Learning rate", "float", "Adam", group="train"),
)
KEYS = {f.key: f for f in FIELDS}
#: what the form starts from without a preset: digits, which trains in seconds on a laptop
DEFAULT_START = {"data.dataset": "digits"}


def base_config(preset: str = "", family: str = ""):
    """The config a form starts from: a preset (or aelab's default on digits), with ``family``'s
    defaults when another family is chosen; fitted to its data."""
    from .. import RunConfig  # deferred: pydantic and the registries, only when a form is built
    from ..presets import load_preset  # deferred: as above
    from ..runs import plan  # deferred: PyTorch

    base = load_preset(preset) if preset else RunConfig()
    ov: dict[str, Any] = {} if preset else dict(DEFAULT_START)
    if family and family != base.model.family:
        ov["model.family"] = family
    return plan.run_config(base, ov, name=preset or None)


def _layers_text(layers) -> Optional[str]:
    """``128:relu,32:relu`` for dense layers; None when a layer is not dense (a conv preset)."""
    if not all(isinstance(x, str) for x in layers):
        return None
    return ",".join(layers)


def form_values(cfg) -> dict[str, str]:
    """The form's fields as the config ``cfg`` fills them (text; "" when it has none)."""
    d = cfg.to_dict()
    out: dict[str, str] = {"name": cfg.name}
    enc, dec = d["model"]["encoder"], d["model"]["decoder"]
    for key, layers in (("model.encoder", enc), ("model.decoder", dec)):
        t = _layers_text(layers)
        out[key] = t if t is not None else "(set by the preset: convolutional layers)"
    if isinstance(enc[-1], str):
        out["code_size"] = enc[-1].split(":")[0]
    for f in FIELDS:
        if "." in f.key and f.key not in out:
            sect, name = f.key.split(".", 1)
            v = d[sect].get(name)
            out[f.key] = "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    return out


def _parse(f: Field, text: str) -> Any:
    text = text.strip()
    if f.kind == "int":
        if text == "" and f.key == "data.limit":
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"give a whole number (got {text!r})") from None
    if f.kind == "float":
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"give a number such as 0.001 (got {text!r})") from None
        if not math.isfinite(v):
            raise ValueError(f"give a finite number (got {text!r})")
        return v
    if f.key in ("model.encoder", "model.decoder"):
        return [p.strip() for p in text.split(",") if p.strip()]
    return text


def config_from_form(form: dict[str, str], uploads: Optional[Uploads] = None):
    """``(config, errors)`` from the submitted form: the preset (or default) config with every field
    the learner changed applied as ``aelab train`` applies its flags. ``errors``: field key → one
    line (``""``: an error of the whole config). The data set is a registered name or
    ``upload:<name>``, an upload of ``uploads`` (never a path: a request does not name files)."""
    from ..runs import plan  # deferred: PyTorch

    preset, family = form.get("preset", ""), form.get("family", "")
    errors: dict[str, str] = {}
    try:
        base = base_config(preset, family)
    except AelabError as exc:
        return None, {"preset": str(exc)}
    start = form_values(base)
    ov: dict[str, Any] = {}
    fam = base.model.family
    for f in FIELDS:
        if f.key == "name" or (f.families and fam not in f.families):
            continue
        given = form.get(f.key)
        if given is None or given.strip() == start.get(f.key, "").strip():
            continue
        try:
            v = _parse(f, given)
            if f.key == "data.dataset":
                ov.update(_dataset(v, uploads))  # an upload's path and label column
                continue
        except (ValueError, UploadRefused) as exc:
            errors[f.key] = str(exc)
            continue
        if f.key == "code_size":
            enc = ov.get("model.encoder") or base.to_dict()["model"]["encoder"]
            if not isinstance(enc[-1], str):
                errors[f.key] = "the last encoder layer is not a dense layer; change the layers instead"
                continue
            ov["model.encoder"] = [*enc[:-1], f"{v}:{enc[-1].split(':')[1]}"]
        else:
            ov[f.key] = v
    if errors:
        return None, errors
    name = form.get("name", "").strip()
    if name == start["name"]:
        name = ""
    if name and (len(name) > 80 or not all(c.isalnum() or c in "-_.=+" for c in name) or name.startswith(".")):
        return None, {"name": "use letters, digits and - _ . = + only (it names the run's folder)"}
    try:
        cfg = plan.run_config(base, ov, name=name or None)
        if not name and not (preset and not ov):  # named by its layers (a changed preset is no longer the preset)
            cfg = cfg.model_copy(update={"name": plan.default_run_name(cfg)})
    except AelabError as exc:
        key = _field_of(str(exc))
        return None, {key: _beside(key, str(exc))}
    return cfg, {}


def _dataset(value: str, uploads: Optional[Uploads]) -> dict[str, str]:
    """The data settings a form's select names: a registered data set, or an upload (its path and
    its label column)."""
    if value.startswith("upload:") and uploads is not None:
        return uploads.upload(value).settings
    if value not in catalog.DATASETS:
        raise ValueError(f"{value!r} is not a data set here; choose one from the list, or upload your own")
    return {"data.dataset": value}


def _field_of(msg: str) -> str:
    """The form field an error line names ("invalid config: train.epochs: …"), or "" for the form."""
    head = msg.removeprefix("invalid config: ").split(":", 1)[0].strip()
    if head in KEYS:
        return head
    found = [(msg.find(key), key) for key in KEYS if "." in key and key in msg]
    return min(found)[1] if found else ""


def _beside(key: str, msg: str) -> str:
    """The error line as shown beside its field: without the "invalid config: <key>:" the field says."""
    for prefix in (f"invalid config: {key}: ", "invalid config: config: ", "invalid config: "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


# -- jobs --------------------------------------------------------------------------------------------
_serial = itertools.count(1)
#: the states a job ends in
FINAL = ("paused", "stopped", "finished", "failed")


@dataclass
class Job:
    """One training of one run directory in this server: its state, its history so far, its events.

    ``state``: "starting", "training", "finishing", "pausing", "stopping", then "paused",
    "stopped", "finished" or "failed". ``events``: every message sent to pages, in order (a page
    that connects late reads the snapshot, then these from its length on)."""

    rel: str
    run_dir: Path
    cfg: Any
    stop: Any
    serial: int = field(default_factory=lambda: next(_serial))
    state: str = "starting"
    message: str = ""
    epochs: int = 0
    epoch: int = 0
    pause_after: Optional[int] = None
    history: dict[str, list] = field(default_factory=dict)
    recon: Optional[dict] = None
    codes: Optional[dict] = None
    #: each drawn preview (recon row and code map) in seconds, between epochs in the training thread
    frame_seconds: list[float] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    thread: Optional[threading.Thread] = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, msg: dict) -> None:
        with self.lock:
            self.events.append(msg)

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.push({"type": "state", "state": state, "message": message, "epoch": self.epoch, "epochs": self.epochs})

    @property
    def alive(self) -> bool:
        """Training or about to: its thread runs and has not said its final state (once said, the
        directory is released and the thread only returns)."""
        return self.thread is not None and self.thread.is_alive() and self.state not in FINAL

    def add_epoch(self, msg: dict) -> None:
        """An epoch's losses into the history and the events at once: a page that connects meanwhile
        gets it in its snapshot or as an event, never both."""
        with self.lock:
            _add_epoch(self.history, msg["train"], msg["val"])
            self.events.append(msg)

    def snapshot(self) -> dict:
        """Everything a page needs to draw the run so far (call under ``lock``: copies, not references)."""
        return {"type": "snapshot", "rel": self.rel, "name": self.cfg.name, "state": self.state,
                "message": self.message, "epoch": self.epoch, "epochs": self.epochs,
                "history": {k: list(v) for k, v in self.history.items()},
                "recon": self.recon, "codes": self.codes, "family": self.cfg.model.family,
                "data": self.cfg.data.dataset,
                "recon_png": f"/files/{self.rel}/recon.png" if self.state == "finished" else None}


def _add_epoch(history: dict[str, list], train: dict, val: dict) -> None:
    for k, v in train.items():
        history.setdefault(k, []).append(float(v))
    for k, v in val.items():
        history.setdefault("val_" + k, []).append(float(v))


def history_series(h: dict) -> dict[str, list]:
    """A history.json (or a checkpoint's) as the page's series: ``loss``, ``val_loss``, each term and
    ``val_<term>`` (``reconstruction``, ``kl``, …), ``penalty`` when it is not zero."""
    out: dict[str, list] = {}
    for k in ("loss", "val_loss"):
        if isinstance(h.get(k), list):
            out[k] = [float(v) for v in h[k]]
    for src, prefix in (("terms", ""), ("val_terms", "val_")):
        for k, v in (h.get(src) or {}).items():
            if isinstance(v, list):
                out[prefix + k] = [float(x) for x in v]
    for k in ("penalty", "val_penalty"):
        if isinstance(h.get(k), list) and any(h[k]):
            out[k] = [float(v) for v in h[k]]
    return out


class Trainer:
    """The server's trainings: at most one job per run directory, each in its own thread."""

    def __init__(self, ws: Workspace, uploads: Optional[Uploads] = None) -> None:
        self.ws = ws
        self.uploads = uploads if uploads is not None else Uploads(ws.root / "uploads")
        self.jobs: dict[str, Job] = {}
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._data = None

    def data(self):
        """One data cache for every job of this server (a data set is read once)."""
        if self._data is None:
            from ..data import DataCache, DataOptions  # deferred: NumPy and the readers

            self._data = DataCache(DataOptions(progress=False))
        return self._data

    def job(self, rel: str) -> Optional[Job]:
        return self.jobs.get(rel)

    def start(self, cfg, run_dir: Path, *, pause_after: Optional[int] = None) -> Job:
        """Train ``cfg`` into ``run_dir`` (new, or an interrupted run to resume) in a worker thread."""
        from ..runs import Stop  # deferred: PyTorch

        if self.closing.is_set():
            raise AelabError("the server is shutting down; start the training again after it restarts")
        rel = self.ws.rel(run_dir)
        with self._lock:
            old = self.jobs.get(rel)
            if old is not None and old.alive:
                raise AelabError(f"{rel} is already training here; stop it first, or wait for it to finish")
            self.ws.claim(run_dir)  # refuses a directory a study of this server trains
            job = Job(rel, run_dir, cfg, Stop(), epochs=cfg.train.epochs, pause_after=pause_after)
            self.jobs[rel] = job
            job.set_state("starting")
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"aelab-train-{rel}", daemon=True)
            job.thread.start()
        return job

    def _run(self, job: Job) -> None:
        from .. import train  # deferred: PyTorch
        from ..runs import Interrupted  # deferred: PyTorch
        from ..runs.events import EpochEnded, FinishStep, RunFinishing, RunStarted  # deferred: PyTorch

        preview = _Preview(job, self.data())

        def on_event(ev) -> None:
            if isinstance(ev, RunStarted):
                job.epochs, job.epoch = ev.epochs, ev.start_epoch
                h = history_series(_history(job.run_dir)) if ev.start_epoch else {}
                with job.lock:
                    job.history = {k: v[:ev.start_epoch] for k, v in h.items()}
                    job.events.append({"type": "history", "history": {k: list(v) for k, v in job.history.items()}})
                job.set_state("training", f"resumed at epoch {ev.start_epoch + 1}" if ev.start_epoch else "")
            elif isinstance(ev, EpochEnded):
                job.epoch = ev.epoch
                job.add_epoch({"type": "epoch", "epoch": ev.epoch, "epochs": ev.epochs, "train": dict(ev.train),
                               "val": dict(ev.val), "seconds": ev.seconds})
                if job.pause_after is not None and ev.epoch >= job.pause_after and ev.epoch < ev.epochs:
                    job.stop.set("paused")
                    job.set_state("pausing", f"pausing after epoch {ev.epoch}")
                preview.epoch_ended(ev.epoch)
            elif isinstance(ev, RunFinishing):
                job.set_state("finishing", "writing the run's metrics, figures and codes")
            elif isinstance(ev, FinishStep):
                job.push({"type": "finish-step", "step": ev.step, "done": ev.done, "of": ev.of})

        final: tuple[str, str] = ("failed", "training ended without a word")
        try:
            train(job.cfg, job.run_dir, on_event=on_event, stop=job.stop, data=self.data(), progress=False)
        except Interrupted as exc:
            if (job.run_dir / "DONE").is_file():  # the stop came while the run was finishing: it finished
                job.push({"type": "final", "recon_png": f"/files/{job.rel}/recon.png"})
                final = ("finished", f"finished {job.epoch} epochs (the stop came after the last one)")
            elif job.stop.requested == "paused":
                final = ("paused", f"paused after epoch {job.epoch}: resume or step on")
            else:
                final = ("stopped", str(exc))
        except AelabError as exc:
            final = ("failed", str(exc))
        except Exception as exc:  # a bug must reach the page, not only the server's log
            final = ("failed", f"{type(exc).__name__}: {exc}")
        else:
            job.push({"type": "final", "recon_png": f"/files/{job.rel}/recon.png"})
            final = ("finished", f"finished {job.epoch} epochs")
        finally:
            self.ws.release(job.run_dir)
            # said last: a page told "stopped" finds the directory free (resumable, listed as interrupted)
            job.set_state(*final)

    def stop(self, rel: str, why: str = "stopped from the page") -> Job:
        job = self._live(rel)
        job.stop.set(why)
        job.set_state("stopping", "checkpointing after the current step")
        return job

    def pause(self, rel: str) -> Job:
        job = self._live(rel)
        job.pause_after = job.epoch + 1
        job.set_state("pausing", f"pausing at the end of epoch {job.epoch + 1}")
        return job

    def resume(self, rel: str, *, steps: Optional[int] = None) -> Job:
        """Resume the interrupted run at ``rel`` (its saved config), to the end or for ``steps`` epochs."""
        from ..artifacts import read_config  # deferred: pydantic schemas

        job = self.jobs.get(self.ws.rel(self.ws.resolve(rel, must_exist=False)))
        if job is not None and job.alive:
            if steps is not None and job.state in ("training", "pausing"):
                return self.pause(job.rel)
            raise AelabError(f"{rel} is training already")
        run_dir = self.ws.resolve(rel)
        if (run_dir / "DONE").is_file():
            raise AelabError(f"{rel} is finished; nothing to resume")
        cfg, _ = read_config(run_dir, "the run cannot be resumed; train it again")
        start = _checkpoint_epoch(run_dir)
        return self.start(cfg, run_dir, pause_after=None if steps is None else start + steps)

    def _live(self, rel: str) -> Job:
        job = self.jobs.get(rel)
        if job is None or not job.alive:
            raise AelabError(f"{rel} is not training in this server")
        return job

    def close(self, timeout: float = 120.0) -> None:
        """Stop every job (a checkpoint each, as Ctrl-C) and wait for them: the server exits cleanly."""
        self.closing.set()
        jobs = list(self.jobs.values())
        for job in jobs:
            if job.alive:
                if not job.stop.is_set():  # the first reason stays (Ctrl-C's, given by the server)
                    job.stop.set("the server stopped")
                job.set_state("stopping", "the server is stopping: checkpointing")
        end = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, end - time.monotonic()))


def _checkpoint_epoch(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "checkpoint" / "state.json").read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class _Preview:
    """What the page shows of each epoch besides its losses — a reconstruction row and the map of
    :data:`MAP_N` test codes — computed from the checkpoint the run writes at each epoch's end, in
    the training thread, between two epochs, and at most :data:`PREVIEW_SHARE` of the wall time
    (after each draw it rests nine times what the draw took), so on short epochs it draws every
    few epochs instead of every one.

    In the training thread, not one of its own: a preview is a few milliseconds of work (the lab
    AE's: 3–4 ms), but in a second thread its Python parts fought the training loop's for the GIL,
    which stretched both — the preview to 40–85 ms of wall time and the training to 3–17 % more
    seconds per epoch than ``aelab train`` (``benchmarks/serve.py --what train``); between epochs
    the training loses only the preview's own milliseconds.

    The map is the code itself when it has two dimensions, else its PCA plane, turned (a rotation
    or reflection in the plane, never a stretch) to lie closest to the previous epoch's map: a PCA
    axis has no sign or order of its own, and without this the cloud would flip and swap from
    epoch to epoch instead of moving. The page keeps one frame for the whole run (it only grows),
    so what moves on screen is the codes."""

    def __init__(self, job: Job, data) -> None:
        self.job, self.data = job, data
        self.x = self.xm = self.ym = None
        self.prev = None  # (N, 2): the previous epoch's map
        self.rest_until = 0.0  # monotonic time before which no preview is drawn (PREVIEW_SHARE)

    def epoch_ended(self, epoch: int) -> None:
        """Draw ``epoch``'s preview now, unless the last one was too recent."""
        if time.monotonic() < self.rest_until:
            return
        t0 = time.perf_counter()
        try:
            run = self._open()
        except Exception:  # noqa: BLE001 - a preview is a nicety: a checkpoint replaced or dropped meanwhile
            return
        for make, kind in ((self._row, "recon"), (self._codes, "codes")):
            try:
                got = make(run, epoch)
            except Exception:  # noqa: BLE001 - as above; one view failing does not drop the other
                got = None
            if got is not None:
                setattr(self.job, kind, got)
                self.job.push({"type": kind, **got})
        took = time.perf_counter() - t0
        self.job.frame_seconds.append(took)
        self.rest_until = time.monotonic() + took * (1 - PREVIEW_SHARE) / PREVIEW_SHARE

    def _open(self):
        """The model as the checkpoint holds it (the end of the latest epoch), as a TrainedRun."""
        import torch  # deferred: only once a run trains
        from safetensors.torch import load_file  # deferred: as above

        from ..models import build_model  # deferred: as above
        from ..runs.trained import TrainedRun  # deferred: as above

        cfg = self.job.cfg
        tensors = load_file(str(self.job.run_dir / "checkpoint" / "state.safetensors"))
        model = build_model(cfg.model)
        sd = model.state_dict()
        model.load_state_dict({k: v for k, v in tensors.items() if k in sd})
        model.eval()
        return TrainedRun(self.job.run_dir, model, cfg, {}, {}, self.data, torch.device("cpu"))

    def _row(self, run, epoch: int) -> Optional[dict]:
        import numpy as np  # deferred: only once a run trains

        cfg = self.job.cfg
        if len(cfg.model.input_shape) != 3:
            return None  # a table: no image row
        ds = self.data.dataset(cfg.data)
        if self.x is None:
            self.x = ds.x_test[:RECON_N]
        labels = ds.y_test[:RECON_N] if run.conditional else None
        rec = run.reconstruct(self.x, labels)
        hi = float(ds.value_range[1]) if ds.value_range else float(max(np.max(self.x), 1))

        def b64(a) -> str:
            return base64.b64encode(np.clip(np.asarray(a, np.float64) / hi * 255.0 + 0.5, 0, 255)
                                    .astype(np.uint8).tobytes()).decode()

        return {"epoch": epoch, "shape": [int(s) for s in self.x.shape[1:]], "n": int(len(self.x)),
                "orig": b64(self.x), "recon": b64(rec)}

    def _codes(self, run, epoch: int) -> Optional[dict]:
        """The map of the first :data:`MAP_N` test samples' codes after ``epoch``."""
        import numpy as np  # deferred: only once a run trains

        ds = self.data.dataset(self.job.cfg.data)
        if self.xm is None:
            self.xm = ds.x_test[:MAP_N]
            self.ym = None if ds.y_test is None else np.asarray(ds.y_test[:MAP_N])
        z = np.asarray(run.encode(self.xm, self.ym if run.conditional else None), np.float64)
        if z.ndim != 2 or z.shape[1] == 0 or not np.all(np.isfinite(z)):
            return None
        xy, method = map_points(z, self.prev)
        self.prev = xy
        return {"epoch": epoch, "dims": int(z.shape[1]), "method": method, "n": int(len(xy)),
                "xy": [round(float(v), 4) for v in xy.reshape(-1)],
                "labels": None if self.ym is None else [int(v) for v in self.ym],
                "classes": list(ds.classes) if ds.classes else None}


def map_points(z, prev=None):
    """``(points (N, 2), method)``: a code of one or two dimensions as it is ("code"), a wider one
    projected on its PCA plane ("pca") and turned by the orthogonal 2×2 map (Procrustes) that
    brings it closest to ``prev``, the previous epoch's points of the same samples."""
    import numpy as np  # deferred: only once a run trains

    if z.shape[1] <= 2:
        return (z if z.shape[1] == 2 else np.concatenate([z, np.zeros_like(z)], axis=1)), "code"
    c = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    xy = c @ vt[:2].T
    if prev is not None and prev.shape == xy.shape:
        u, _, wt = np.linalg.svd(xy.T @ prev)
        xy = xy @ (u @ wt)
    return xy, "pca"


# -- routes ------------------------------------------------------------------------------------------
def routes(trainer: Trainer) -> list:
    ws = trainer.ws

    def form_page(request: Request, preset: str, family: str, values: dict, errors: dict, status: int = 200,
                  uploaded: str = ""):
        from ..presets import preset_description, preset_names  # deferred: pydantic

        fam = family
        try:
            base = base_config(preset, family)
            fam = base.model.family
        except AelabError as exc:
            errors = {**errors, "preset": str(exc)}
        presets = [(n, preset_description(n)) for n in preset_names()]
        jobs = sorted(trainer.jobs.values(), key=lambda j: -j.serial)
        return page(request, "train.html", status_code=status, title="Train", fields=FIELDS, values=values,
                    errors=errors, preset=preset, family=fam, presets=presets, families=catalog.FAMILIES,
                    jobs=jobs, uploads=trainer.uploads.list(), uploaded=uploaded,
                    max_upload_mb=trainer.uploads.max_bytes / (1 << 20))

    async def train_form(request: Request) -> Response:
        preset = request.query_params.get("preset", "")
        family = request.query_params.get("family", "")
        try:
            values = form_values(base_config(preset, family))
        except AelabError as exc:
            return form_page(request, "", "", form_values(base_config()), {"preset": str(exc)}, 400)
        data = request.query_params.get("data", "")
        uploaded = ""
        if data.startswith("upload:") and trainer.uploads.get(data.removeprefix("upload:")) is not None:
            values["data.dataset"] = data
            uploaded = data.removeprefix("upload:")
        return form_page(request, preset, family, values, {}, uploaded=uploaded)

    async def upload(request: Request) -> Response:
        """A CSV or a zip of images from the upload form: checked, kept, then chosen in the form."""
        preset, family = request.query_params.get("preset", ""), request.query_params.get("family", "")
        try:
            body = await trainer.uploads.read_body(request)
            request._body = body  # the form is parsed from the body read (and counted) above
            async with request.form(max_files=1, max_fields=8) as form:  # its spooled files closed on leaving
                f = form.get("file")
                if f is None or isinstance(f, str) or not f.filename:
                    raise UploadRefused("choose a file first: a .csv table or a .zip of images")
                data, filename = await f.read(), f.filename
                name = str(form.get("name") or "")
                label_column = str(form.get("label_column") or "")
            up = await asyncio.to_thread(trainer.uploads.add, filename, data, name, label_column)
        except UploadRefused as exc:
            values = form_values(await asyncio.to_thread(base_config, preset, family))
            return form_page(request, preset, family, values, {"upload": str(exc)}, exc.status)
        except HTTPException as exc:  # the multipart framing itself
            values = form_values(await asyncio.to_thread(base_config, preset, family))
            return form_page(request, preset, family, values,
                             {"upload": f"the upload did not arrive whole ({exc.detail}); send it again"}, 400)
        return RedirectResponse(f"/train?data=upload:{up.name}", 303)

    async def train_submit(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        cfg, errors = await asyncio.to_thread(config_from_form, form, trainer.uploads)
        preset, family = form.get("preset", ""), form.get("family", "")
        if cfg is None:
            return form_page(request, preset, family, form, errors, 400)
        from ..runs import plan  # deferred: PyTorch

        try:
            run_dir, _ = plan.fresh_run_dir(ws.root / "runs" / cfg.name)
            job = trainer.start(cfg, run_dir)
        except AelabError as exc:
            return form_page(request, preset, family, form, {"": str(exc)}, 409)
        return RedirectResponse(f"/train/run/{job.rel}", 303)

    def _rel(request: Request) -> str:
        """The run directory the URL names, relative to the root: an existing one, or one a job of
        this server is about to create (training creates it a moment after the page is answered)."""
        path = ws.resolve(request.path_params["path"], must_exist=False)
        rel = ws.rel(path)
        if not path.is_dir() and rel not in trainer.jobs:
            raise PathRefused(f"{request.path_params['path']!r} is not a run in this workspace")
        return rel

    async def run_page(request: Request) -> Response:
        try:
            rel = _rel(request)
        except PathRefused as exc:
            return page(request, "message.html", 404, title="Not found", message=str(exc))
        entry = ws.run_entry(ws.resolve(rel, must_exist=False))
        return page(request, "run.html", title=entry.name, run=entry, rel=rel)

    def action(kind: str):
        async def handler(request: Request) -> Response:
            try:
                rel = _rel(request)
                if kind == "stop":
                    job = trainer.stop(rel)
                elif kind == "pause":
                    job = trainer.pause(rel)
                elif kind == "resume":
                    job = await asyncio.to_thread(trainer.resume, rel)
                else:
                    job = await asyncio.to_thread(trainer.resume, rel, steps=1)
            except PathRefused as exc:
                return JSONResponse({"ok": False, "message": str(exc)}, 404)
            except AelabError as exc:
                return JSONResponse({"ok": False, "message": str(exc)}, 409)
            return JSONResponse({"ok": True, "state": job.state, "message": job.message})
        return handler

    async def events(request: Request) -> Response:
        try:
            rel = _rel(request)
        except PathRefused as exc:
            return JSONResponse({"message": str(exc)}, 404)

        def disk_snapshot() -> Optional[dict]:
            path = ws.resolve(rel, must_exist=False)
            if not path.is_dir():
                return None
            e = ws.run_entry(path)
            return {"type": "snapshot", "rel": rel, "name": e.name, "state": e.status, "message": e.problem,
                    "epoch": e.epochs_done, "epochs": e.epochs, "history": history_series(_history(ws.resolve(rel))),
                    "recon": None, "codes": None, "family": e.family, "data": e.data,
                    "recon_png": f"/files/{rel}/recon.png" if e.has_recon else None}

        snap = await asyncio.to_thread(disk_snapshot)
        return follow(request, lambda: trainer.jobs.get(rel), trainer.closing, before=snap)

    return [Route("/train", train_form, methods=["GET"]), Route("/train", train_submit, methods=["POST"]),
            Route("/train/upload", upload, methods=["POST"]),
            Route("/train/run/{path:path}/events", events),
            Route("/train/run/{path:path}/stop", action("stop"), methods=["POST"]),
            Route("/train/run/{path:path}/pause", action("pause"), methods=["POST"]),
            Route("/train/run/{path:path}/resume", action("resume"), methods=["POST"]),
            Route("/train/run/{path:path}/step", action("step"), methods=["POST"]),
            Route("/train/run/{path:path}", run_page)]
