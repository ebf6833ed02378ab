"""SIGINT and SIGTERM while an ``aelab`` command runs: the first one interrupts, none is lost.

:func:`command_signals` (the CLI's ``main``) catches both signals for the whole command:

* the first raises :class:`SignalInterrupt` (a KeyboardInterrupt) where the command is, so every ``finally`` and
  ``with`` block runs (temporary folders are removed, a child process is stopped, a half-written
  file is dropped) — SIGTERM included, whose default action would kill the process on the spot;
* every later one is only remembered: it never interrupts the clean-up of the first;
* while training, the training loop's stop flag (``engine.loop.StopFlag``) takes the signals
  itself and stops in order (a checkpoint, then one line naming the signal, what each run holds
  and the command that resumes); it marks the stop as under way (:func:`note`), so a signal that
  comes after the flag is gone, before that line is printed, is remembered and nothing else.

Which signal came first is read from the order they arrived in, not from the order Python runs
their handlers: a SIGTERM and a SIGINT that both arrive while the main thread is inside one long
C call (a PyTorch kernel) are handled together, SIGINT's handler first (CPython runs pending
handlers by signal number). :func:`command_signals` therefore gives the C-level handler a pipe
(``signal.set_wakeup_fd``), which gets one byte per signal, in arrival order, the moment it
arrives; the handlers read it.

The CLI also uses :data:`received` to turn an interrupt that some library swallowed or turned
into another exception (an ``ImportError`` from an interrupted import) into the same one line
and exit code 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NUMBERS = frozenset(int(s) for s in SIGNALS)

#: names of the signals received while the current command ran, first first
received: list[str] = []
#: a training stop is under way (a stop flag took a signal): later signals change nothing
_orderly = False
#: the read end of the pipe the C-level handler writes each arriving signal's number to (or None)
_arrivals: int | None = None


def _record(signum: int) -> str:
    """Record the signals that arrived since the last handler ran, in arrival order, and return
    the name of the earliest of them. Without the pipe (signals outside :func:`command_signals`)
    or when it holds nothing (this handler's signal was read by an earlier one), ``signum`` is it."""
    got = b""
    if _arrivals is not None:
        with contextlib.suppress(BlockingIOError, OSError):
            got = os.read(_arrivals, 4096)
    names = [signal.Signals(n).name for n in got if n in _NUMBERS]
    if not names:
        names = [signal.Signals(signum).name]
    received.extend(names)
    return names[0]


def note(signum: int) -> str:
    """A stop flag took ``signum``: record it, mark the stop as under way; return the name of the
    first signal that arrived (``signum``'s handler may run after another's that came later)."""
    global _orderly
    name = _record(signum)
    _orderly = True
    return name


def first() -> str | None:
    """The name of the first signal received during this command, or None."""
    return received[0] if received else None


class SignalInterrupt(KeyboardInterrupt):
    """The first SIGINT/SIGTERM of a command. A subclass, not KeyboardInterrupt itself: CPython
    marks an exact KeyboardInterrupt that passes through a string ``exec`` (dataclasses and
    pydantic build methods that way while they import) as unhandled, and then kills the process
    with SIGINT at exit even though aelab caught it and said why (exit code -2, not 130)."""


def _handle(signum, frame) -> None:
    again = bool(received)
    name = _record(signum)
    if not again and not _orderly:
        raise SignalInterrupt(name)


@contextlib.contextmanager
def _arrival_pipe() -> Iterator[None]:
    """Hand the C-level handler a pipe for the arrival order (main thread only; the previous
    wakeup fd comes back afterwards, unless someone — an asyncio loop — replaced ours meanwhile)."""
    global _arrivals
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r)
        os.close(w)
        yield
        return
    _arrivals = r
    try:
        yield
    finally:
        _arrivals = None
        current = signal.set_wakeup_fd(old)
        if current != w:  # not ours any more: leave whoever replaced it in place
            signal.set_wakeup_fd(current)
        os.close(r)
        os.close(w)


@contextlib.contextmanager
def command_signals(last: bool = False) -> Iterator[None]:
    """Handle SIGINT/SIGTERM as the module docstring says for the duration of one command.

    The previous handlers come back afterwards, unless a signal arrived or the command is the
    process's ``last`` (the ``aelab`` program itself): then the process is on its way out and
    later signals stay ignored — a Ctrl-C while Python shuts down would otherwise kill it without a
    word after it said what it did (or why it stopped)."""
    global _orderly
    received.clear()
    _orderly = False
    try:
        old = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    except ValueError:  # not the main thread: signals are not this thread's to handle
        yield
        return
    try:
        with _arrival_pipe():
            yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_IGN if received or last else handler)
