"""The progress display of a ``train_runs`` call (the CLI's): one consumer of its events.

:class:`RunProgress` takes the events of :mod:`aelab.runs.events` and shows the whole call's
:class:`~aelab.runs.events.Progress` — epochs and finishing steps, so the display keeps moving
while runs are evaluated and their artifacts written: a tqdm bar on a terminal; in a Jupyter
notebook, tqdm's notebook bar (a widget, through ``tqdm.auto``: :func:`in_notebook`); in a log (not
a terminal), a plain line at every tenth of the work, so log files get readable milestones instead
of redrawn bars. Written to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

from .events import Event, Progress


class RunProgress:
    """A progress bar over a whole ``train_runs`` call, fed by its events (``on_event=RunProgress()``).

    ``desc``: the bar's label. The bar is made at the first :class:`Progress` event (which
    carries the total) and closed by :meth:`close` (``train_runs`` closes the one it makes); in a
    notebook it also closes itself once the work is done, so ``aelab.train(cfg, d,
    on_event=RunProgress("name"))`` leaves a finished bar behind."""

    def __init__(self, desc: str = "training", unit: str = "step", enabled: bool = True) -> None:
        self.desc, self.unit, self.enabled = desc, unit, enabled
        self.total, self.n = 0, 0
        self.tty = enabled and sys.stderr.isatty()
        #: in a Jupyter kernel (stderr is no terminal there) a notebook widget bar instead of lines
        self.notebook = enabled and not self.tty and in_notebook()
        self._next = 0.1
        self._t0 = time.perf_counter()
        self.bar = None

    def __call__(self, ev: Event) -> None:
        if not self.enabled:
            return
        if isinstance(ev, Progress):
            self._progress(ev)

    def _progress(self, ev: Progress) -> None:
        if self.total != ev.total and self.bar is None and (self.tty or self.notebook):
            from tqdm.auto import tqdm  # deferred: tqdm only when a bar is drawn (its notebook form in a kernel)

            self.bar = tqdm(total=ev.total, desc=self.desc, unit=self.unit, dynamic_ncols=True)
        self.total = ev.total
        k, self.n = ev.done - self.n, ev.done
        if self.bar is not None:
            if k:
                self.bar.update(k)
            what = (f"finishing {', '.join(ev.finishing)}" if ev.finishing else ", ".join(ev.running))
            self.bar.set_postfix_str(what[:60], refresh=self.notebook)
            if self.notebook and self.n >= self.total:
                self.close()  # a widget bar turns "done" when closed; given as on_event, nobody else closes it
        elif self.total and not self.notebook and self.n / self.total >= self._next - 1e-9:
            while self._next <= self.n / self.total + 1e-9:
                self._next += 0.1
            tail = f"; finishing {', '.join(ev.finishing)}"[:70] if ev.finishing else ""
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %), "
                  f"{time.perf_counter() - self._t0:.0f} s{tail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel whose front end can draw tqdm's notebook bar (a
    widget: ipywidgets installed). IPython is looked up only when something already imported it, so
    a script or the CLI imports nothing to find out; a terminal IPython is not a notebook."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return False
    import importlib.util  # deferred: a standard module, needed only inside a kernel

    return importlib.util.find_spec("ipywidgets") is not None


def fan_out(*callbacks: Optional[object]):
    """One callback that calls each given one (``None``s skipped) in order, or None when none is given."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None
    if len(cbs) == 1:
        return cbs[0]

    def call(ev: Event) -> None:
        for c in cbs:
            c(ev)

    return call
