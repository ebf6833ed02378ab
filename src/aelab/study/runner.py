"""Run a study or a sweep: train each distinct config once, write results.json, build the report.

Run directories live under ``<out>/runs/<name>-<hash8>``; the hash is the config's, so a
finished run is found again and never retrained, and an interrupted study resumes from the
checkpoints its runs left. ``results.json`` is rebuilt from the run directories every time, so it
always agrees with them.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .. import __version__
from .._atomic import ensure_dir, write_json
from .._lock import LOCK_NAME, dir_lock, is_lock_file
from .._owned import clean_temps, is_own_temp, names_text, read_mark, write_mark
from ..config import RunConfig, config_hash
from ..engine.loop import StopFlag
from ..errors import AelabError, ConfigError
from ..runs import RUN_MARK, DataCache, DataOptions, is_done, load_model, train_runs
from .spec import Study

#: the mark aelab writes first into a study's or sweep's output directory (docs/formats.md)
OUTPUT_MARK = ".aelab-output.json"
OUTPUT_FORMAT = "aelab-output"
#: what a study or sweep writes at the top of its output directory (its runs: runs/<name>-<hash8>/)
OUTPUT_LAYOUT = {OUTPUT_MARK: None, "results.json": None, "report.html": None, "report.md": None,
                 "figures": {"*.png": None}}


def fit_study(study: Study) -> Study:
    """The study with each run's model fitted to its data's sample shape (``aelab.data.fit_config``):
    the same study back when every shape fits already (MNIST, the shipped studies)."""
    import dataclasses

    from ..data import fit_config

    runs = {n: fit_config(c) for n, c in study.runs.items()}
    if all(runs[n] is study.runs[n] for n in runs):
        return study
    return dataclasses.replace(study, runs=runs)


def run_dir_for(out: Path, cfg: RunConfig) -> Path:
    return out / "runs" / f"{cfg.name}-{config_hash(cfg)[:8]}"


def _record(out: Path, cfg: RunConfig, rd: Path) -> dict:
    from ..artifacts import HistoryFile, MetricsFile, RunRecord, read_dict

    fix = f"the run directory is damaged; delete {rd} and run the study again to retrain it"
    return {
        "name": cfg.name,
        "dir": str(rd.relative_to(out)),
        "config": {**cfg.to_dict(), "config_hash": config_hash(cfg)},
        "history": read_dict(HistoryFile, rd / "history.json", fix),
        "metrics": read_dict(MetricsFile, rd / "metrics.json", fix),
        "run": read_dict(RunRecord, rd / "run.json", fix),  # train_runs verified its weights against it
    }


def _train_all(out: Path, cfgs: Sequence[RunConfig], *, device: str, engine: str, data: DataCache,
               progress: bool, stop: Optional[StopFlag], workers: Optional[int] = None, backend="local") -> list[Path]:
    dirs = [run_dir_for(out, c) for c in cfgs]
    todo = sum(not is_done(d) for d in dirs)
    if progress and todo < len(dirs):
        print(f"{len(dirs) - todo} of {len(dirs)} runs already trained (cached in {out / 'runs'})")

    train_runs(cfgs, dirs, device=device, engine=engine, data=data, progress=progress, stop=stop, workers=workers,
               overall_progress=True, backend=backend)
    return dirs


def corrected_block(out: Path, study: Study, dirs: dict[str, Path], data: DataCache, device: str) -> dict:
    """The seed's test-scaling flaw, measured without retraining.

    Under the seed's protocol the training split is scaled with its own min–max (as in the
    corrected protocol) and only the *test* split is scaled with statistics fitted on itself.
    Training never sees the test split, so the trained weights are the same under both protocols;
    only the validation numbers change. We therefore evaluate each trained model on the test split
    scaled with the training split's statistics.
    """
    from ..metrics import evaluate
    from ..artifacts import HistoryFile, read_dict
    from ..runs import resolve_device

    dev = resolve_device(device)
    runs = {}
    for name, cfg in study.runs.items():
        if cfg.data.scaling != "minmax" or cfg.data.scaler_fit != "per_split":
            continue
        fixed = cfg.data.model_copy(update={"scaler_fit": "train"})
        _, x_val, _ = data.tensors(fixed, dev)
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
    return {"description": "each trained model evaluated on the test split scaled with the training split's min–max",
            "runs": runs}


def run_study(study: Study, out: Path, *, device: str = "auto", engine: str = "auto", progress: bool = True,
              data_opts: DataOptions = DataOptions(), report: bool = True, stop: Optional[StopFlag] = None,
              workers: Optional[int] = None, seeds: int = 1, backend: str = "local", address: Optional[str] = None,
              shared_fs: Optional[bool] = None) -> dict:
    """Train a study's runs into ``out/runs`` (each distinct config once), write results.json and the report.

    ``out`` is owned by this process while it runs (a second process writing the same study gets
    one clear error); on SIGINT/SIGTERM the running runs checkpoint, nothing new starts, and
    :class:`~aelab.engine.loop.Interrupted` says what each run holds — running the same study
    again resumes it. ``backend``/``address``/``shared_fs``: where the runs train (see
    :func:`aelab.runs.train_runs`); the results are the same on every backend.
    """
    out = Path(out)
    data = DataCache(data_opts)
    study = fit_study(study)  # every model takes its input shape from its data (before any hash is taken)
    cfgs = _study_configs(study, seeds)
    parts = (["quick"] if study.quick else []) + ([f"protocol {study.protocol}"] if study.protocol != "seed" else [])
    mark = output_mark("study", study.name, list(study.runs.values()),
                       f"study {study.name} ({', '.join(parts + [_data_text(cfgs)])})")
    check_output(out, mark)  # before a backend is started
    with _opened(backend, address, shared_fs, out, cfgs) as be, owned_output(out, cfgs, data, mark):
        return _run_study(study, out, device=device, engine=engine, progress=progress, data=data,
                          report=report, stop=stop, workers=workers, seeds=seeds, backend=be)


@contextlib.contextmanager
def _opened(backend: str, address: Optional[str], shared_fs: Optional[bool], out: Path, cfgs: Sequence[RunConfig]):
    """The backend, connected before ``out`` is touched (an unreachable cluster writes nothing);
    this machine when every run is already trained (a cached study starts no Ray instance)."""
    from ..backends import open_backend
    from ..backends.local import LocalBackend

    with open_backend(backend, address=address, shared_fs=shared_fs) as be:
        if all(is_done(run_dir_for(out, c)) for c in cfgs):
            yield LocalBackend()
            return
        if hasattr(be, "connect"):
            be.connect()
        yield be


@contextlib.contextmanager
def owned_output(out: Path, cfgs: Sequence[RunConfig], data: DataCache, mark: Optional[dict] = None):
    """Validate every run's data, then create ``out`` and own it (a lock) for the block.

    Nothing is written before the checks pass; a second process on the same ``out`` gets one line.
    ``mark`` (:func:`output_mark`): what ``out`` is for; a directory holding anything else is refused
    (:func:`check_output`), and the mark is written first.
    """
    if mark is not None:
        check_output(out, mark)
    for c in cfgs:
        if not is_done(run_dir_for(out, c)):
            data.check(c)
    created = not out.exists()
    ensure_dir(out)
    with dir_lock(out):
        try:
            if mark is not None:
                check_output(out, mark)  # under the lock: what another process wrote meanwhile counts
                with contextlib.suppress(OSError):
                    clean_temps(out, OUTPUT_LAYOUT)  # a killed write's temporary files (results, report, figures)
                write_mark(out, OUTPUT_MARK, mark)
            yield
        except BaseException:
            if created:  # failed before any run saved anything (a full disk, bad data): leave no empty folder
                _drop_if_empty(out)
            raise


def _drop_if_empty(out: Path) -> None:
    """Remove ``out`` when it holds nothing but its mark, an empty ``runs/`` and its lock file."""
    with contextlib.suppress(OSError):
        rest = [p for p in out.iterdir() if not is_lock_file(p.name) and p.name != OUTPUT_MARK]
        if any(p.name != "runs" or not p.is_dir() or any(p.iterdir()) for p in rest):
            return
        for p in rest:
            p.rmdir()
        (out / OUTPUT_MARK).unlink(missing_ok=True)
        (out / LOCK_NAME).unlink(missing_ok=True)
        out.rmdir()


# -- one output directory holds one study or one sweep -------------------------------------------------
def _data_text(cfgs: Sequence[RunConfig]) -> str:
    names = sorted({Path(c.data.dataset).name or c.data.dataset for c in cfgs})
    return f"data {', '.join(names)}"


def output_mark(kind: str, name: str, cfgs: Sequence[RunConfig], describe: str) -> dict:
    """The mark of an output directory holding the ``kind`` ("study" or "sweep") called ``name``,
    whose runs are ``cfgs`` (seed replicates left out: adding --seeds later extends the same one);
    ``describe``: how a message names it."""
    return {"format": OUTPUT_FORMAT, "version": 1, "kind": kind, "name": name, "describe": describe,
            "config_hashes": sorted({config_hash(c) for c in cfgs})}


def _same_output(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("kind", "name", "config_hashes"))


def _legacy_mark(out: Path) -> Optional[dict]:
    """What an output directory written before marks holds, from its results.json; None if it has none."""
    try:
        res = json.loads((out / "results.json").read_text(encoding="utf-8"))
        kind = "sweep" if isinstance(res.get("sweep"), str) else "study" if isinstance(res.get("study"), str) else None
        hashes = sorted({r["config"]["config_hash"] for r in res["runs"].values()})
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if kind is None:
        return None
    return {"kind": kind, "name": res[kind], "config_hashes": hashes,
            "describe": f"{kind} {res[kind]}" + (" (quick)" if res.get("quick") else "")}


def _only_cached_runs(entries: list[Path]) -> bool:
    """Written before marks and interrupted before its results.json: nothing but runs/<name>-<hash8>/."""
    if [p.name for p in entries] != ["runs"] or not entries[0].is_dir() or entries[0].is_symlink():
        return False
    return all(p.is_dir() and not p.is_symlink() and len(p.name) > 9 and p.name[-9] == "-"
               and all(c in "0123456789abcdef" for c in p.name[-8:]) for p in entries[0].iterdir())


def check_output(out: Path, mark: dict) -> None:
    """Refuse, with one line and before anything is written, an output directory that holds anything
    but the study or sweep ``mark`` names: another study or sweep, a run directory, or files aelab
    did not write. A new or empty directory, and this study's or sweep's own, are fine."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise AelabError(f"--out {out} is a file, not a directory; give --out a directory path")
    try:
        entries = sorted(p for p in out.iterdir() if not is_lock_file(p.name)
                         and not is_own_temp(p.name, OUTPUT_LAYOUT))
    except OSError as exc:
        raise AelabError(f"--out {out}: cannot list it ({exc.strerror}); check its permissions") from None
    if not entries or [p.name for p in entries] == [OUTPUT_MARK]:
        return
    theirs = read_mark(out, OUTPUT_MARK)
    if theirs is None or theirs.get("format") != OUTPUT_FORMAT:
        theirs = _legacy_mark(out)
    if theirs is None and _only_cached_runs(entries):
        return
    if theirs is not None and _same_output(theirs, mark):
        return
    if theirs is not None:
        held = str(theirs.get("describe") or f"{theirs.get('kind')} {theirs.get('name')}")
        if held == mark["describe"]:
            held += " with other run settings"
        what = f"already holds {held}; this is {mark['describe']}"
    elif (out / RUN_MARK).exists() or (out / "config.json").exists():
        what = "is a run directory"
    else:
        what = "holds files aelab did not write there (" + names_text(
            [p.name + ("/" if p.is_dir() else "") for p in entries]) + ")"
    raise AelabError(f"--out {out} {what}; one directory holds one study or sweep (nothing is replaced): give "
                     "--out a new or empty directory")


def _study_configs(study: Study, seeds: int) -> list[RunConfig]:
    """The study's runs, then each again with seeds seed+1 … seed+K−1 (what the seed alone decides)."""
    names = list(study.runs)
    extra = []
    for k in range(1, max(1, seeds)):
        for n in names:
            cfg = study.runs[n]
            s = cfg.train.seed + k
            extra.append(cfg.with_overrides({"train.seed": s}).model_copy(update={"name": f"{n}@seed{s}"}))
    return [study.runs[n] for n in names] + extra


def _run_study(study: Study, out: Path, *, device, engine, progress, data, report, stop, workers, seeds,
               backend) -> dict:
    t0 = time.perf_counter()
    names = list(study.runs)
    all_cfgs = _study_configs(study, seeds)
    extra = {(n, c.train.seed): c for n, c in zip([n for _ in range(1, max(1, seeds)) for n in names],
                                                   all_cfgs[len(names):])}
    all_dirs = _train_all(out, all_cfgs, device=device, engine=engine, data=data, progress=progress, stop=stop,
                          workers=workers, backend=backend)
    dirs = dict(zip(names, all_dirs[:len(names)]))
    train_wall = time.perf_counter() - t0
    results: dict[str, Any] = {
        "study": study.name, "title": study.title, "description": study.description,
        "notes": [dict(n) for n in study.notes],
        "protocol": study.protocol, "quick": study.quick, "wall_seconds": train_wall,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "aelab_version": __version__,
        "device": str(backend.resolve_device(device)), "engine": engine, "backend": backend.name,
        "runs": {n: _record(out, study.runs[n], dirs[n]) for n in names},
        "questions": [{"id": q.id, "section": q.section, "question": q.question, "baseline": q.baseline,
                       "variant": q.variant, "claims": [dict(c) for c in q.claims]} for q in study.questions],
    }
    if extra:
        extra_dirs = dict(zip(extra, all_dirs[len(names):]))
        seed_list = sorted({s for (_, s) in extra})
        results["replicates"] = {
            "seeds": [study.runs[names[0]].train.seed] + seed_list,
            "runs": {n: [results["runs"][n]] + [_record(out, extra[(n, s)], extra_dirs[(n, s)]) for s in seed_list]
                     for n in names},
        }
    if study.protocol == "seed":
        corrected = corrected_block(out, study, dirs, data, _driver_device(backend, device))
        if corrected["runs"]:  # only a study whose runs fit the scaler on each split has the flaw
            results["corrected"] = corrected
    results["wall_seconds_total"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    if report:
        from ..report import build_report

        build_report(out)
    return results


def _protocol_of(cfg: RunConfig) -> str:
    """How a run scales its test split: "seed" (each split with its own min–max, as the notebook),
    "corrected" (min–max fitted on the training split) or "unit" (x/255, nothing fitted)."""
    if cfg.data.scaling != "minmax":
        return "unit"
    return "seed" if cfg.data.scaler_fit == "per_split" else "corrected"


def _driver_device(backend, device: str) -> str:
    """Where the driver evaluates saved models: the training device on this machine; after Ray,
    the CPU if the runs trained on CPUs, else this machine's best (a cluster's GPU is not ours)."""
    if backend.name == "local":
        return device
    return "cpu" if backend.resolve_device(device).type == "cpu" else "auto"


# -- sweeps ----------------------------------------------------------------------------------------
def parse_values(text: str) -> list[Any]:
    """``"0.1,0.2,0.4"`` → floats/ints; ``"1e-6..1e-1:6"`` → 6 log-spaced values; ``"2..256:8"`` likewise;
    ``"[0],[1],[3,5]"`` → lists (commas inside brackets belong to the list)."""
    from ..config import parse_value

    text = text.strip()
    if ".." in text:
        rng, _, count = text.partition(":")
        lo_s, _, hi_s = rng.partition("..")
        missing = [name for name, part in (("LO", lo_s), ("HI", hi_s), ("COUNT", count)) if not part.strip()]
        if missing:
            example = f"{rng.strip()}:6" if missing == ["COUNT"] else "1e-6..1e-1:6"
            raise ConfigError(f"--values {text!r}: the range has no {' and no '.join(missing)}; write LO..HI:COUNT, "
                              f"e.g. {example} for 6 log-spaced values")
        try:
            lo, hi, k = float(lo_s), float(hi_s), int(count)
        except ValueError:
            raise ConfigError(f"--values {text!r}: write a list (0.1,0.2) or a log range LO..HI:COUNT (1e-6..1e-1:6)") from None
        if k < 2 or lo <= 0 or hi <= lo:
            wrong = (f"COUNT is {k}" if k < 2 else f"LO is {lo_s.strip()}" if lo <= 0
                     else f"HI {hi_s.strip()} is not above LO {lo_s.strip()}")
            raise ConfigError(f"--values {text!r}: a range needs 0 < LO < HI and COUNT ≥ 2 ({wrong})")
        vals = [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)]
        if lo_s.strip().lstrip("-").isdigit() and hi_s.strip().lstrip("-").isdigit():
            return sorted({int(round(v)) for v in vals})
        return [float(f"{v:.6g}") for v in vals]
    vals = [parse_value(p.strip()) for p in _split_top(text) if p.strip()]
    if not vals:
        raise ConfigError("--values is empty; give a comma-separated list such as 0.1,0.3,0.6")
    return vals


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets: ``"[0],[3,5]"`` → ``["[0]", "[3,5]"]`` (each value may be a
    list, e.g. the classes data.exclude_labels leaves out)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--values {text!r}: a ']' without its '['; write lists as [0],[3,5]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ConfigError(f"--values {text!r}: a '[' is not closed; write lists as [0],[3,5]")
    return parts + [cur]


def sweep_configs(base: RunConfig, parameter: str, values: Sequence[Any]) -> list[RunConfig]:
    cfgs = []
    for v in values:
        if parameter in ("model.code_size", "code_size"):
            enc = list(base.to_dict()["model"]["encoder"])
            if not isinstance(enc[-1], str):
                raise ConfigError(f"--param {parameter}: the last encoder layer of {base.name} is not a dense layer; "
                                  "sweep its own key instead (e.g. the filters of a conv layer via a config file)")
            act = enc[-1].split(":")[1]
            enc[-1] = f"{int(v)}:{act}"
            cfg = base.with_overrides({"model.encoder": enc})
        else:
            cfg = base.with_overrides({parameter: v})
        cfgs.append(cfg.model_copy(update={"name": f"{base.name}-{parameter.split('.')[-1]}={v}"}))
    return cfgs


def run_sweep(base: RunConfig, parameter: str, values: Sequence[Any], out: Path, *, device: str = "auto",
              engine: str = "auto", progress: bool = True, data_opts: DataOptions = DataOptions(),
              report: bool = True, stop: Optional[StopFlag] = None, workers: Optional[int] = None,
              quick: bool = False, backend: str = "local", address: Optional[str] = None,
              shared_fs: Optional[bool] = None, seeds: int = 1) -> dict:
    """Train ``base`` once per value of ``parameter`` into ``out`` and write results.json (and the report);
    ``backend``/``address``/``shared_fs`` as for :func:`run_study`. ``seeds`` K > 1: each value is
    trained again with seeds seed+1 … seed+K−1 (results.json ``replicates``, as a study's), so the
    report can show the spread the seed alone causes."""
    out = Path(out)
    from ..data import fit_config

    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give 1 or more")
    cfgs = [fit_config(c) for c in sweep_configs(base, parameter, values)]
    extra = [c.with_overrides({"train.seed": c.train.seed + k}).model_copy(
                 update={"name": f"{c.name}@seed{c.train.seed + k}"}) for k in range(1, seeds) for c in cfgs]
    data = DataCache(data_opts)
    vals = ",".join(str(v) for v in values)
    mark = output_mark("sweep", f"{base.name}: {parameter}", cfgs,
                       f"sweep {base.name}: {parameter} over {vals if len(vals) <= 60 else vals[:57] + '...'} "
                       f"({', '.join((['quick'] if quick else []) + [_data_text(cfgs)])})")
    check_output(out, mark)  # before a backend is started
    with _opened(backend, address, shared_fs, out, cfgs + extra) as be, owned_output(out, cfgs + extra, data, mark):
        return _run_sweep(base, parameter, values, cfgs, out, device=device, engine=engine, progress=progress,
                          data=data, report=report, stop=stop, workers=workers, quick=quick, backend=be,
                          extra=extra)


def _run_sweep(base, parameter, values, cfgs, out, *, device, engine, progress, data, report, stop, workers,
               quick, backend, extra=()) -> dict:
    t0 = time.perf_counter()
    all_dirs = _train_all(out, list(cfgs) + list(extra), device=device, engine=engine, data=data,
                          progress=progress, stop=stop, workers=workers, backend=backend)
    dirs = all_dirs[:len(cfgs)]
    runs = {c.name: _record(out, c, d) for c, d in zip(cfgs, dirs)}
    log_x = all(isinstance(v, (int, float)) and v > 0 for v in values) and max(values) / min(values) >= 50
    results = {
        "sweep": f"{base.name}: {parameter}", "parameter": parameter, "values": list(values), "log_x": log_x,
        "quick": quick, "protocol": _protocol_of(base),
        "wall_seconds": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "aelab_version": __version__, "runs": runs,
        "points": [{"value": v, "run": c.name} for v, c in zip(values, cfgs)], "baseline": None,
    }
    if extra:  # seed replicates of every point, the point's own run first (as a study's "replicates")
        k = len(extra) // len(cfgs) + 1
        recs = [_record(out, c, d) for c, d in zip(extra, all_dirs[len(cfgs):])]
        results["replicates"] = {
            "seeds": [cfgs[0].train.seed + j for j in range(k)],
            "runs": {c.name: [runs[c.name]] + [recs[j * len(cfgs) + i] for j in range(k - 1)]
                     for i, c in enumerate(cfgs)},
        }
    write_json(out / "results.json", results)
    if report:
        from ..report import build_sweep_report

        build_sweep_report(out)
    return results

