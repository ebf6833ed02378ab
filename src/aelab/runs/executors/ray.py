"""The Ray executor: each group of runs is one Ray task, on a cluster or on a Ray instance here.

The unit of work is the local executor's (:func:`aelab.runs.group.train_group`: a group of
same-shape runs, stacked), trained with the same intra-op thread count a local worker would use
(each task asks Ray for that many CPUs and sets it), so the weights and histories are the local
executor's, bit for bit (tested).

Where a task writes:

* **shared filesystem** (a Ray instance started on this machine, or ``shared_fs=True`` /
  ``--shared-fs`` for a cluster whose nodes mount the output directory at the same path): the
  task writes its run directories itself, as a local worker does.
* **otherwise**: the task trains in a scratch directory on its node, and returns every file it
  wrote (checkpoints included, after an interruption or a failure); the driver alone writes them
  into the run directories, each atomically, ``DONE`` last. To resume, the driver ships a run's
  checkpoint with the task.

The driver keeps owning the run directories (their locks), the cache by config hash and the
grouping (``runs.train_runs``). A small actor, the *channel*, carries what flows while tasks run:
the groups' events (the driver passes them to the caller's callback; a run's
:class:`~aelab.runs.events.RunFinished` only once its files are in place), which groups started
and on which node, and the stop request. A task polls the request on a thread and the training loop stops after its current
step, checkpoints and returns; tasks that had not started are cancelled (and, if one starts in
between, it sees the request before it touches anything). A task that fails is reported with its
runs and its node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import shutil
import socket
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ... import __version__
from ..._atomic import write_bytes
from ..._lock import is_lock_file
from ..._malloc import keep_freed_memory
from ...data.cache import DataCache, DataOptions
from ...engine.loop import Interrupted, StopFlag
from ...errors import AelabError
from ..directory import CHECKPOINT, RunResult, drop_checkpoint
from ..events import Event, RunFinished
from ..group import GroupJob, train_group
from ..spec import RunSpec
from .local import quiet_options
from .schedule import plan_workers, threads_per_worker

#: seconds between a task's looks at the stop request (the loop then stops within one step)
POLL_S = 0.1
#: seconds a cluster's head has to accept a connection before aelab gives up (Ray itself retries for minutes)
CONNECT_S = 10.0


class WorkerError(AelabError):
    """A Ray task failed for a reason that is not the user's input (a crash, a lost node, a bug)."""

    exit_code = 1


def _import_ray():
    try:
        import ray  # deferred: Ray is optional (aelab[ray]) and slow to import
    except ImportError:
        raise AelabError("--backend ray needs Ray, which is not installed; install it with: "
                         "pip install 'aelab[ray]'") from None
    return ray


def check_address(address: Optional[str]) -> Optional[str]:
    """``auto``, ``host:port`` or ``ray://host:port``; anything else is one clear line."""
    if address is None:
        return None
    a = address.strip()
    if a == "auto" or a == "local":
        return a
    rest = a[len("ray://"):] if a.startswith("ray://") else a
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AelabError(f"--address {address!r} is not a Ray address; use auto (the cluster this machine is part "
                         "of), HOST:PORT (its head node) or ray://HOST:PORT (Ray Client, port 10001 by default)")
    return a


def _check_reachable(address: str, timeout: float = CONNECT_S) -> None:
    """One bounded look at the head's port before ``ray.init``, which, when nothing answers there,
    retries for minutes printing each try: a clear line instead, within ``timeout`` seconds."""
    target = address
    if target == "local":  # a new Ray instance here: nothing to reach
        return
    if target == "auto":  # the cluster this machine is part of, as Ray recorded it
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die  # deferred: Ray is optional

            target = canonicalize_bootstrap_address_or_die("auto")
        except Exception:  # none recorded, or another Ray: ray.init says so itself, at once
            return
    rest = target[len("ray://"):] if target.startswith("ray://") else target
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        why = f"no answer within {timeout:.0f} s" if isinstance(exc, socket.timeout) else (
            getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise AelabError(f"cannot reach the Ray cluster at {address} ({host}:{port}: {why.lower()}); check the "
                         "address (auto, HOST:PORT or ray://HOST:PORT) and that the cluster is up (ray status)") from None


class RayExecutor:
    """Groups as Ray tasks. Connects on first use; shuts down only a Ray instance it started."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, shared_fs: Optional[bool] = None) -> None:
        self.address = check_address(address)
        self._ray = _import_ray()
        self._started = False  # this backend started the Ray instance (and stops it on close)
        self._connected = False
        self.shared_fs = shared_fs

    # -- connection ------------------------------------------------------------------------------
    def connect(self):
        ray = self._ray
        if self._connected:
            return ray
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            try:
                if self.address is None:
                    # a Ray instance on this machine, with one CPU per core (the local backend's count)
                    ray.init(num_cpus=os.cpu_count() or 1, **kw)
                else:
                    _check_reachable(self.address)
                    ray.init(address=self.address, **kw)
            except AelabError:
                raise
            except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError… by version
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise AelabError(f"cannot start or reach {where} ({first}); check the address (auto, HOST:PORT "
                                 "or ray://HOST:PORT) and that the cluster is up (ray status)") from None
            self._started = True
        if self.shared_fs is None:
            # only a Ray instance of this machine is sure to see this machine's disk
            self.shared_fs = self.address is None
        self._connected = True
        return ray

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
        self._started = self._connected = False

    def _resources(self) -> dict:
        return self.connect().cluster_resources()

    def _max_node_cpus(self) -> int:
        ray = self.connect()
        cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
        return max(cpus or [1])

    # -- the executor protocol (aelab.runs.executors.Executor) -------------------------------------------
    def resolve_device(self, name: str) -> torch.device:
        """``auto`` → CUDA when the cluster has GPUs, else CPU; ``cuda``/``cuda:N`` need GPUs in the
        cluster (each task gets one of its own), not on this machine."""
        if name == "cpu":
            return torch.device("cpu")
        gpus = int(self._resources().get("GPU", 0))
        if name == "auto":
            return torch.device("cuda" if gpus else "cpu")
        try:
            dev = torch.device(name)
        except (RuntimeError, ValueError):
            raise AelabError(f"unknown device {name!r}; use auto, cpu or cuda") from None
        if dev.type == "cuda":
            if not gpus:
                raise AelabError(f"device {name!r} asked for but the Ray cluster has no GPU; use --device cpu")
            return torch.device("cuda")  # Ray gives each task its own GPU, seen as cuda:0
        if dev.type != "cpu":
            raise AelabError(f"device {name!r} is not supported on the Ray backend; use auto, cpu or cuda")
        return dev

    def cpus(self) -> int:
        return max(1, int(self._resources().get("CPU", 1)))

    def plan_workers(self, workers: Optional[int], dev: torch.device, n_groups: int) -> int:
        if dev.type == "cuda" and workers is None:
            workers = max(1, int(self._resources().get("GPU", 1)))
        return plan_workers(workers, dev, n_groups, cpus=self.cpus())

    def train_groups(self, groups: Sequence[Sequence[RunSpec]], job: GroupJob, data: DataCache, stop: StopFlag,
                     n_workers: int, emit: Callable[[Event], None]) -> dict[int, RunResult]:
        _train_on_ray(self, groups, job, data.opts, stop, n_workers, emit)  # every group is a task, even one alone
        return {}


# -- the channel: progress, starts and the stop request ------------------------------------------------
class _Channel:
    """One per ``train_groups`` call. Its methods run one at a time (a Ray actor), so ``stop``
    sees exactly the groups that began: any other group asks ``begin`` later and is told no."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Event]] = []
        self.stop_why: Optional[str] = None
        self.nodes: dict[int, str] = {}

    def begin(self, gid: int, node: str) -> bool:
        if self.stop_why:
            return False
        self.nodes[gid] = node
        return True

    def push(self, gid: int, ev: Event) -> None:
        self.events.append((gid, ev))

    def sync(self) -> None:
        """Nothing: a task that waits for this knows its earlier pushes have arrived (a caller's
        calls to an actor run in the order they were made)."""

    def take(self) -> list[tuple[int, Event]]:
        out, self.events = self.events, []
        return out

    def stop(self, why: str) -> list[int]:
        self.stop_why = self.stop_why or why
        return list(self.nodes)

    def stopped(self) -> Optional[str]:
        return self.stop_why

    def node_of(self, gid: int) -> Optional[str]:
        return self.nodes.get(gid)


def _node_name() -> str:
    try:
        import ray  # deferred: Ray is optional

        ip = ray.util.get_node_ip_address()
    except Exception:  # outside Ray, or its address is unknown
        ip = "?"
    return f"{socket.gethostname()} ({ip})"


# -- files that travel between the driver and a task --------------------------------------------------
def collect_files(run_dir: Path) -> dict[str, bytes]:
    """Every file aelab wrote in ``run_dir`` (relative POSIX path → bytes); no locks, no temporaries."""
    out = {}
    for p in sorted(Path(run_dir).rglob("*")):
        if p.is_file() and not is_lock_file(p.name) and not p.name.startswith("."):
            out[p.relative_to(run_dir).as_posix()] = p.read_bytes()
    return out


def _place(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a task's files into ``run_dir`` on a disk no task sees, mirroring the task's directory.

    Each file is written atomically; a checkpoint's tensors before the state.json that names their
    hash; ``DONE`` last. A finished run, or one whose task dropped its checkpoint (a fresh start),
    loses the checkpoint it had here, as it would on the task's own disk.
    """
    def order(name: str) -> tuple:
        return (name == "DONE", name == f"{CHECKPOINT}/state.json", name)

    for name in sorted(files, key=order):
        target = run_dir / name
        if run_dir.resolve() not in target.resolve().parents:
            raise WorkerError(f"a Ray task returned a file outside its run directory ({name}); refusing to write it")
        write_bytes(target, files[name])
    if not any(n.startswith(f"{CHECKPOINT}/") for n in files):
        drop_checkpoint(run_dir)  # aelab's checkpoint files only


# -- the task ---------------------------------------------------------------------------------------------
_DATA: dict = {}  # a worker process's data caches, by data options (Ray reuses worker processes)


def _versions() -> tuple[str, str]:
    return __version__, torch.__version__


def run_group(gid: int, specs: list[RunSpec], job: GroupJob, opts: DataOptions, threads: int, shared: bool,
              ship: Optional[list[dict]], channel, versions) -> dict:
    """Train one group (a Ray task's body). Returns {"status", "node", "files", "error"}.

    ``status``: "done", "interrupted" (a checkpoint was saved), "not started" (stopped before it
    began) or "failed" (``error``: the exception, pickled, and its traceback). ``files``: without a
    shared filesystem, each run's files (see :func:`collect_files`), else None. The group's events
    go to the driver through ``channel``.
    """
    import ray  # deferred: Ray is optional

    node = _node_name()
    if tuple(versions) != _versions():
        mine = _versions()
        err = AelabError(f"node {node} runs aelab {mine[0]} with torch {mine[1]}, the driver aelab {versions[0]} with "
                         f"torch {versions[1]}; install the same versions on every node (results depend on them)")
        return {"status": "failed", "node": node, "files": None, "error": pickle.dumps(err), "trace": ""}
    if not ray.get(channel.begin.remote(gid, node)):
        return {"status": "not started", "node": node, "files": None, "error": None, "trace": ""}
    stop = StopFlag()  # not entered: a task's signals are Ray's; the request comes through the channel
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(POLL_S):
            try:
                why = ray.get(channel.stopped.remote())
            except Exception:  # the driver went away: stop and checkpoint
                why = "driver lost"
            if why:
                stop.request(why)
                return

    watcher = threading.Thread(target=watch, name="aelab-stop-watch", daemon=True)
    watcher.start()
    scratch = None
    if not shared:
        scratch = Path(tempfile.mkdtemp(prefix="aelab-ray-"))
        specs = [s.moved(scratch / f"{k}-{s.run_dir.name}") for k, s in enumerate(specs)]
        for s, files in zip(specs, ship or [{}] * len(specs)):
            s.run_dir.mkdir(parents=True)
            for name, blob in files.items():
                (s.run_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (s.run_dir / name).write_bytes(blob)
    out = {"status": "done", "node": node, "files": None, "error": None, "trace": ""}
    try:
        key = repr(opts)
        if key not in _DATA:
            _DATA[key] = DataCache(quiet_options(opts))
        # a local worker's thread count (train_group keeps a resumed run's recorded one)
        torch.set_num_threads(threads)
        keep_freed_memory()  # as a local worker does (aelab._malloc)
        train_group(specs, job, _DATA[key], stop, emit=lambda ev: channel.push.remote(gid, ev))
    except Interrupted as err:
        out.update(status="interrupted", error=pickle.dumps(err))
    except BaseException as err:  # reported to the driver with the node; never lost in a log
        try:
            blob = pickle.dumps(err)
        except Exception:
            blob = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        out.update(status="failed", error=blob, trace="".join(traceback.format_exception(err)))
    finally:
        finished.set()
        watcher.join()
        _safe(lambda: ray.get(channel.sync.remote(), timeout=30))  # the driver has every event before the result
        if scratch is not None:
            out["files"] = [collect_files(s.run_dir) for s in specs]
            shutil.rmtree(scratch, ignore_errors=True)
    return out


# -- the driver -------------------------------------------------------------------------------------------
def _train_on_ray(ex: RayExecutor, groups: Sequence[Sequence[RunSpec]], job: GroupJob, opts: DataOptions,
                  stop: StopFlag, n_workers: int, emit: Callable[[Event], None]) -> None:
    ray = ex.connect()
    shared = bool(ex.shared_fs)
    if job.device.type == "cuda":
        threads, res = 1, {"num_cpus": 1, "num_gpus": 1}
    else:
        # the local executor's rule (cores // workers), on the cluster's CPUs, so a Ray task trains
        # with the thread count a local worker would; no task may ask for more than a node holds
        threads = min(threads_per_worker(ex.cpus(), n_workers), ex._max_node_cpus())
        res = {"num_cpus": threads}
    if shared:  # the workers' working directory is not ours: give them absolute paths
        opts = dataclasses.replace(
            opts, data_dir=str(Path(opts.data_dir).resolve()) if opts.data_dir else opts.data_dir,
            files=tuple(str(Path(f).resolve()) for f in opts.files))
    job = dataclasses.replace(job, progress=False)  # a task's output is not ours to show
    channel = ray.remote(num_cpus=0)(_Channel).remote()
    task = ray.remote(run_group).options(max_retries=0, **res)
    versions = _versions()
    refs = {}
    for gid, g in enumerate(groups):
        specs = [s.moved(s.run_dir.resolve()) for s in g]
        ship = None if shared or not job.resume else [collect_files(s.run_dir) for s in g]
        refs[task.remote(gid, specs, job, opts, threads, shared, ship, channel, versions)] = gid
    pending = list(refs)
    errors: list[BaseException] = []
    told = False
    started: set[int] = set()  # the groups that had begun when the stop was sent (the others never begin)
    held: dict[int, list[Event]] = {}  # RunFinished of a group whose files the driver has not placed yet

    def names(gid: int) -> str:
        return ", ".join(s.name for s in groups[gid])

    def relay() -> None:
        for gid, ev in ray.get(channel.take.remote()):
            if isinstance(ev, RunFinished) and not shared:
                held.setdefault(gid, []).append(ev)
            else:
                emit(ev)

    def settle(ref) -> None:
        gid = refs[ref]
        try:
            out = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            errors.append(Interrupted(f"{stop.requested}: not started"))
            return
        except ray.exceptions.RayError as err:
            if told and gid not in started:
                # cancelled after the stop while its worker was still starting it (unpickling its
                # arguments, importing aelab): Ray reports that as a failure of the task, not as a
                # cancellation, but the group never began: nothing of it is lost
                errors.append(Interrupted(f"{stop.requested}: not started"))
                return
            # the task's process or node died
            node = _safe(lambda: ray.get(channel.node_of.remote(gid), timeout=5)) or "an unknown node"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            errors.append(WorkerError(f"the Ray task training {names(gid)} on node {node} died ({first}); "
                                      "run the same command again to resume from the last checkpoints"))
            return
        if out["files"] is not None:
            for s, files in zip(groups[gid], out["files"]):
                _place(s.run_dir, files)
        relay()  # the task's last events (pushed before it returned), then its runs' RunFinished
        for ev in held.pop(gid, []):
            emit(ev)
        if out["status"] == "not started":
            errors.append(Interrupted(f"{stop.requested or 'stopped'}: not started"))
        elif out["status"] == "interrupted":
            errors.append(pickle.loads(out["error"]))
        elif out["status"] == "failed":
            err = pickle.loads(out["error"])
            where = f"on Ray node {out['node']}, training {names(gid)}"
            if isinstance(err, AelabError):
                errors.append(type(err)(f"{err} ({where})"))
            else:
                errors.append(WorkerError(f"{type(err).__name__}: {err} ({where}); its traceback:\n"
                                          f"{out['trace'].rstrip()}"))

    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.05 if told else 0.2)
            for ref in done:
                settle(ref)
            relay()
            if stop.requested and not told:
                told = True
                started.update(ray.get(channel.stop.remote(stop.requested)))
                for ref in pending:
                    if refs[ref] not in started:  # queued: never starts (it would be told no anyway)
                        ray.cancel(ref)
        relay()
    finally:
        if pending:  # leaving early (an error here): stop what still runs, politely first
            _safe(lambda: ray.get(channel.stop.remote("driver stopped"), timeout=5))
            for ref in pending:
                _safe(lambda: ray.cancel(ref))
        _safe(lambda: ray.kill(channel))
    if errors:
        # a real failure says more than the interruptions it may have caused
        errors.sort(key=lambda e: isinstance(e, Interrupted))
        raise errors[0]


def _safe(fn):
    try:
        return fn()
    except Exception:
        return None
