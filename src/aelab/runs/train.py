"""``train_runs``: from validated configs to trained, evaluated, saved runs.

It makes each run's :class:`~aelab.runs.spec.RunSpec` (the one place a run's fingerprint is
computed), checks everything that can fail before anything is written (configs, data, memory,
directories, ownership), owns the run directories while it trains (their locks), groups runs
that can be trained side by side (``group.py``), balances the groups over the workers
(``executors/schedule.py``) and hands them to an executor (``executors/``); events of every run
reach ``on_event`` in this process (``events.py``). Stopped by a signal or :class:`Stop`, it
raises :class:`~aelab.engine.loop.Interrupted` saying what each run holds.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .._atomic import check_out_path, ensure_dir
from .._lock import dir_lock
from .._owned import clean_temps
from ..config import RunConfig
from ..data.cache import DataCache
from .. import kernels as ckernels
from ..engine.loop import Interrupted, StopFlag
from ..engine.steppers import build_initial_model
from ..errors import AelabError, ConfigError
from ..models import family_of
from .codes import labels_for
from ..engine.memory import check_fits
from .directory import (RUN_LAYOUT, RunResult, checkpoint_position, cleanup_unstarted, clear_run_dir,
                        interruption_summary, read_result, run_dir_state, write_run_mark)
from .events import OnEvent, Tracker
from .executors import Executor, open_executor
from .executors.schedule import group_cost, balance_groups
from .finish import FINISH_STEPS
from .group import NO_LABELS, GroupJob, group_key
from .progress import RunProgress, fan_out
from .spec import RunSpec


@dataclass(frozen=True)
class TrainOptions:
    """How a ``train_runs`` call trains (its plain-value keywords, in one frozen object).

    ``device``: "auto", "cpu", "cuda" or "cuda:N" (where the executor trains). ``engine``:
    "auto"/"fast" group stackable runs, "plain" trains each alone with autograd. ``progress``:
    show progress on stderr. ``overall_progress``: one bar over the whole call
    (:class:`~aelab.runs.RunProgress`, a study's) instead of the loop's per-epoch output.
    ``resume``: continue from checkpoints. ``workers``: groups trained at once (default: one per
    core on a CPU). ``overwrite``: replace run directories that hold another run. ``figures``: draw
    each run's recon.png (False: skipped; an opened run draws it on demand)."""

    device: str = "auto"
    engine: str = "auto"
    progress: bool = True
    overall_progress: bool = False
    resume: bool = True
    workers: Optional[int] = None
    overwrite: bool = False
    figures: bool = True


def train_runs(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], *, device: str = "auto", engine: str = "auto",
               data: Optional[DataCache] = None, progress: bool = True, resume: bool = True,
               stop: Optional[StopFlag] = None, workers: Optional[int] = None,
               overall_progress: bool = False, overwrite: bool = False,
               on_start: Optional[Callable[[list[Path]], None]] = None, backend="local",
               address: Optional[str] = None, shared_fs: Optional[bool] = None,
               on_event: Optional[OnEvent] = None, options: Optional[TrainOptions] = None) -> list[RunResult]:
    """Train every config into its run directory (skipping finished ones); return the results.

    ``engine``: "auto"/"fast" group stackable runs, "plain" trains each alone with autograd.
    ``workers``: groups trained at once in separate processes (CPU only; default: one per core,
    at most one per group, each with ``cores // workers`` threads). Small steps scale badly over
    threads (each kernel is a thread barrier), so on a CPU whole groups in parallel processes use
    the cores far better than one group on all of them.
    ``overall_progress``: one progress bar over all the work (a study) instead of one per epoch.
    ``overwrite``: replace run directories that hold another run; without it a directory is reused
    only by the config it was written for (see :func:`aelab.runs.directory.run_dir_state`).
    ``options``: these plain keywords as one :class:`TrainOptions` (it replaces them).
    ``on_start(dirs)``: called once, with the directories about to be trained, after everything
    has been validated and just before the first file is written.
    ``on_event(event)``: every event of every run (:mod:`aelab.runs.events`), in this process.
    ``stop``: a :class:`~aelab.runs.events.Stop` (or any stop flag): ``stop.set()`` stops
    training as SIGINT/SIGTERM do.
    ``backend``: where the groups train — "local" (this machine), "ray" (a Ray cluster at
    ``address``, or a Ray instance started here), another name of
    :data:`aelab.runs.executors.EXECUTORS`, or an executor opened with
    :func:`aelab.runs.executors.open_executor`; ``shared_fs``: whether Ray's workers see these run
    directories (default: only on this machine's own Ray instance). Same results on each.

    Every check that can fail (configs, data, directories, ownership) runs before anything is
    written. Each run directory is owned by this process while it trains (a second process gets
    one clear error). On SIGINT/SIGTERM or ``stop.set()`` every running group checkpoints after
    its current step, nothing new starts, and :class:`Interrupted` says what each run holds.
    """
    opts = options or TrainOptions(device=device, engine=engine, progress=progress, overall_progress=overall_progress,
                                   resume=resume, workers=workers, overwrite=overwrite)
    with open_executor(backend, address=address, shared_fs=shared_fs) as ex:
        return _train_runs(cfgs, run_dirs, ex, opts, data=data or DataCache(), stop=stop or StopFlag(),
                           on_start=on_start, on_event=on_event)


def _train_runs(cfgs: Sequence[RunConfig], run_dirs: Sequence[Path], ex: Executor, opts: TrainOptions, *,
                data: DataCache, stop: StopFlag, on_start, on_event) -> list[RunResult]:
    dev = ex.resolve_device(opts.device)
    if len(cfgs) != len(run_dirs):
        raise ValueError("one run directory per config")
    seen: dict[Path, int] = {}
    for i, rd in enumerate(run_dirs):
        key = check_out_path(Path(rd), "run directory").resolve()  # a looping link: one line, not resolve()'s error
        if key in seen:
            raise AelabError(f"runs {cfgs[seen[key]].name!r} and {cfgs[i].name!r} were given the same directory "
                             f"{rd}; give each run its own")
        seen[key] = i
    specs = [RunSpec.of(c, rd, i, data) for i, (c, rd) in enumerate(zip(cfgs, run_dirs))]
    for s in specs:
        if run_dir_state(s, opts.overwrite) != "done":
            data.check(s.config)  # data problems surface here, before any directory is touched
            check_labels(s.config, data)  # a conditional model's labels too
            if ex.name == "local":  # a model too large for this machine, before anything is allocated
                check_fits(s.config, dev)
            if s.config.model.init_weights:  # and starting weights that do not fit the model
                build_initial_model(s.model_spec)
    results: dict[int, RunResult] = {}
    created = {s.index for s in specs if not s.run_dir.exists()}
    with contextlib.ExitStack() as owned:
        locked: list[RunSpec] = []
        try:
            for s in specs:
                ensure_dir(s.run_dir, "run directory")
                owned.enter_context(dir_lock(s.run_dir))
                locked.append(s)
        except BaseException:  # another process owns one of them: leave no empty directories behind
            for s in locked:
                if s.index in created:
                    cleanup_unstarted(s.run_dir, True)
            raise
        try:
            # under the locks: what another process may have written meanwhile counts
            states = [run_dir_state(s, opts.overwrite) for s in specs]
            todo = [s for s, st in zip(specs, states) if st != "done"]
            for s, st in zip(specs, states):
                if st == "done":
                    results[s.index] = read_result(s)
        except BaseException:
            for i in created:
                cleanup_unstarted(specs[i].run_dir, True)
            raise
        for s in specs:  # owned now: temporary files in them are a killed write's, never a live one's
            with contextlib.suppress(OSError):
                clean_temps(s.run_dir, RUN_LAYOUT)
        try:
            for s in todo:  # inside the try: a full disk here leaves no empty run directories either
                if states[s.index] == "replace":
                    clear_run_dir(s.run_dir)
                write_run_mark(s)  # first, before any other file of the run
            if todo and on_start:
                on_start([s.run_dir for s in todo])
            with stop:  # from here on SIGINT/SIGTERM stop training in order (a checkpoint, then Interrupted)
                _train_todo(todo, results, ex, opts, dev, data, stop, on_event)
                if stop.requested:  # it came too late to stop a run, but the caller asked to stop
                    raise Interrupted(f"{stop.requested}: stopped after the last run finished")
        except BaseException as err:
            for s in todo:
                cleanup_unstarted(s.run_dir, s.index in created)
            if isinstance(err, Interrupted) or (stop.requested and isinstance(err, AelabError)):
                why = stop.requested or str(err).split(":")[0]
                line = interruption_summary(why, [s.run_dir for s in todo])
                if not isinstance(err, Interrupted):  # a failure that came with the stop: said, not hidden
                    line += f"; after the stop: {err}"
                raise Interrupted(line) from None
            raise
    return [results[s.index] for s in specs]


def check_labels(cfg: RunConfig, data: DataCache) -> None:
    """A conditional family (``Family.conditional``) needs a label per sample, each within its
    ``model.classes``: one :class:`~aelab.errors.ConfigError` line otherwise, before anything is written."""
    if not family_of(cfg.model).conditional:
        return
    ytr, yte = labels_for(data, cfg.data)
    if ytr is None or yte is None:
        raise ConfigError(f"{cfg.data.dataset} has no labels; {NO_LABELS}")
    k = int(getattr(cfg.model, "classes", 0))
    top = int(max(np.max(ytr, initial=0), np.max(yte, initial=0)))
    low = int(min(np.min(ytr, initial=0), np.min(yte, initial=0)))
    if low < 0 or top >= k:
        raise ConfigError(f"{cfg.data.dataset} has labels from {low} to {top}, but model.classes is {k}; set "
                          f"model.classes = {top + 1} (--set model.classes={top + 1})")


def _train_todo(todo: Sequence[RunSpec], results: dict[int, RunResult], ex: Executor, opts: TrainOptions,
                dev: torch.device, data: DataCache, stop: StopFlag, on_event: Optional[OnEvent]) -> None:
    """Group and balance the runs still to train, and have the executor train them."""
    groups_by_key: dict[tuple, list[RunSpec]] = {}
    for s in todo:
        # runs resume together only from the same point (a group takes one loop state)
        pos = checkpoint_position(s) if opts.resume else None
        groups_by_key.setdefault(group_key(s, opts.engine) + (pos,), []).append(s)
    groups = list(groups_by_key.values())
    n_workers = ex.plan_workers(opts.workers, dev, len(todo))
    if dev.type == "cpu" and todo:
        # build (or find) the C kernels once, before any worker process needs them
        if ckernels.load() is None and opts.progress and not ckernels.disabled():
            print(f"aelab: no fused C kernels ({ckernels.why_not()}); training with PyTorch's kernels: "
                  "the same results, about half the speed", file=sys.stderr)

    def cost(g: Sequence[RunSpec]) -> float:
        return group_cost([s.config for s in g])

    if n_workers > 1:
        groups = balance_groups(groups, cost, n_workers)
    # largest first: the longest group starts at once and the others fill the remaining workers
    groups = sorted(groups, key=lambda g: -cost(g))
    n_workers = min(n_workers, len(groups))
    total = sum(s.config.train.epochs + len(FINISH_STEPS) for s in todo)
    bar = RunProgress("training") if opts.progress and opts.overall_progress and total > 0 else None
    emit = Tracker(fan_out(on_event, bar), {s.index: s.run_dir for s in todo}, total)
    job = GroupJob(dev, opts.engine, opts.resume, opts.progress and not opts.overall_progress, opts.figures)
    try:
        results.update(ex.train_groups(groups, job, data, stop, n_workers, emit))
    finally:
        if bar is not None:
            bar.close()
    for s in todo:
        if s.index not in results:
            results[s.index] = read_result(s)
