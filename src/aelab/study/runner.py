"""Run a study: train each distinct config once and write results.json.

The runs train into ``<out>/runs/<name>-<hash8>`` (:mod:`aelab.study.output`); ``results.json`` is
rebuilt from the run directories every time, so it always agrees with them. Building the report
from it is the caller's step (the CLI passes :func:`aelab.report.build_report` as ``report``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .._atomic import write_json
from ..artifacts import HistoryFile, MetricsFile, RunRecord, read_dict
from ..config import RunConfig, config_hash
from ..data import DataCache, DataOptions, fit_config
from ..engine.loop import StopFlag
from ..errors import ConfigError
from ..metrics import evaluate
from ..runs import is_done, load_model, open_executor, resolve_device, train_runs
from ..runs.events import OnEvent
from ..runs.executors.local import LocalExecutor
from .output import check_output, data_text, output_mark, owned_output, run_dir_for
from .result import StudyResult
from .spec import BASE_PROTOCOL, Study

#: results.json says what it is and which version of the format it follows (docs/formats.md);
#: version 1 is every results.json written before the version was (its base protocol named "seed")
RESULTS_FORMAT = "aelab-results"
RESULTS_VERSION = 2

#: what to do with the output directory once results.json is written (e.g. aelab.report.build_report)
Report = Callable[[Path], Any]


def fit_study(study: Study) -> Study:
    """The study with each run's model fitted to its data's sample shape (``aelab.data.fit_config``):
    the same study back when every shape fits already (MNIST, the shipped studies)."""
    runs = {n: fit_config(c) for n, c in study.runs.items()}
    if all(runs[n] is study.runs[n] for n in runs):
        return study
    return dataclasses.replace(study, runs=runs)


def run_record(out: Path, cfg: RunConfig, rd: Path) -> dict:
    """One entry of results.json ``runs``: the run's config (with its hash), history, metrics and run
    record, read back from its directory (``dir`` relative to ``out``)."""
    fix = f"the run directory is damaged; delete {rd} and run the study again to retrain it"
    return {
        "name": cfg.name,
        "dir": str(rd.relative_to(out)),
        "config": {**cfg.to_dict(), "config_hash": config_hash(cfg)},
        "history": read_dict(HistoryFile, rd / "history.json", fix),
        "metrics": read_dict(MetricsFile, rd / "metrics.json", fix),
        "run": read_dict(RunRecord, rd / "run.json", fix),  # train_runs verified its weights against it
    }


def results_head() -> dict:
    """The keys every results.json (study or sweep) starts with: its format and version."""
    return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION}


def train_all(out: Path, cfgs: Sequence[RunConfig], *, device: str, engine: str, data: DataCache,
              progress: bool, stop: StopFlag | None, workers: int | None, backend,
              on_event: OnEvent | None) -> list[Path]:
    """Train ``cfgs`` into their directories under ``out`` (finished ones are reused); their directories."""
    dirs = [run_dir_for(out, c) for c in cfgs]
    todo = sum(not is_done(d) for d in dirs)
    if progress and todo < len(dirs):
        print(f"{len(dirs) - todo} of {len(dirs)} runs already trained (cached in {out / 'runs'})")
    train_runs(cfgs, dirs, device=device, engine=engine, data=data, progress=progress, stop=stop, workers=workers,
               overall_progress=True, backend=backend, on_event=on_event)
    return dirs


def reevaluated(study: Study, dirs: dict[str, Path], data: DataCache, device: str) -> dict | None:
    """Each trained run evaluated again under the study's ``reevaluate`` protocol, without retraining.

    Such a protocol changes only how the test split is prepared (exercise 12's: the test split
    min–max scaled with the training split's statistics instead of its own), so the trained weights
    are the same under both protocols and only the validation numbers change. A run is evaluated
    again where the protocol changes its test split and leaves its training split as it is (the
    weights would differ otherwise). None when the study declares no such protocol or no run
    qualifies; else results.json's ``corrected`` block."""
    if study.reevaluate is None:
        return None
    protocol, configs = study.reevaluate
    dev = resolve_device(device)
    same: dict[tuple[int, int], bool] = {}  # (id of one test split, id of the other) -> fit to evaluate again
    runs = {}
    for name, cfg in study.runs.items():
        other = configs[name].data
        if other == cfg.data:
            continue
        x_train, x_val, _ = data.tensors(other, dev)
        x_train0, x_val0, _ = data.tensors(cfg.data, dev)
        key = (id(x_val), id(x_val0))
        if key not in same:
            same[key] = not torch.equal(x_val, x_val0) and torch.equal(x_train, x_train0)
        if not same[key]:
            continue
        model, _ = load_model(dirs[name], dev)
        with torch.no_grad():
            tot = 0.0
            for s in range(0, x_val.shape[0], 4096):
                xb = x_val[s:s + 4096]
                o = model(xb)
                tot += float(model.reconstruction(o, xb, cfg.train.loss) + o.penalty) * xb.shape[0]
        val = tot / x_val.shape[0]
        hist = read_dict(HistoryFile, dirs[name] / "history.json", f"delete {dirs[name]} and run the study again")
        runs[name] = {"name": name, "history": {"loss": hist["loss"][-1:], "val_loss": [val]},
                      "metrics": evaluate(model.encode, model.decode, x_val,
                                          sample_shape=tuple(cfg.model.input_shape))}
    if not runs:
        return None
    return {"protocol": protocol.name,
            "description": protocol.description or f"each trained run evaluated under protocol {protocol.name}",
            "runs": runs}


def run_study(study: Study, out: Path, *, device: str = "auto", engine: str = "auto", progress: bool = True,
              data_opts: DataOptions | None = None, report: Report | bool | None = None,
              stop: StopFlag | None = None, workers: int | None = None, seeds: int = 1,
              backend: str = "local", address: str | None = None, shared_fs: bool | None = None,
              on_event: OnEvent | None = None) -> StudyResult:
    """Train a study's runs into ``out/runs`` (each distinct config once) and write results.json.

    ``out`` is owned by this process while it runs (a second process writing the same study gets
    one clear error); on SIGINT/SIGTERM (or ``stop``) the running runs checkpoint, nothing new
    starts, and :class:`~aelab.engine.loop.Interrupted` says what each run holds — running the same
    study again resumes it. ``backend``/``address``/``shared_fs``: where the runs train (see
    :func:`aelab.runs.train_runs`); the results are the same on every backend. ``on_event``: every
    event of the study's training, one stream (:mod:`aelab.runs.events`). ``seeds`` K > 1: every
    run trained again with seeds seed+1 … seed+K−1 (results.json ``replicates``). ``report``: called
    with ``out`` once results.json is written (the CLI passes :func:`aelab.report.build_report`);
    None or False: nothing more is written. Returns what results.json holds, as a
    :class:`~aelab.study.result.StudyResult` (a dict that also opens its runs and shows itself in a notebook).
    """
    out = Path(out)
    report = report_step(report)
    data = DataCache(data_opts or DataOptions())
    study = fit_study(study)  # every model takes its input shape from its data (before any hash is taken)
    cfgs = study_configs(study, seeds)
    parts = (["quick"] if study.quick else []) + ([f"protocol {study.protocol}"] if study.protocol != BASE_PROTOCOL else [])
    mark = output_mark("study", study.name, list(study.runs.values()),
                       f"study {study.name} ({', '.join(parts + [data_text(cfgs)])})")
    check_output(out, mark)  # before a backend is started
    with opened(backend, address, shared_fs, out, cfgs) as be, owned_output(out, cfgs, data, mark):
        results = _run_study(study, out, device=device, engine=engine, progress=progress, data=data, stop=stop,
                             workers=workers, seeds=seeds, backend=be, on_event=on_event)
        if report:
            report(out)
        return StudyResult(results, out)


def report_step(report: Report | bool | None) -> Report | None:
    """The ``report`` argument of :func:`run_study`/``run_sweep`` as a function, or None."""
    if report is None or report is False:
        return None
    if not callable(report):
        raise TypeError("report: pass the function that builds the report (aelab.report.build_report), or None")
    return report


@contextlib.contextmanager
def opened(backend: str, address: str | None, shared_fs: bool | None, out: Path, cfgs: Sequence[RunConfig]):
    """The executor, connected before ``out`` is touched (an unreachable cluster writes nothing);
    this machine when every run is already trained (a cached study starts no Ray instance)."""
    with open_executor(backend, address=address, shared_fs=shared_fs) as be:
        if all(is_done(run_dir_for(out, c)) for c in cfgs):
            yield LocalExecutor()
            return
        if hasattr(be, "connect"):
            be.connect()
        yield be


def study_configs(study: Study, seeds: int) -> list[RunConfig]:
    """The study's runs, then each again with seeds seed+1 … seed+K−1 (what the seed alone decides)."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give 1 or more")
    names = list(study.runs)
    extra = []
    for k in range(1, seeds):
        for n in names:
            cfg = study.runs[n]
            s = cfg.train.seed + k
            extra.append(cfg.with_overrides({"train.seed": s}).model_copy(update={"name": f"{n}@seed{s}"}))
    return [study.runs[n] for n in names] + extra


def _run_study(study: Study, out: Path, *, device, engine, progress, data, stop, workers, seeds, backend,
               on_event) -> dict:
    t0 = time.perf_counter()
    names = list(study.runs)
    all_cfgs = study_configs(study, seeds)
    extra = {(n, c.train.seed): c for n, c in zip([n for _ in range(1, seeds) for n in names],
                                                   all_cfgs[len(names):])}
    all_dirs = train_all(out, all_cfgs, device=device, engine=engine, data=data, progress=progress, stop=stop,
                         workers=workers, backend=backend, on_event=on_event)
    dirs = dict(zip(names, all_dirs[:len(names)]))
    train_wall = time.perf_counter() - t0
    results: dict[str, Any] = {
        **results_head(),
        "study": study.name, "title": study.title, "description": study.description,
        "notes": [dict(n) for n in study.notes],
        "protocol": study.protocol, "quick": study.quick, "wall_seconds": train_wall,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "aelab_version": __version__,
        "device": str(backend.resolve_device(device)), "engine": engine, "backend": backend.name,
        "runs": {n: run_record(out, study.runs[n], dirs[n]) for n in names},
        "questions": [{"id": q.id, "section": q.section, "question": q.question, "baseline": q.baseline,
                       "variant": q.variant, "claims": [c.to_dict() for c in q.claims]} for q in study.questions],
    }
    if extra:
        extra_dirs = dict(zip(extra, all_dirs[len(names):]))
        seed_list = sorted({s for (_, s) in extra})
        results["replicates"] = {
            "seeds": [study.runs[names[0]].train.seed] + seed_list,
            "runs": {n: [results["runs"][n]] + [run_record(out, extra[(n, s)], extra_dirs[(n, s)]) for s in seed_list]
                     for n in names},
        }
    again = reevaluated(study, dirs, data, driver_device(backend, device))
    if again is not None:
        results["corrected"] = again
    results["wall_seconds_total"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    return results


def driver_device(backend, device: str) -> str:
    """Where the driver evaluates saved models: the training device on this machine; after Ray,
    the CPU if the runs trained on CPUs, else this machine's best (a cluster's GPU is not ours)."""
    if backend.name == "local":
        return device
    return "cpu" if backend.resolve_device(device).type == "cpu" else "auto"
