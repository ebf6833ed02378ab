"""Keep Python's cyclic garbage collector off the objects a command imports.

Importing PyTorch, matplotlib and scikit-learn makes a few million objects (modules, classes,
functions, their dicts) that live until the process exits. While the imports run, CPython's
collector sees them as young survivors and promotes them through its generations, and every full
collection walks all of them: in a 1-epoch ``aelab train`` of the lab model, 5 full collections
took 0.48–0.57 s and the younger ones 0.12–0.18 s more, of 4–5 s in all (measured with a
``gc.callbacks`` timer on this project's 2-vCPU VM; benchmarks/RESULTS.md). ``gc.freeze()`` moves
every object alive into a permanent generation that collections never walk; with the imports
frozen the same run spent 0.07–0.08 s collecting.

Process-wide, so only the ``aelab`` program and its worker processes do it, as with
:mod:`aelab._malloc`: the program (``aelab.cli.main()`` run as the process's command, which calls
:func:`own_process`) imports its library inside :func:`long_lived` (no collection while the imports
run, everything alive frozen after), and a worker process freezes what it has imported when it
starts. A library call from a notebook, or ``aelab.cli.main(argv)`` called from a caller's own
program, changes nothing: frozen objects are out of ``gc.get_referrers``' sight too, which a host's
libraries may rely on (Hypothesis does). What the collector does
never changes a value, so results are the same bits. The cost: garbage cycles not yet collected
when the freeze comes are kept for the process's life; at that moment they are what the imports
left behind, which is little.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator


_own = False


def own_process() -> None:
    """Say that this process is aelab's own (the ``aelab`` program): :func:`long_lived` acts."""
    global _own
    _own = True


@contextlib.contextmanager
def long_lived() -> Iterator[None]:
    """Run imports whose objects live as long as the process: in aelab's own process, the collector
    paused while they run (its enabled state restored after) and everything alive frozen at the
    end; in any other, nothing."""
    if not _own:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def freeze_imports() -> None:
    """Freeze everything alive now (a worker process, once its imports are done)."""
    gc.freeze()
