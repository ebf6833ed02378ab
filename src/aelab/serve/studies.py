"""Studies and sweeps from the page: launch a shipped or uploaded study (``--quick`` by default) or a
sweep of one parameter of a study's run, on the study's data or an uploaded data set, watch each of
its runs, open the report when it is written.

An uploaded study (``upload:<name>``) is a study TOML kept in ``<workspace>/studies`` once it has
been checked whole (:class:`~aelab.serve.uploads.StudyUploads`); an uploaded data set
(``upload:<name>``) is one the Train page kept (:class:`~aelab.serve.uploads.Uploads`). The page
names both by name, never by a path.

A study trains with :func:`aelab.run_study` in a worker thread, into the same folder ``aelab study``
would use (``studies-out/<study>[-quick][-<overrides>]`` of the workspace), so the CLI and the page
resume each other's studies; its events (every run's epochs, one progress over the whole study)
are kept by a :class:`StudyJob` and streamed to the page as server-sent events, like a training's.
Stop checkpoints every running run (Ctrl-C's stop); launching the same study again resumes it.

A sweep is what ``aelab sweep --study S --baseline RUN --param KEY --values V [--quick]`` takes
(:func:`aelab.study.plan.sweep_base`, :func:`aelab.study.parse_values`, the same default folder
``studies-out/sweep-<baseline>-<param>[-quick]…``), trained by :func:`aelab.run_sweep` with its
sweep report; every error of its fields is the CLI's one line.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
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
from .uploads import StudyUploads, UploadRefused, Uploads
from .workspace import PathRefused, Workspace

#: the data a study may be switched to from the page ("": as the study is written)
DATA_CHOICES = ("", "digits", "synthetic", "mnist")
#: the most values a sweep launched from the page may have
MAX_SWEEP_VALUES = 12
#: what the sweep form suggests varying (any dotted key of the baseline's config is taken)
SWEEP_PARAMS = ("data.noise_factor", "model.activity_l1", "model.beta", "model.lam", "model.rho", "train.lr",
                "train.epochs", "train.batch_size", "data.exclude_labels")
_serial = itertools.count(1)


@dataclass
class StudyJob:
    """One study training in this server: ``runs`` by index (name, epoch, epochs, state, val loss)."""

    name: str
    rel: str
    out: Path
    stop: Any
    kind: str = "study"
    serial: int = field(default_factory=lambda: next(_serial))
    state: str = "starting"
    message: str = ""
    done: int = 0
    total: int = 0
    runs: dict[int, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    thread: Optional[threading.Thread] = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, msg: dict) -> None:
        with self.lock:
            self.events.append(msg)

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.push({"type": "state", "state": state, "message": message})

    @property
    def alive(self) -> bool:
        """Running: its thread runs and has not said its final state."""
        return self.thread is not None and self.thread.is_alive() and self.state not in ("stopped", "finished", "failed")

    def snapshot(self) -> dict:
        return {"type": "snapshot", "name": self.name, "kind": self.kind, "rel": self.rel, "state": self.state,
                "message": self.message,
                "done": self.done, "total": self.total, "runs": {str(k): v for k, v in self.runs.items()},
                "report": f"/files/{self.rel}/report.html" if (self.out / "report.html").is_file() else None}


class StudyLauncher:
    """The server's studies: one thread each, at most one per output folder."""

    def __init__(self, ws: Workspace, *, workers: Optional[int] = None, uploads: Optional[Uploads] = None,
                 studies: Optional[StudyUploads] = None) -> None:
        self.ws = ws
        self.workers = workers
        self.uploads = uploads if uploads is not None else Uploads(ws.root / "uploads")
        self.studies = studies if studies is not None else StudyUploads(ws.root / "studies")
        self.jobs: dict[str, StudyJob] = {}
        self.closing = threading.Event()
        self._lock = threading.Lock()

    def study_source(self, name: str) -> str:
        """What :func:`aelab.load_study` takes for the page's study choice: a shipped study's name, or
        the kept file of an uploaded one (``upload:<name>``)."""
        if name.startswith("upload:"):
            return str(self.studies.path(name))
        if name not in catalog.studies():
            raise AelabError(f"unknown study {name!r}; shipped studies: {', '.join(catalog.studies())} "
                             "(or upload your own study file)")
        return name

    def data_choice(self, dataset: str) -> dict[str, str]:
        """The data settings for the page's data choice: none (as the study is written), a shipped
        data set, or an upload's path and label column (``upload:<name>``)."""
        if dataset.startswith("upload:"):
            return self.uploads.upload(dataset).settings
        if dataset not in DATA_CHOICES:
            raise AelabError(f"data {dataset!r}: choose one of {', '.join(d or 'as written' for d in DATA_CHOICES)}"
                             " or an upload")
        return {"data.dataset": dataset} if dataset else {}

    def launch(self, name: str, *, quick: bool = True, dataset: str = "",
               overrides: Optional[dict[str, Any]] = None) -> StudyJob:
        """Start study ``name`` (a shipped one, or ``upload:<name>``) with ``--quick`` settings, on
        ``dataset`` if given; ``overrides``: more dotted settings, as ``aelab study --set`` (the page
        gives none)."""
        from ..study import load_study  # deferred: PyTorch
        from ..study.plan import study_out  # deferred: as above

        if self.closing.is_set():
            raise AelabError("the server is shutting down; launch the study again after it restarts")
        source = self.study_source(name)
        ov = {**self.data_choice(dataset), **(overrides or {})}
        study = load_study(source, quick=quick, overrides=ov)
        out = self.ws.root / study_out(study, ov)

        def work(job: StudyJob, on_event, data_opts) -> None:
            from ..report import build_report  # deferred: matplotlib
            from ..study import run_study  # deferred: PyTorch

            run_study(study, job.out, progress=False, data_opts=data_opts, stop=job.stop, workers=self.workers,
                      on_event=on_event, report=lambda o: self._report(job, o, build_report))

        return self._start(study.name, "study", out, work, f"reading the data and checking {len(study.runs)} runs")

    def launch_sweep(self, study: str, baseline: str, param: str, values: str, *, quick: bool = True,
                     dataset: str = "", overrides: Optional[dict[str, Any]] = None) -> StudyJob:
        """Start a sweep as ``aelab sweep --study STUDY --baseline BASELINE --param PARAM --values
        VALUES [--quick] [--dataset D]`` would, into the same default folder (so each resumes the
        other's); ``overrides``: more dotted settings, as its config flags (the page gives none)."""
        from ..study import parse_values  # deferred: PyTorch
        from ..study.plan import sweep_base, sweep_out  # deferred: as above

        if self.closing.is_set():
            raise AelabError("the server is shutting down; launch the sweep again after it restarts")
        source = self.study_source(study)
        data = self.data_choice(dataset)
        param = param.strip()
        if not param:
            raise AelabError("--param is empty: give the dotted key to vary, e.g. data.noise_factor or model.beta")
        ov = {**data, **(overrides or {})}
        base = sweep_base(study=source, baseline=baseline.strip(), quick=quick, overrides=ov)
        vals = parse_values(values)
        if len(vals) > MAX_SWEEP_VALUES:
            raise AelabError(f"--values gives {len(vals)} values; the page launches at most {MAX_SWEEP_VALUES} "
                             "(run a longer sweep with aelab sweep)")
        from ..study.sweep import sweep_configs  # deferred: as above

        sweep_configs(base, param, vals)  # the key and every value checked now, as a one-line refusal
        out = self.ws.root / sweep_out(base, param, quick=quick, overrides=ov)

        def work(job: StudyJob, on_event, data_opts) -> None:
            from ..report import build_sweep_report  # deferred: matplotlib
            from ..study import run_sweep  # deferred: PyTorch

            run_sweep(base, param, vals, job.out, progress=False, data_opts=data_opts, stop=job.stop,
                      workers=self.workers, quick=quick, on_event=on_event,
                      report=lambda o: self._report(job, o, build_sweep_report))

        return self._start(f"sweep {base.name}: {param}", "sweep", out, work,
                           f"reading the data and checking {len(vals)} runs ({param} = {values.strip()})")

    def _start(self, name: str, kind: str, out: Path, work, message: str) -> StudyJob:
        from ..runs import Stop  # deferred: PyTorch

        with self._lock:
            rel = out.relative_to(self.ws.root).as_posix()
            old = self.jobs.get(rel)
            if old is not None and old.alive:
                raise AelabError(f"{rel} is running already; watch it below")
            self.ws.claim(out)
            job = StudyJob(name, rel, out, Stop(), kind=kind)
            self.jobs[rel] = job
            job.set_state("starting", message)
            job.thread = threading.Thread(target=self._run, args=(job, work), name=f"aelab-{kind}-{rel}", daemon=True)
            job.thread.start()
        return job

    def _run(self, job: StudyJob, work) -> None:
        from ..data import DataOptions  # deferred: PyTorch
        from ..runs import Interrupted  # deferred: PyTorch
        from ..runs.events import EpochEnded, Progress, RunFinished, RunFinishing, RunStarted  # deferred: as above

        def on_event(ev) -> None:
            if isinstance(ev, Progress):
                job.done, job.total = ev.done, ev.total
                job.push({"type": "progress", "done": ev.done, "total": ev.total})
                return
            r = job.runs.setdefault(ev.index, {"name": ev.run, "epoch": 0, "epochs": 0, "state": "queued",
                                               "val_loss": None})
            if isinstance(ev, RunStarted):
                r.update(epochs=ev.epochs, epoch=ev.start_epoch, state="training")
            elif isinstance(ev, EpochEnded):
                r.update(epoch=ev.epoch, epochs=ev.epochs, val_loss=float(ev.val.get("loss", float("nan"))))
            elif isinstance(ev, RunFinishing):
                r.update(state="finishing")
            elif isinstance(ev, RunFinished):
                r.update(state="finished")
            job.push({"type": "run", "index": ev.index, **r})

        final = ("failed", "the study ended without a word")
        try:
            job.set_state("training")
            work(job, on_event, DataOptions(progress=False))
        except Interrupted as exc:
            final = ("stopped", f"{exc} — launch it again to resume")
        except AelabError as exc:
            final = ("failed", str(exc))
        except Exception as exc:  # a bug must reach the page, not only the server's log
            final = ("failed", f"{type(exc).__name__}: {exc}")
        else:
            job.push({"type": "report", "report": f"/files/{job.rel}/report.html"})
            final = ("finished", "the report is written")
        finally:
            self.ws.release(job.out)
            job.set_state(*final)  # said last: the folder is free again

    @staticmethod
    def _report(job: StudyJob, out: Path, build) -> None:
        job.set_state("reporting", "writing the report and its figures")
        build(out)

    def stop(self, rel: str) -> StudyJob:
        job = self.jobs.get(rel)
        if job is None or not job.alive:
            raise AelabError(f"{rel} is not running in this server")
        job.stop.set("stopped from the page")
        job.set_state("stopping", "every running run checkpoints after its current step")
        return job

    def stop_all(self, why: str = "the server stopped") -> None:
        self.closing.set()
        for job in list(self.jobs.values()):
            if job.alive and not job.stop.is_set():
                job.stop.set(why)

    def close(self, timeout: float = 120.0) -> None:
        """Stop every study (a checkpoint per running run) and wait for them."""
        self.stop_all()
        for job in list(self.jobs.values()):
            if job.thread is not None:
                job.thread.join(timeout)


def _study_list(names: list[str], source=lambda name: name) -> list[dict]:
    """Studies by the page's names: what they hold (read from their TOML files, nothing trained).
    ``source``: the page's name → what :func:`aelab.load_study` takes."""
    from ..study import load_study  # deferred: PyTorch

    out = []
    for name in names:
        label = f"{name.removeprefix('upload:')} (uploaded)" if name.startswith("upload:") else name
        try:
            s = load_study(source(name), quick=True)
            desc = getattr(s, "description", "") or ""
            out.append({"name": name, "label": label, "runs": len(s.runs), "description": desc,
                        "baselines": list(s.runs)})
        except AelabError as exc:
            out.append({"name": name, "label": label, "runs": 0, "description": f"cannot load: {exc}",
                        "baselines": []})
    return out


def routes(launcher: StudyLauncher) -> list:
    ws = launcher.ws
    cache: dict[str, list] = {}

    async def studies_page(request: Request, error: str = "", status: int = 200, sweep_error: str = "",
                           sweep: Optional[dict] = None, upload_error: str = "") -> Response:
        if "list" not in cache:  # the shipped studies do not change while the server runs
            cache["list"] = await asyncio.to_thread(_study_list, catalog.studies())
        uploaded = await asyncio.to_thread(_study_list, [f"upload:{n}" for n in launcher.studies.list()],
                                           launcher.study_source)
        chosen = request.query_params.get("study", "")
        jobs = sorted(launcher.jobs.values(), key=lambda j: -j.serial)
        done = [s for s in ws.studies()]
        data_uploads = [(u.choice, f"{u.name} (uploaded: {u.summary})") for u in launcher.uploads.list()]
        return page(request, "studies.html", status_code=status, title="Studies", studies=uploaded + cache["list"],
                    chosen=chosen, jobs=jobs, outputs=done, error=error, data_choices=DATA_CHOICES,
                    data_uploads=data_uploads, sweep_error=sweep_error, upload_error=upload_error,
                    sweep=sweep or {"baseline": "exercise12:lab_denoising", "param": "data.noise_factor",
                                    "values": "0.1,0.3,0.6", "quick": True, "dataset": "digits"},
                    sweep_params=SWEEP_PARAMS)

    async def upload_study(request: Request) -> Response:
        """A study TOML from the upload form: checked whole, kept, then chosen in the launch form."""
        try:
            request._body = await launcher.uploads.read_body(request)  # bounded, as every upload
            async with request.form(max_files=1, max_fields=4) as form:
                f = form.get("file")
                if f is None or isinstance(f, str) or not f.filename:
                    raise UploadRefused("choose a study file first (.toml)")
                data, filename = await f.read(), f.filename
            name = await asyncio.to_thread(launcher.studies.add, filename, data)
        except UploadRefused as exc:
            return await studies_page(request, status=exc.status, upload_error=str(exc))
        except HTTPException as exc:  # the multipart framing itself
            return await studies_page(request, status=400,
                                      upload_error=f"the upload did not arrive whole ({exc.detail}); send it again")
        return RedirectResponse(f"/studies?study=upload:{name}", 303)

    async def launch_sweep(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        given = {"baseline": form.get("baseline", ""), "param": form.get("param", ""), "values": form.get("values", ""),
                 "quick": "quick" in form, "dataset": form.get("dataset", "")}
        study, _, baseline = given["baseline"].rpartition(":")  # upload:<name>:<run> too
        try:
            if not baseline:
                raise AelabError("choose the run to start from (a study's run)")
            job = await asyncio.to_thread(launcher.launch_sweep, study, baseline, given["param"], given["values"],
                                          quick=given["quick"], dataset=given["dataset"])
        except AelabError as exc:
            return await studies_page(request, status=409 if "running already" in str(exc) else 400,
                                      sweep_error=str(exc), sweep=given)
        return RedirectResponse(f"/studies/job/{job.rel}", 303)

    async def launch(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("study", ""))
        try:
            job = await asyncio.to_thread(launcher.launch, name, quick=form.get("quick") is not None,
                                          dataset=str(form.get("dataset", "")))
        except AelabError as exc:
            return await studies_page(request, str(exc), 409)
        return RedirectResponse(f"/studies/job/{job.rel}", 303)

    def _rel(request: Request) -> str:
        return ws.rel(ws.resolve(request.path_params["path"], must_exist=False))

    async def job_page(request: Request) -> Response:
        try:
            rel = _rel(request)
        except PathRefused as exc:
            return page(request, "message.html", 404, title="Not found", message=str(exc))
        job = launcher.jobs.get(rel)
        if job is None:
            return page(request, "message.html", 404, title="Not found",
                        message=f"{rel} was not launched in this server; its report, if any, is on the workspace page")
        return page(request, "study.html", title=job.name, job=job)

    async def stop(request: Request) -> Response:
        try:
            job = launcher.stop(_rel(request))
        except AelabError as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, 409)
        return JSONResponse({"ok": True, "state": job.state})

    async def events(request: Request) -> Response:
        try:
            rel = _rel(request)
        except PathRefused as exc:
            return JSONResponse({"message": str(exc)}, 404)
        job = launcher.jobs.get(rel)
        if job is None:
            return JSONResponse({"message": f"{rel} was not launched in this server"}, 404)

        return follow(request, lambda: launcher.jobs.get(rel), launcher.closing, poll=0.2)

    return [Route("/studies", studies_page, methods=["GET"]), Route("/studies", launch, methods=["POST"]),
            Route("/studies/sweep", launch_sweep, methods=["POST"]),
            Route("/studies/upload", upload_study, methods=["POST"]),
            Route("/studies/job/{path:path}/events", events),
            Route("/studies/job/{path:path}/stop", stop, methods=["POST"]),
            Route("/studies/job/{path:path}", job_page)]
