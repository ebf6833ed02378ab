"""Events: what happens while runs train, as small typed values any callback can take.

``train_runs(..., on_event=callback)`` (and the study and sweep runners, which pass it on) calls
``callback(event)`` in the calling process, in order, for every run it trains — whether the run
trains in this process, in a worker process of the local pool, or in a Ray task (their events
travel back; see ``executors/``):

* :class:`RunStarted` — a run begins (or resumes: ``start_epoch`` > 0);
* :class:`EpochEnded` — an epoch ended: every loss term and metric, on train and validation;
* :class:`RunFinishing` — training is over, the finishing steps begin (their names);
* :class:`FinishStep` — one finishing step is done;
* :class:`RunFinished` — the run's artifacts are written (``DONE``): its result;
* :class:`Progress` — the whole call's progress, after each of the above that moves it.

Runs are told apart by ``index`` (their position among the configs given to ``train_runs``);
``run`` is the config's name, ``run_dir`` the directory the caller gave. A callback that raises
stops training as any error would; to stop cleanly, use :class:`Stop`.

:class:`Stop` stops training from code exactly as Ctrl-C does: every running group checkpoints
after its current step, nothing new starts, and ``train_runs`` raises
:class:`~aelab.engine.loop.Interrupted` saying what each run holds; the same call again resumes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Union

from ..engine.loop import Interrupted, StopFlag

if TYPE_CHECKING:
    from .directory import RunResult

__all__ = ["RunStarted", "EpochEnded", "RunFinishing", "FinishStep", "RunFinished", "Progress", "Event",
           "Stop", "Interrupted"]


@dataclass(frozen=True)
class RunStarted:
    """A run begins training (``start_epoch`` > 0: it resumes from a checkpoint at that epoch).
    ``group``: the names of the runs trained side by side with it (itself included)."""

    run: str
    index: int
    run_dir: Path
    epochs: int
    start_epoch: int = 0
    group: tuple[str, ...] = ()


@dataclass(frozen=True)
class EpochEnded:
    """Epoch ``epoch`` (1-based) of ``epochs`` ended. ``train``/``val``: ``loss``, ``penalty`` and
    every named loss term (``reconstruction`` first, then the family's, e.g. ``kl``), as the
    run's history.json records them; ``seconds``: the epoch's time; ``images_per_second``: of
    the whole group."""

    run: str
    index: int
    run_dir: Path
    epoch: int
    epochs: int
    train: Mapping[str, float]
    val: Mapping[str, float]
    seconds: float
    images_per_second: float


@dataclass(frozen=True)
class RunFinishing:
    """Training of a run is over; its finishing steps (``finish.FINISH_STEPS``) begin."""

    run: str
    index: int
    run_dir: Path
    steps: tuple[str, ...]


@dataclass(frozen=True)
class FinishStep:
    """Finishing step ``step`` (number ``done`` of ``of``) of a run is done."""

    run: str
    index: int
    run_dir: Path
    step: str
    done: int
    of: int


@dataclass(frozen=True)
class RunFinished:
    """A run's artifacts are all written (``DONE``). ``result``: its :class:`~aelab.runs.RunResult`."""

    run: str
    index: int
    run_dir: Path
    result: "RunResult" = field(repr=False)


@dataclass(frozen=True)
class Progress:
    """The progress of a whole ``train_runs`` call, in units of work: one per epoch of each run
    and one per finishing step of each run. ``running``: the runs under way (training or
    finishing), ``finishing``: those of them finishing."""

    done: int
    total: int
    running: tuple[str, ...] = ()
    finishing: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


Event = Union[RunStarted, EpochEnded, RunFinishing, FinishStep, RunFinished, Progress]
#: a callback that takes events
OnEvent = Callable[[Event], None]


class Stop(StopFlag):
    """Stops ``train_runs`` from code, as Ctrl-C would (see the module docstring).

    ``stop.set()`` may be called from an event callback or another thread. While ``train_runs``
    runs, SIGINT and SIGTERM set it too."""

    def set(self, why: str = "stop requested") -> None:
        self.request(why)

    def is_set(self) -> bool:
        return self.requested is not None


class Tracker:
    """The calling process's end of the events: passes each to the callback, with the runs'
    directories as the caller gave them, and adds :class:`Progress` after each that moves it.

    ``dirs``: each run's directory by index; ``total``: units of the whole call (epochs still to
    train and finishing steps of every run to train)."""

    def __init__(self, callback: Optional[OnEvent], dirs: Mapping[int, Path], total: int) -> None:
        self.callback, self.dirs, self.total = callback, dict(dirs), total
        self.done = 0
        self.running: dict[int, str] = {}
        self.finishing: dict[int, str] = {}

    def __call__(self, ev: Event) -> None:
        if self.callback is None:
            return
        if not isinstance(ev, Progress):
            ev = self._home(ev)
        self.callback(ev)
        moved = False
        if isinstance(ev, RunStarted):
            self.running[ev.index] = ev.run
            self.done += ev.start_epoch  # epochs a checkpoint already holds
            moved = True
        elif isinstance(ev, EpochEnded):
            self.done += 1
            moved = True
        elif isinstance(ev, RunFinishing):
            self.finishing[ev.index] = ev.run
            moved = True
        elif isinstance(ev, FinishStep):
            self.done += 1
            moved = True
        elif isinstance(ev, RunFinished):
            self.running.pop(ev.index, None)
            self.finishing.pop(ev.index, None)
            moved = True
        if moved:
            self.callback(Progress(min(self.done, self.total), self.total, tuple(self.running.values()),
                                   tuple(self.finishing.values())))

    def _home(self, ev: Event) -> Event:
        """The event with the run's directory as the caller named it (a Ray task writes into a
        scratch copy where no filesystem is shared)."""
        home = self.dirs.get(ev.index)
        if home is None or ev.run_dir == home:
            return ev
        if isinstance(ev, RunFinished):
            result = ev.result
            if result is not None:
                result.run_dir = home
            return RunFinished(ev.run, ev.index, home, result)
        return dataclasses.replace(ev, run_dir=home)
