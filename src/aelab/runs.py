"""Run directories: from validated configs to trained, evaluated, saved runs.

``train_runs`` takes configs and the directories they go to, prepares each run's data on the
device, groups runs that can be trained side by side (same layer sizes, same optimiser and loop
settings, same clean data) into one :class:`StackedDenseStepper`, checkpoints every run at each
epoch end and on SIGINT/SIGTERM, resumes from those checkpoints, and finally writes each run's
artifacts (see ``docs/formats.md``). Every file is written atomically; ``DONE`` is written last.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import __version__
from ._atomic import atomic_path, check_out_path, ensure_dir, read_json, write_bytes, write_json
from ._lock import LOCK_NAME, dir_lock, is_lock_file
from .config import RunConfig, config_hash
from .engine.loop import (STREAM_INIT, Hooks, History, Interrupted, LoopState, StopFlag, TrainData, derived_seed,
                          fit)
from .engine import ckernels
from .engine import numerics
from .engine.steppers import ModelSpec, PlainStepper, StackedDenseStepper, can_stack, stack_key
from .errors import AelabError, ConfigError, WeightsError
from .latent_io import CODES_FILE, LATENT_LAYOUT, class_names, labels_for as latent_labels, record as record_codes
from .artifacts import sha256_file as _sha256  # the one file hash aelab checks against
from ._owned import clean_temps, foreign, is_own_temp, names_text, read_mark, remove_own, write_mark

CHECKPOINT = "checkpoint"
#: the mark aelab writes first into every run directory (docs/formats.md): the directory is aelab's
RUN_MARK = ".aelab-run.json"
RUN_FORMAT = "aelab-run"
#: every name aelab writes in a run directory: cleanup (--overwrite, a failed run's tidy-up, a dropped
#: checkpoint, temporary files) removes these and nothing else; a new artifact must be added here
RUN_LAYOUT = {
    RUN_MARK: None, "config.json": None, "history.json": None, "metrics.json": None, "samples.npz": None,
    "weights.safetensors": None, "recon.png": None, "run.json": None, "DONE": None, CODES_FILE: None,
    CHECKPOINT: {"state.safetensors": None, "state.json": None},
    "latent": dict(LATENT_LAYOUT),  # aelab latent's default output (aelab.latent_io)
}


# -- devices --------------------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise AelabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AelabError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return dev


# -- data -----------------------------------------------------------------------------------------
# The data cache lives in aelab.data.cache (re-exported here, where callers of old import it from).
from .data.cache import DataCache, DataOptions, data_key  # noqa: E402,F401


# -- run directories ------------------------------------------------------------------------------
def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / "DONE").exists()


def spec_of(cfg: RunConfig) -> ModelSpec:
    return ModelSpec(cfg.model, cfg.train.loss, derived_seed(cfg.train.seed, STREAM_INIT), cfg.train.seed)


def group_key(cfg: RunConfig, engine: str) -> tuple:
    """Runs with equal keys are trained side by side in one stepper."""
    t, d = cfg.train, cfg.data
    if engine == "plain" or not can_stack(spec_of(cfg)):
        return ("solo", id(cfg))
    return (stack_key(spec_of(cfg)), t.epochs, t.batch_size, t.seed, t.shuffle, t.lr, t.beta1, t.beta2, t.eps,
            data_key(d))


def save_checkpoint(run_dir: Path, cfg: RunConfig, tensors: dict[str, torch.Tensor], st: LoopState, m: int,
                    threads: Optional[int] = None) -> None:
    """Everything needed to continue run ``m`` of a group exactly where it stopped."""
    from safetensors.torch import save_file

    ck = Path(run_dir) / CHECKPOINT
    ck.mkdir(parents=True, exist_ok=True)
    t = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    if st.loss_rows is not None:
        t["loop.loss_rows"] = st.loss_rows[:, m].to("cpu").contiguous()
        t["loop.pen_rows"] = st.pen_rows[:, m].to("cpu").contiguous()
        if st.term_rows is not None:
            t["loop.term_rows"] = st.term_rows[:, m].to("cpu").contiguous()
    with atomic_path(ck / "state.safetensors") as tmp:
        save_file(t, str(tmp))
    write_json(ck / "state.json", {
        "config_hash": config_hash(cfg), "epoch": st.epoch, "batch": st.batch, "elapsed": st.elapsed,
        "history": st.histories[m].to_dict(), "threads": threads,
        "state_sha256": _sha256(ck / "state.safetensors"),
    })


def load_checkpoint(run_dir: Path, cfg: RunConfig):
    """(tensors, meta) of a run's checkpoint, or None when there is none or it is unusable.

    Used only when ``state.json`` is valid (aelab.artifacts.CheckpointMeta), is this config's, and
    ``state.safetensors`` has the SHA-256 it records and holds exactly the model's tensors, Adam's
    state and the loop's rows, in floating point; otherwise one warning line says the run starts
    again from the beginning."""
    from .artifacts import CheckpointMeta, checkpoint_problem, load_tensors, read_dict, sha256_file, warn
    from .models import build_model

    ck = Path(run_dir) / CHECKPOINT
    if not (ck / "state.json").exists():
        return None
    again = f"not used: {Path(run_dir).name} trains from the start"
    try:
        meta = read_dict(CheckpointMeta, ck / "state.json", again)
        if meta["config_hash"] != config_hash(cfg):
            raise AelabError(f"{ck / 'state.json'} is the checkpoint of another config; {again}")
        spath = ck / "state.safetensors"
        if not spath.is_file() or sha256_file(spath) != meta["state_sha256"]:
            raise AelabError(f"{spath} is missing or was modified after it was saved; {again}")
        tensors = load_tensors(spath, "checkpoint", again)
        why = checkpoint_problem(tensors, build_model(cfg.model), CheckpointMeta.model_validate(meta), cfg.train.epochs)
        if why:
            raise AelabError(f"{spath} does not fit the run ({why}); {again}")
    except AelabError as err:
        warn(str(err))
        return None
    return tensors, meta


def _checkpoint_position(run_dir: Path, cfg: RunConfig) -> Optional[tuple[int, int]]:
    """(epoch, batch) of a run's checkpoint when its state.json is valid and this config's, or None."""
    from .artifacts import CheckpointMeta, read

    path = Path(run_dir) / CHECKPOINT / "state.json"
    if not path.exists():
        return None
    try:
        meta = read(CheckpointMeta, path, "")
    except AelabError:
        return None
    return (meta.epoch, meta.batch) if meta.config_hash == config_hash(cfg) else None




def save_weights(path: Path, model: torch.nn.Module) -> str:
    from safetensors.torch import save_file

    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        # one metadata key: safetensors writes them from a hash map, in another order in each process,
        # so two keys made equal weights differ in their header bytes (the version is in run.json)
        save_file(sd, str(tmp), metadata={"format": "pt"})
    return _sha256(path)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a finished run's model from ``config.json`` and ``weights.safetensors``.

    Weights are read with safetensors (never pickle), and only when ``run.json`` is valid and
    records their SHA-256 (:func:`aelab.artifacts.verify_run`): a run without that record (no
    run.json, a damaged one, a null hash), weights or a config changed since training, a
    truncated file, or tensors that don't fit the config (names, shapes, floating point) are
    refused with one :class:`WeightsError` line.
    """
    from .artifacts import check_model_tensors, load_tensors, read_config, retrain_fix, verify_run
    from .models import build_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WeightsError(f"{run_dir} is not a directory; give a run directory written by aelab train or a study")
    if not (run_dir / "config.json").is_file():
        raise WeightsError(f"{run_dir} has no config.json; is it a run directory?")
    fix = retrain_fix(run_dir)
    cfg, recorded = read_config(run_dir, fix, WeightsError)
    verify_run(run_dir, recorded)
    wpath = run_dir / "weights.safetensors"
    sd = load_tensors(wpath, "weights", fix)
    model = build_model(cfg.model)
    check_model_tensors(sd, model, wpath, fix)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval(), cfg


# -- training --------------------------------------------------------------------------------------
@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    history: dict
    metrics: dict
    cached: bool = False


def prepare_run_dir(run_dir: Path, cfg: RunConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_mark(run_dir, cfg)  # the mark first: a directory with any run file in it is recognisably aelab's
    cfgd = cfg.to_dict()
    cfgd["config_hash"] = config_hash(cfg)
    write_json(run_dir / "config.json", cfgd)


def read_result(run_dir: Path, cfg: RunConfig) -> RunResult:
    """A finished run's history and metrics, used only when they are valid (aelab.artifacts) and its
    weights have the SHA-256 its run.json records for this config."""
    from .artifacts import HistoryFile, MetricsFile, read_dict, verify_run

    fix = f"the run directory is damaged; retrain it (overwrite=True, or aelab train --overwrite --out {run_dir})"
    verify_run(run_dir, config_hash(cfg))
    return RunResult(run_dir, cfg, read_dict(HistoryFile, run_dir / "history.json", fix),
                     read_dict(MetricsFile, run_dir / "metrics.json", fix), cached=True)


# -- who may write a run directory ------------------------------------------------------------------
def _entries(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if not is_lock_file(p.name)]


def write_run_mark(run_dir: Path, cfg: RunConfig) -> None:
    """Mark ``run_dir`` as an aelab run directory (for ``cfg``): written before any other run file."""
    write_mark(run_dir, RUN_MARK, {"format": RUN_FORMAT, "version": 1, "config_hash": config_hash(cfg)})


def _is_legacy_run_config(path: Path) -> bool:
    """A config.json as aelab wrote it before run directories were marked: the settings of a run
    (model, data, train) and the 16-hex-digit hash of them."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    h = d.get("config_hash") if isinstance(d, dict) else None
    return (isinstance(h, str) and len(h) == 16 and all(c in "0123456789abcdef" for c in h)
            and all(isinstance(d.get(k), dict) for k in ("model", "data", "train")))


def run_dir_state(run_dir: Path, cfg: RunConfig, overwrite: bool = False) -> str:
    """What training ``cfg`` into ``run_dir`` means: "new", "done", "resume" or "replace".

    The one rule the API, the CLI and the study runner share: a directory that already holds a
    run (finished, checkpointed or failed) is reused only for the config whose hash it records;
    anything else is refused with one line unless ``overwrite`` (which replaces a run directory,
    never a directory that is not one).

    A directory is aelab's when it carries :data:`RUN_MARK`, or (written before marks) when it
    holds nothing but the files aelab writes (:data:`RUN_LAYOUT`) and a config.json of aelab's
    shape. Anything else is refused, even with ``overwrite``; and ``overwrite`` also refuses an
    aelab run directory someone put other files into (it removes only aelab's own files, and
    will not leave a new run among someone else's).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise AelabError(f"{run_dir} is a file, not a run directory; choose another output directory")
    try:
        entries = [p for p in _entries(run_dir) if p.name != RUN_MARK and not is_own_temp(p.name, RUN_LAYOUT)]
        others = foreign(run_dir, RUN_LAYOUT)
    except OSError as exc:
        raise AelabError(f"{run_dir}: cannot list it ({exc.strerror}); check its permissions") from None
    if not entries:
        return "new"
    cpath = run_dir / "config.json"
    marked = (read_mark(run_dir, RUN_MARK) or {}).get("format") == RUN_FORMAT
    if not marked and (others or not _is_legacy_run_config(cpath)):
        what = f"it holds {names_text(others)}" if others else "no aelab config.json"
        raise AelabError(f"{run_dir} exists and is not a run directory aelab wrote ({what}); choose another output "
                         "directory (aelab never writes into, nor deletes from, a directory it did not make)")
    if overwrite or not cpath.is_file():
        if others:
            raise AelabError(f"{run_dir} holds files aelab did not write ({names_text(others)}); overwriting removes "
                             "only aelab's own files and never leaves a new run among others: move them out, or "
                             "choose another output directory")
        return "replace"  # overwrite, or aelab's own left-overs of a run that never recorded its config
    try:
        saved = json.loads(cpath.read_text()).get("config_hash")
    except (OSError, ValueError, AttributeError):
        raise AelabError(f"{cpath} is damaged; write to another directory, or pass overwrite=True "
                         "(--overwrite) to replace the run") from None
    want = config_hash(cfg)
    if saved != want:
        raise AelabError(f"{run_dir} holds a run of another config (config hash {saved} ≠ {want}); write to another "
                         "directory, or pass overwrite=True (--overwrite) to replace it")
    return "done" if is_done(run_dir) else "resume"


def _clear_run_dir(run_dir: Path) -> None:
    """Remove aelab's own files (run_dir_state has refused a directory holding anything else)."""
    remove_own(run_dir, RUN_LAYOUT)


def drop_checkpoint(run_dir: Path) -> None:
    """Remove a run's checkpoint files (only the ones aelab writes there)."""
    ck = Path(run_dir) / CHECKPOINT
    if ck.is_dir() and not ck.is_symlink():
        remove_own(run_dir, {CHECKPOINT: RUN_LAYOUT[CHECKPOINT]})


def _cleanup_unstarted(run_dir: Path, created: bool) -> None:
    """After a failure or an interruption: a run with nothing to resume leaves nothing behind
    (of aelab's own files: the mark, config.json, a checkpoint never completed, temporary files)."""
    if is_done(run_dir) or (run_dir / CHECKPOINT / "state.json").exists():
        return
    with contextlib.suppress(OSError):
        remove_own(run_dir, RUN_LAYOUT)
    if created:
        with contextlib.suppress(OSError):
            if not _entries(run_dir):
                (run_dir / LOCK_NAME).unlink(missing_ok=True)
                run_dir.rmdir()


def interruption_summary(why: str, run_dirs: Sequence[Path]) -> str:
    """One line: which signal stopped training, and what each run holds now."""
    done, saved, unstarted = [], [], []
    for rd in run_dirs:
        if is_done(rd):
            done.append(rd)
            continue
        try:
            from .artifacts import CheckpointMeta, read

            meta = read(CheckpointMeta, rd / CHECKPOINT / "state.json", "")
            saved.append(f"{rd.name} (epoch {meta.epoch + 1}, batch {meta.batch})")
        except AelabError:
            unstarted.append(rd)
    parts = [f"{why}: training stopped"]
    if saved:
        shown = ", ".join(saved[:4]) + (f" and {len(saved) - 4} more" if len(saved) > 4 else "")
        parts.append(f"checkpoint saved for {shown}")
    if unstarted:
        parts.append(f"{len(unstarted)} run{'s' if len(unstarted) > 1 else ''} not started")
    if done:
        parts.append(f"{len(done)} finished")
    return "; ".join(parts)


def train_runs(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], *, device: str = "auto", engine: str = "auto",
               data: Optional[DataCache] = None, progress: bool = True, resume: bool = True,
               stop: Optional[StopFlag] = None, workers: Optional[int] = None,
               overall_progress: bool = False, overwrite: bool = False,
               on_start: Optional[Callable[[list[Path]], None]] = None, backend="local",
               address: Optional[str] = None, shared_fs: Optional[bool] = None) -> list[RunResult]:
    """Train every config into its run directory (skipping finished ones); return the results.

    ``engine``: "auto"/"fast" group stackable runs, "plain" trains each alone with autograd.
    ``workers``: groups trained at once in separate processes (CPU only; default: one per core,
    at most one per group, each with ``cores // workers`` threads). Small steps scale badly over
    threads (each kernel is a thread barrier), so on a CPU whole groups in parallel processes use
    the cores far better than one group on all of them.
    ``overall_progress``: one progress bar over all the work (a study) instead of one per epoch.
    ``overwrite``: replace run directories that hold another run; without it a directory is reused
    only by the config it was written for (see :func:`run_dir_state`).
    ``on_start(dirs)``: called once, with the directories about to be trained, after everything
    has been validated and just before the first file is written.
    ``backend``: where the groups train — "local" (this machine), "ray" (a Ray cluster at
    ``address``, or a Ray instance started here) or a backend opened with
    :func:`aelab.backends.open_backend`; ``shared_fs``: whether Ray's workers see these run
    directories (default: only on this machine's own Ray instance). Same results on each.

    Every check that can fail (configs, data, directories, ownership) runs before anything is
    written. Each run directory is owned by this process while it trains (a second process gets
    one clear error). On SIGINT/SIGTERM (``stop``) every running group checkpoints after its
    current step, nothing new starts, and :class:`Interrupted` says what each run holds.
    """
    from .backends import open_backend

    with open_backend(backend, address=address, shared_fs=shared_fs) as be:
        return _train_runs(cfgs, run_dirs, be, device=device, engine=engine, data=data, progress=progress,
                           resume=resume, stop=stop, workers=workers, overall_progress=overall_progress,
                           overwrite=overwrite, on_start=on_start)


def _train_runs(cfgs, run_dirs, be, *, device, engine, data, progress, resume, stop, workers, overall_progress,
                overwrite, on_start) -> list[RunResult]:
    dev = be.resolve_device(device)
    data = data or DataCache()
    run_dirs = [Path(p) for p in run_dirs]
    if len(cfgs) != len(run_dirs):
        raise ValueError("one run directory per config")
    seen: dict[Path, int] = {}
    for i, rd in enumerate(run_dirs):
        key = check_out_path(rd, "run directory").resolve()  # a looping link: one line, not resolve()'s error
        if key in seen:
            raise AelabError(f"runs {cfgs[seen[key]].name!r} and {cfgs[i].name!r} were given the same directory "
                             f"{rd}; give each run its own")
        seen[key] = i
    states = [run_dir_state(rd, c, overwrite) for rd, c in zip(run_dirs, cfgs)]
    for i, st in enumerate(states):
        if st != "done":
            data.check(cfgs[i])  # data problems surface here, before any directory is touched
            if be.name == "local":  # a model too large for this machine, before anything is allocated
                from .models.memory import check_fits

                check_fits(cfgs[i], dev)
            if cfgs[i].model.init_weights:  # and starting weights that do not fit the model
                from .engine.steppers import build_initial_model

                build_initial_model(spec_of(cfgs[i]))
    stop = stop or StopFlag()
    results: dict[int, RunResult] = {}
    created = {i for i, rd in enumerate(run_dirs) if not rd.exists()}
    with contextlib.ExitStack() as owned:
        locked: list[int] = []
        try:
            for i, rd in enumerate(run_dirs):
                ensure_dir(rd, "run directory")
                owned.enter_context(dir_lock(rd))
                locked.append(i)
        except BaseException:  # another process owns one of them: leave no empty directories behind
            for i in locked:
                if i in created:
                    _cleanup_unstarted(run_dirs[i], True)
            raise
        try:
            # under the locks: what another process may have written meanwhile counts
            states = [run_dir_state(rd, c, overwrite) for rd, c in zip(run_dirs, cfgs)]
            todo = [i for i, st in enumerate(states) if st != "done"]
            for i, st in enumerate(states):
                if st == "done":
                    results[i] = read_result(run_dirs[i], cfgs[i])
        except BaseException:
            for i in created:
                _cleanup_unstarted(run_dirs[i], True)
            raise
        for rd in run_dirs:  # owned now: temporary files in them are a killed write's, never a live one's
            with contextlib.suppress(OSError):
                clean_temps(rd, RUN_LAYOUT)
        try:
            for i in todo:  # inside the try: a full disk here leaves no empty run directories either
                if states[i] == "replace":
                    _clear_run_dir(run_dirs[i])
                write_run_mark(run_dirs[i], cfgs[i])  # first, before any other file of the run
            if todo and on_start:
                on_start([run_dirs[i] for i in todo])
            _train_todo(cfgs, run_dirs, todo, results, dev, engine, data, progress, resume, stop, workers,
                        overall_progress, be)
        except Interrupted as err:
            for i in todo:
                _cleanup_unstarted(run_dirs[i], i in created)
            why = stop.requested or str(err).split(":")[0]
            raise Interrupted(interruption_summary(why, [run_dirs[i] for i in todo])) from None
        except BaseException:
            for i in todo:
                _cleanup_unstarted(run_dirs[i], i in created)
            raise
    return [results[i] for i in range(len(cfgs))]


def _train_todo(cfgs, run_dirs, todo, results, dev, engine, data, progress, resume, stop, workers,
                overall_progress, be) -> None:
    groups_by_key: dict[tuple, list[int]] = {}
    for i in todo:
        # runs resume together only from the same point (a group takes one loop state)
        pos = _checkpoint_position(run_dirs[i], cfgs[i]) if resume else None
        groups_by_key.setdefault(group_key(cfgs[i], engine) + (pos,), []).append(i)
    groups = list(groups_by_key.values())
    n_workers = be.plan_workers(workers, dev, len(todo))
    if dev.type == "cpu" and todo:
        # build (or find) the C kernels once, before any worker process needs them
        if ckernels.load() is None and progress and not ckernels.disabled():
            print(f"aelab: no fused C kernels ({ckernels.why_not()}); training with PyTorch's kernels: "
                  "the same results, about half the speed", file=sys.stderr)
    if n_workers > 1:
        groups = balance_groups(groups, lambda g: _group_cost([cfgs[i] for i in g]), n_workers)
    # largest first: the longest group starts at once and the others fill the remaining workers
    groups = sorted(groups, key=lambda g: -_group_cost([cfgs[i] for i in g]))
    n_workers = min(n_workers, len(groups))
    total = sum(cfgs[g[0]].train.epochs * len(g) for g in groups)
    bar = Progress(total, "training", "model-epoch", enabled=progress and overall_progress and total > 0)
    try:
        if be.in_process(n_workers):
            with stop:
                for members in groups:
                    if stop.requested:  # start nothing new after a signal
                        raise Interrupted(f"{stop.requested}: stopped before {cfgs[members[0]].name}")
                    bar.set_postfix_str(", ".join(cfgs[i].name for i in members)[:60])
                    res = _train_group([cfgs[i] for i in members], [run_dirs[i] for i in members], dev, engine, data,
                                       progress and not overall_progress, resume, stop,
                                       on_epoch=lambda k: bar.update(k))
                    for i, r in zip(members, res):
                        results[i] = r
        else:
            be.train_groups(cfgs, run_dirs, groups, dev, engine, data.opts, resume, stop, n_workers, bar)
            for g in groups:
                for i in g:
                    results[i] = read_result(run_dirs[i], cfgs[i])
    finally:
        bar.close()


class Progress:
    """Progress over a long job: a tqdm bar on a terminal; in a log (not a terminal), a plain line
    at every tenth of the work, so log files get readable milestones instead of redrawn bars."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._next = 0.1
        self._t0 = time.perf_counter()
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.enabled and self.total and self.n / self.total >= self._next - 1e-9:
            while self._next <= self.n / self.total + 1e-9:
                self._next += 0.1
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %), "
                  f"{time.perf_counter() - self._t0:.0f} s", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=refresh)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- scheduling and the local process pool: in aelab.backends (re-exported for callers of old) ------
from .backends.schedule import SPLIT_PENALTY, _group_cost, balance_groups, lpt_makespan, plan_workers  # noqa: E402,F401
from .backends.local import _group_worker, _signal_of, _train_parallel, _worker_init, _WorkerStop  # noqa: E402,F401


def _train_group(cfgs, run_dirs, dev, engine, data: DataCache, progress, resume, stop, on_epoch=None) -> list[RunResult]:
    t0 = time.perf_counter()
    t = cfgs[0].train
    specs = [spec_of(c) for c in cfgs]
    cks = [load_checkpoint(rd, c) for rd, c in zip(run_dirs, cfgs)] if resume else []
    usable = bool(cks) and all(ck is not None for ck in cks) and len({(ck[1]["epoch"], ck[1]["batch"]) for ck in cks}) == 1
    if engine == "plain" or not can_stack(specs[0]):
        # A resumed run takes the intra-op thread count it started with: where that count is the
        # process's (models with image layers, see steppers._default_threads), a study resumed with
        # other worker counts would otherwise round its convolutions differently from then on.
        threads = cks[0][1].get("threads") if usable else None
        stepper = PlainStepper(specs[0], t.lr, t.beta1, t.beta2, t.eps, dev, num_threads=threads)
    else:
        from .engine.graphs import dense_stepper_class  # on CUDA, the CUDA-graph step (AELAB_CUDA_GRAPHS=0: off)

        stepper = dense_stepper_class(dev)(specs, t.lr, t.beta1, t.beta2, t.eps, dev)
    datas = [data.train_data(c, dev) for c in cfgs]
    state = None
    if resume:
        if usable:
            stepper.load_state([{k: v for k, v in ck[0].items() if not k.startswith("loop.")} for ck in cks])
            meta = cks[0][1]
            state = LoopState(epoch=meta["epoch"], batch=meta["batch"], elapsed=meta["elapsed"],
                              histories=[History.from_dict(ck[1]["history"]) for ck in cks])
            if meta["batch"] > 0:
                state.loss_rows = torch.stack([ck[0]["loop.loss_rows"] for ck in cks], dim=1)
                state.pen_rows = torch.stack([ck[0]["loop.pen_rows"] for ck in cks], dim=1)
                if all("loop.term_rows" in ck[0] for ck in cks):
                    state.term_rows = torch.stack([ck[0]["loop.term_rows"] for ck in cks], dim=1)
    for rd, c in zip(run_dirs, cfgs):
        if state is None and (rd / CHECKPOINT).exists():
            drop_checkpoint(rd)
        prepare_run_dir(rd, c)

    threads_used = (stepper.threads.n or torch.get_num_threads()) if dev.type == "cpu" else None

    def checkpoint(st: LoopState) -> None:
        for m, (rd, c, tensors) in enumerate(zip(run_dirs, cfgs, stepper.state())):
            save_checkpoint(rd, c, tensors, st, m, threads=threads_used)

    def epoch_end(st: LoopState) -> None:
        checkpoint(st)
        if on_epoch:
            on_epoch(len(cfgs))

    names = [c.name for c in cfgs]
    desc = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
    st = fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle,
             state=state, hooks=Hooks(on_epoch_end=epoch_end, on_interrupt=checkpoint), stop=stop,
             progress=progress, desc=desc, names=names, terms=[s.term_names() for s in specs])
    wall = time.perf_counter() - t0
    out = []
    for m, (model, rd, c, d) in enumerate(zip(stepper.export_models(), run_dirs, cfgs, datas)):
        out.append(finish_run(rd, c, model, st.histories[m], d, dev, engine_name=type(stepper).__name__,
                              wall=wall, group=names, data_source=data.provenance(c.data), threads=threads_used,
                              labels=latent_labels(data, c.data), classes=class_names(data, c.data),
                              # trained without some classes: codes of the whole test split, held-out classes included
                              x_test=data.tensors(c.data, dev)[1] if c.data.exclude_labels else None))
    return out


def finish_run(run_dir: Path, cfg: RunConfig, model, history: History, d: TrainData, dev, *, engine_name: str,
               wall: float, group: Sequence[str], data_source: Optional[dict] = None,
               threads: Optional[int] = None, labels=None, x_test=None, classes: Sequence[str] = ()) -> RunResult:
    """Evaluate a trained model and write its artifacts; ``DONE`` last, then drop the checkpoint.

    ``labels``: (train labels, test labels) of the run's splits, or None: saved with the codes.
    ``x_test``: the whole test split when it differs from the validation split (a run trained without
    ``data.exclude_labels``): its codes and errors go into codes.npz, so the held-out classes can be scored."""
    from .metrics import evaluate

    from .models import family_of

    model.eval()
    noisy = d.noisy_val() if cfg.data.noise_factor > 0 else None
    metrics = evaluate(model.encode, model.decode, d.x_val, x_test_noisy=noisy,
                       sample_shape=tuple(cfg.model.input_shape))
    diag = family_of(cfg.model).diagnostics(model, d.x_val, cfg.model, cfg.train.loss)
    if diag:
        metrics["family"] = {"name": cfg.model.family, **diag}
    latent = record_codes(run_dir, model, cfg, d.x_train, d.x_val if x_test is None else x_test,
                          labels, classes)  # codes.npz (aelab.latent_io), with the classes' names
    if latent:
        metrics["latent"] = latent
    with torch.no_grad():  # not inference_mode: a contractive forward differentiates its encoder
        n = min(10, d.x_val.shape[0])
        samples = {"original": d.x_val[:n], "recon": model(d.x_val[:n]).recon}
        if noisy is not None:
            samples["noisy"] = noisy[:n]
            samples["recon_noisy"] = model(noisy[:n]).recon
    samples = {k: v.detach().to("cpu").float().numpy() for k, v in samples.items()}
    write_json(run_dir / "history.json", history.to_dict())
    write_json(run_dir / "metrics.json", metrics)
    with atomic_path(run_dir / "samples.npz", suffix=".npz") as tmp:
        np.savez(tmp, **samples)
    sha = save_weights(run_dir / "weights.safetensors", model)
    write_recon_png(run_dir / "recon.png", samples, shape=tuple(cfg.model.input_shape),
                    feature_mse=metrics.get("feature_mse"))
    write_json(run_dir / "run.json", {
        "config_hash": config_hash(cfg), "weights_sha256": sha, "config_sha256": _sha256(run_dir / "config.json"),
        "aelab_version": __version__,
        "device": str(dev), "engine": engine_name, "trained_with": list(group), "group_wall_seconds": wall,
        "data_source": data_source, "n_train": int(d.x_train.shape[0]), "threads": threads,
        "cpu_kernels": ckernels.status() if dev.type == "cpu" else None,
        "numerics": numerics.fingerprint() if dev.type == "cpu" else None,  # what the bits depend on
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    write_bytes(run_dir / "DONE", b"ok\n")  # atomic too: an empty DONE left by a full disk would mark the run done
    with contextlib.suppress(OSError):
        drop_checkpoint(run_dir)
        clean_temps(run_dir, RUN_LAYOUT)  # a killed write's temporary files, from before a resume
    return RunResult(run_dir, cfg, history.to_dict(), metrics)


def write_recon_png(path: Path, samples: dict, shape: Optional[tuple] = None,
                    feature_mse: Optional[Sequence[float]] = None) -> None:
    """The seed's ``compare_digits``: 10 test originals above their reconstructions, drawn in the
    data's ``shape`` (8×8, 28×28, RGB …). For vectors (a table): the reconstruction error of each
    feature over the test split (``feature_mse``), above the samples and their reconstructions."""
    from .report.figures import feature_error_plot, recon_grid

    rows = [("original", samples["original"]), ("reconstruction", samples["recon"])]
    if shape is not None and len(shape) == 1 and feature_mse is not None:
        png = feature_error_plot(feature_mse, rows)
    else:
        png = recon_grid(rows, n=len(samples["original"]), shape=shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
