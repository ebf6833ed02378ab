"""Executors: where the groups of a ``train_runs`` call train, behind one protocol.

A unit of work is one *group*: runs of the same shape trained side by side in one stepper
(:func:`aelab.runs.group.train_group`). ``train_runs`` validates, owns the run directories,
groups and balances the runs; an executor only decides where each group trains, and brings its
events (:mod:`aelab.runs.events`), its interruptions and its failures back:

* ``local`` (default) — this machine: one group after another in this process, or groups in
  parallel worker processes (``local.py``). Needs nothing beyond aelab.
* ``ray`` — the tasks of a Ray cluster, or of a Ray instance started on this machine
  (``ray.py``; ``pip install 'aelab[ray]'``). Same unit of work, same thread count per group,
  so the same bits.

:data:`EXECUTORS` maps the names ``--backend`` takes to the executor classes;
:func:`register_executor` adds one. ``schedule.py`` holds what all share: how many groups run at
once, and how groups are split so that the workers finish together. Importing this package
imports neither Ray nor any worker.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Protocol, Sequence, runtime_checkable

import torch

from ...errors import AelabError
from .local import LocalExecutor
from .ray import RayExecutor

if TYPE_CHECKING:
    from ...data.cache import DataCache
    from ...engine.loop import StopFlag
    from ..directory import RunResult
    from ..events import Event
    from ..group import GroupJob
    from ..spec import RunSpec


@runtime_checkable
class Executor(Protocol):
    """Where groups train. Made with ``(address=None, shared_fs=None)`` (see :func:`open_executor`)."""

    #: the name ``--backend`` gives it (run records say which executor trained a study)
    name: str

    def resolve_device(self, name: str) -> torch.device:
        """The device ``name`` ("auto", "cpu", "cuda", "cuda:N") means where this executor trains."""

    def plan_workers(self, workers: Optional[int], dev: torch.device, n_groups: int) -> int:
        """How many groups train at once (``workers``: the caller's wish, or None)."""

    def train_groups(self, groups: Sequence[Sequence["RunSpec"]], job: "GroupJob", data: "DataCache",
                     stop: "StopFlag", n_workers: int, emit: Callable[["Event"], None]) -> dict[int, "RunResult"]:
        """Train every group (largest first, as given) with at most ``n_workers`` at once.

        Events of every group reach ``emit`` in this process. When ``stop`` is requested (a
        signal, or from code; the caller has entered ``stop``, so it takes SIGINT/SIGTERM),
        running groups checkpoint and nothing new starts. Returns the
        results it holds in this process, by run index (the caller reads the others back from
        their directories); raises the first real failure, or else
        :class:`~aelab.engine.loop.Interrupted`."""

    def close(self) -> None:
        """Release what the executor holds (a Ray instance it started)."""


#: the executors by the name ``--backend`` takes
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": RayExecutor}
#: the names ``--backend`` takes (the registry's, in order)
BACKENDS = tuple(EXECUTORS)


def register_executor(name: str, factory: Callable[..., Executor]) -> None:
    """Make ``factory(address=..., shared_fs=...)`` the executor named ``name``."""
    EXECUTORS[name] = factory


@contextlib.contextmanager
def open_executor(backend: "str | Executor" = "local", *, address: Optional[str] = None,
                  shared_fs: Optional[bool] = None) -> Iterator[Executor]:
    """The executor named ``backend`` (see :data:`EXECUTORS`), opened for the block, closed after it.

    An already opened executor passes through untouched (it belongs to whoever opened it).
    ``address`` (Ray only): ``auto``, ``host:port`` or ``ray://host:port``; without one, Ray
    starts an instance on this machine for the block. ``shared_fs`` (Ray only): whether the
    workers see this machine's run directories at the same paths; ``None`` — only when the Ray
    instance is this machine's own.
    """
    if not isinstance(backend, str):
        yield backend
        return
    factory = EXECUTORS.get(backend)
    if factory is None:
        raise AelabError(f"unknown backend {backend!r}; use one of: {', '.join(EXECUTORS)}")
    ex = factory(address=address, shared_fs=shared_fs)
    try:
        yield ex
    finally:
        ex.close()
