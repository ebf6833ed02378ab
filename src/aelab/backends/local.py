"""The local backend: groups trained in this process, or in parallel worker processes.

One group at a time runs in the calling process (``runs._train_todo`` does that itself); with
more workers each group goes to a spawned process of a :class:`ProcessPoolExecutor`, which
trains it with ``cores // workers`` intra-op threads and writes its run directories itself (they
are on this machine's disk). Progress comes back through a queue; SIGINT/SIGTERM received by the
parent is forwarded once to each worker, which checkpoints and stops; queued groups never start.

A worker holds the locks of the run directories it writes (the parent hands it its lock
descriptors, ``_lock.held_fds``/``_lock.adopt``) and dies with its parent: if the parent is
killed, however (SIGKILL included), each worker gets SIGTERM from the kernel (Linux's
``PR_SET_PDEATHSIG``; a thread watching ``os.getppid()`` elsewhere, and as a second line),
checkpoints its group after the current step, still under its locks, and exits; an idle one
exits at once. A second run of the same command meanwhile gets "in use" — never a second writer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import torch

from .._malloc import keep_freed_memory
from ..engine.loop import Interrupted, StopFlag
from .schedule import plan_workers, threads_per_worker


class LocalBackend:
    """This machine. ``train_groups`` runs groups in worker processes (see the module docstring)."""

    name = "local"

    def resolve_device(self, name: str) -> torch.device:
        from ..runs import resolve_device

        return resolve_device(name)

    def plan_workers(self, workers: Optional[int], dev: torch.device, n_groups: int) -> int:
        return plan_workers(workers, dev, n_groups)

    def in_process(self, n_workers: int) -> bool:
        """Whether the caller trains the groups itself, one after another (no worker processes)."""
        return n_workers <= 1

    def train_groups(self, cfgs, run_dirs, groups, dev, engine, opts, resume, stop: StopFlag, n_workers: int,
                     bar) -> None:
        _train_parallel(cfgs, run_dirs, groups, dev, engine, opts, resume, stop, n_workers, bar)


# -- parallel groups (separate processes) -------------------------------------------------------------
_WORKER_QUEUE = None
_WORKER_STOP: Optional[StopFlag] = None
_WORKER_IDLE = threading.Event()  # set while the worker trains no group (it may exit at once)
_WORKER_IDLE.set()
#: seconds between a worker's looks at whether its parent still lives
PARENT_POLL_S = 0.5


class _LockFds:
    """The parent's lock descriptors of the run directories, sent to a spawned worker as the
    descriptors themselves (multiprocessing's ``DupFd`` while spawning: the child gets the same
    open file descriptions, so it holds the very same flocks)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self.fds = fds

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return (_lock_fds_of_child, ({d: DupFd(fd) for d, fd in self.fds.items()},))


def _lock_fds_of_child(handles: dict) -> _LockFds:
    return _LockFds({d: h.detach() for d, h in handles.items()})


def _die_with_parent(parent: int) -> None:
    """SIGTERM to this worker when its parent dies (Linux), and a watcher thread as a second line:
    an orphaned worker stops its group as on SIGTERM (a checkpoint, under its locks) and exits."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="aelab-parent-watch", daemon=True).start()


def _watch_parent(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    stop = _WORKER_STOP
    if stop is not None and not stop.requested:
        stop.requested = "SIGTERM"  # the parent is gone: stop as if it had forwarded a SIGTERM
    _WORKER_IDLE.wait()  # a group in progress checkpoints first (within a step), then nothing is left
    os._exit(1)


class _WorkerStop(StopFlag):
    """A worker's stop flag, installed for the worker's whole life (not per group), so that a
    signal that arrives between two groups still stops the next one before it starts. Repeated
    signals are ignored: a worker never dies mid-write (it would also hang the pool's queue); a
    worker whose parent is gone exits once its group has checkpointed (``_watch_parent``)."""

    def _handle(self, signum, frame) -> None:
        if not self.requested:
            self.requested = signal.Signals(signum).name


def _worker_init(threads: int, queue, parent: int, locks: _LockFds) -> None:
    global _WORKER_QUEUE, _WORKER_STOP
    from .._lock import adopt

    # Own process group: a terminal Ctrl-C reaches only the parent, which forwards the signal it
    # received to each worker once, so every worker checkpoints exactly once.
    os.setpgrp()
    _WORKER_STOP = _WorkerStop().__enter__()
    _die_with_parent(parent)
    adopt(locks.fds)  # the run directories' locks: this worker holds them while it writes
    keep_freed_memory()  # an aelab worker process: the allocator setting of aelab's command (aelab._malloc)
    torch.set_num_threads(threads)
    _WORKER_QUEUE = queue
    queue.put(("pid", os.getpid()))


def _group_worker(cfg_dicts: list[dict], dirs: list[str], device: str, engine: str, opts, resume: bool) -> None:
    from ..config import RunConfig
    from ..runs import DataCache, _train_group

    from .._lock import dir_lock

    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    stop = _WORKER_STOP or StopFlag()
    _WORKER_IDLE.clear()  # before the look at the request: an orphaned worker's watcher waits for us
    try:
        if stop.requested:  # asked to stop before this group began: nothing to save, nothing started
            raise Interrupted(f"{stop.requested}: stopped before training {', '.join(c.name for c in cfgs)}")
        with contextlib.ExitStack() as owned:
            for d in dirs:  # held already (handed over by the parent): this only makes sure of it
                owned.enter_context(dir_lock(d))
            data = DataCache(quiet_options(opts))
            _train_group(cfgs, [Path(d) for d in dirs], torch.device(device), engine, data, False, resume, stop,
                         on_epoch=lambda k: _WORKER_QUEUE.put(("epochs", k)))
    finally:
        _WORKER_IDLE.set()


def quiet_options(opts):
    """The driver's data options for a worker: the same sources, no download bars."""
    import dataclasses

    return dataclasses.replace(opts, progress=False)


def _signal_of(why: str) -> int:
    try:
        return signal.Signals[why]
    except KeyError:  # a programmatic request (StopFlag.request): stop the workers politely
        return signal.SIGTERM


def _train_parallel(cfgs, run_dirs, groups, dev, engine, opts, resume, stop: StopFlag, n_workers: int, bar) -> None:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
    q = ctx.Queue()
    threads = threads_per_worker(os.cpu_count() or 1, n_workers)
    pids: set[int] = set()
    told: set[int] = set()
    from .._lock import held_fds

    locks = _LockFds(held_fds(run_dirs[i] for g in groups for i in g))

    def drain() -> None:
        while True:
            try:
                kind, val = q.get_nowait()
            except queue_mod.Empty:
                return
            if kind == "pid":
                pids.add(val)
            else:
                bar.update(val)

    with stop, ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(threads, q, os.getpid(), locks)) as ex:
        futs = {ex.submit(_group_worker, [cfgs[i].to_dict() for i in g], [str(run_dirs[i]) for i in g], str(dev),
                          engine, opts, resume): g for g in groups}
        pending = set(futs)
        while pending:
            _, pending = wait(pending, timeout=0.05 if stop.requested else 0.2, return_when=FIRST_COMPLETED)
            drain()
            bar.set_postfix_str(f"{len(futs) - len(pending)}/{len(futs)} groups done", refresh=False)
            if stop.requested:
                # start nothing new: queued groups are cancelled; running workers (and any worker
                # that registers later) get the signal this process received, once each
                for f in pending:
                    f.cancel()
                for pid in pids - told:
                    told.add(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, _signal_of(stop.requested))
                pending = {f for f in pending if not f.cancelled()}
        drain()
        errors = []
        for f in futs:
            if f.cancelled():
                errors.append(Interrupted(f"{stop.requested}: not started"))
                continue
            err = f.exception()
            if err is not None:
                errors.append(err)
    if errors:
        # a real failure says more than the interruptions it may have caused
        errors.sort(key=lambda e: isinstance(e, Interrupted))
        raise errors[0]
