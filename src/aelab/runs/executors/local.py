"""The local executor: groups trained in this process, or in parallel worker processes.

With one worker the groups train one after another in the calling process; with more, each
group goes to a spawned process of a :class:`ProcessPoolExecutor`, which trains it with
``cores // workers`` intra-op threads and writes its run directories itself (they are on this
machine's disk). The events of its group come back through a queue and reach the caller's
callback in the calling process; a stop (SIGINT/SIGTERM received by the parent, or requested
from code) is forwarded once to each worker as a signal, and the worker checkpoints and stops;
queued groups never start.

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
import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing.reduction import DupFd
from typing import Callable, Optional, Sequence

import torch

from ..._lock import adopt, dir_lock, held_fds
from ..._gc import freeze_imports
from ..._malloc import keep_freed_memory
from ...data.cache import DataCache, DataOptions
from ...engine.loop import Interrupted, StopFlag
from ...errors import AelabError
from ..directory import RunResult
from ..events import Event
from ..group import GroupJob, train_group
from ..spec import RunSpec
from .schedule import plan_workers, threads_per_worker


def resolve_device(name: str = "auto") -> torch.device:
    """This machine's device: ``auto`` → CUDA when present, else CPU; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise AelabError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AelabError(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return dev


class LocalExecutor:
    """This machine: groups one after another in this process, or in worker processes (see the
    module docstring)."""

    name = "local"

    def __init__(self, address: Optional[str] = None, shared_fs: Optional[bool] = None) -> None:
        if address is not None:
            raise AelabError("--address names a Ray cluster, and the local backend uses none; add --backend ray "
                             "or drop --address")

    def resolve_device(self, name: str) -> torch.device:
        return resolve_device(name)

    def plan_workers(self, workers: Optional[int], dev: torch.device, n_groups: int) -> int:
        return plan_workers(workers, dev, n_groups)

    def train_groups(self, groups: Sequence[Sequence[RunSpec]], job: GroupJob, data: DataCache, stop: StopFlag,
                     n_workers: int, emit: Callable[[Event], None]) -> dict[int, RunResult]:
        if n_workers > 1:
            _train_parallel(groups, job, data.opts, stop, n_workers, emit)
            return {}
        results: dict[int, RunResult] = {}
        for specs in groups:
            if stop.requested:  # start nothing new after a stop
                raise Interrupted(f"{stop.requested}: stopped before {specs[0].name}")
            for s, r in zip(specs, train_group(specs, job, data, stop, emit)):
                results[s.index] = r
        return results

    def close(self) -> None:
        pass


# -- parallel groups (separate processes) -------------------------------------------------------------
_WORKER_QUEUE = None
_WORKER_STOP: Optional[StopFlag] = None
_WORKER_IDLE = threading.Event()  # set while the worker trains no group (it may exit at once)
_WORKER_IDLE.set()
#: seconds between a worker's looks at whether its parent still lives
PARENT_POLL_S = 0.5
#: seconds between the parent's looks at the workers' pipe when it is empty
READ_POLL_S = 0.02


class _LockFds:
    """The parent's lock descriptors of the run directories, sent to a spawned worker as the
    descriptors themselves (multiprocessing's ``DupFd`` while spawning: the child gets the same
    open file descriptions, so it holds the very same flocks)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self.fds = fds

    def __reduce__(self):
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
    # Own process group: a terminal Ctrl-C reaches only the parent, which forwards the signal it
    # received to each worker once, so every worker checkpoints exactly once.
    os.setpgrp()
    _WORKER_STOP = _WorkerStop().__enter__()
    _die_with_parent(parent)
    adopt(locks.fds)  # the run directories' locks: this worker holds them while it writes
    keep_freed_memory()  # an aelab worker process: the allocator setting of aelab's command (aelab._malloc)
    freeze_imports()  # ... and its collector setting: what it imported is frozen (aelab._gc)
    torch.set_num_threads(threads)
    _WORKER_QUEUE = queue
    queue.put(("pid", os.getpid()))


def _group_worker(specs: list[RunSpec], job: GroupJob, opts: DataOptions) -> None:
    """A worker's body: train one group under the run directories' locks (its parent's), its
    events sent to the parent through the queue."""
    stop = _WORKER_STOP or StopFlag()
    _WORKER_IDLE.clear()  # before the look at the request: an orphaned worker's watcher waits for us
    try:
        if stop.requested:  # asked to stop before this group began: nothing to save, nothing started
            raise Interrupted(f"{stop.requested}: stopped before training {', '.join(s.name for s in specs)}")
        with contextlib.ExitStack() as owned:
            for s in specs:  # held already (handed over by the parent): this only makes sure of it
                owned.enter_context(dir_lock(s.run_dir))
            train_group(specs, job, DataCache(quiet_options(opts)), stop, emit=lambda ev: _WORKER_QUEUE.put(("event", ev)))
    finally:
        _WORKER_IDLE.set()


def quiet_options(opts: DataOptions) -> DataOptions:
    """The driver's data options for a worker: the same sources, no download bars."""
    return dataclasses.replace(opts, progress=False)


def _signal_of(why: str) -> int:
    try:
        return signal.Signals[why]
    except KeyError:  # a request from code (Stop.set): stop the workers politely
        return signal.SIGTERM


def _train_parallel(groups: Sequence[Sequence[RunSpec]], job: GroupJob, opts: DataOptions, stop: StopFlag,
                    n_workers: int, emit: Callable[[Event], None]) -> None:
    ctx = mp.get_context("spawn")  # never fork a process that holds torch threads
    # A SimpleQueue writes each message into its pipe in put() itself (no feeder thread), so every
    # event of a group is in the pipe before its future completes. A thread here reads the pipe for
    # as long as the pool lives, so a worker never blocks on a full pipe (not even while this
    # thread waits for the pool to shut down after an error); the events reach ``emit`` on this
    # thread, in drain(). Once the pool is gone (every worker has exited, so every message is
    # whole in the pipe), the reader reads what is left and ends.
    q = ctx.SimpleQueue()
    inbox: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
    pool_gone = threading.Event()
    reader = threading.Thread(target=_read_all, args=(q, inbox, pool_gone), name="aelab-events", daemon=True)
    reader.start()
    threads = threads_per_worker(os.cpu_count() or 1, n_workers)
    pids: set[int] = set()
    told: set[int] = set()
    locks = _LockFds(held_fds(s.run_dir for g in groups for s in g))

    def drain() -> None:
        while True:
            try:
                kind, val = inbox.get_nowait()
            except queue_mod.Empty:
                return
            if kind == "pid":
                pids.add(val)
            elif kind == "event":
                emit(val)

    try:
        _run_pool(ctx, q, threads, locks, groups, job, opts, stop, n_workers, drain, pids, told)
    finally:
        pool_gone.set()
        reader.join()
        drain()  # the last events, before the error or the return


def _read_all(q, inbox: "queue_mod.SimpleQueue", pool_gone: threading.Event) -> None:
    """The parent's reader of the workers' pipe (see _train_parallel)."""
    while not pool_gone.is_set():
        if q.empty():
            time.sleep(READ_POLL_S)
        else:
            inbox.put(q.get())
    while not q.empty():  # what the last workers wrote before they exited
        inbox.put(q.get())


def _run_pool(ctx, q, threads: int, locks: _LockFds, groups: Sequence[Sequence[RunSpec]], job: GroupJob,
              opts: DataOptions, stop: StopFlag, n_workers: int, drain: Callable[[], None], pids: set[int],
              told: set[int]) -> None:
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads, q, os.getpid(), locks)) as ex:
        futs = {ex.submit(_group_worker, list(g), job, opts): g for g in groups}
        pending = set(futs)
        while pending:
            _, pending = wait(pending, timeout=0.05 if stop.requested else 0.2, return_when=FIRST_COMPLETED)
            drain()
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
