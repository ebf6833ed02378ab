"""One owner per output directory: an advisory lock that names the process holding it.

A run directory (and a study's or sweep's output directory) is written by one aelab process at
a time. The lock is ``fcntl.flock`` on ``<dir>/.aelab.lock``, a file that also records the
owner's pid, host and command line so that the second process can say who holds it.

Why ``flock`` (standard library) rather than a lock *file* whose presence means "taken": the
kernel drops an flock when its process dies, however it dies, so a crash never leaves a lock
that blocks the next run — the stale-lock detection is the kernel's, with no pid-liveness race.
A left-over lock file from a crashed owner is simply locked again by the next process (and the
recorded owner rewritten). The file is removed when its owner releases it; a process that opened
it just before the removal notices (the path no longer names the inode it locked) and retries.

Locks are re-entrant within a process (a study locks its directory, then each run directory
under it; a run directory named twice is locked once). A worker process that writes run
directories holds their locks itself: its parent hands it the lock descriptors (the same open
file descriptions, so one lock, :func:`held_fds`/:func:`adopt`), and a worker that outlives a
crashed parent still owns what it writes until it exits — a second aelab process never writes
beside it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import AelabError

LOCK_NAME = ".aelab.lock"

_held: dict[Path, tuple[int, int]] = {}  # resolved dir -> (fd, depth), this process's locks


class LockedError(AelabError):
    """Another process owns the directory."""


def _owner_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return "another aelab process"
    if not isinstance(info, dict):  # valid JSON of another shape names nobody
        return "another aelab process"
    info = {k: str(v) for k, v in info.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}
    when = info.get("since", "")
    cmd = info.get("command", "")
    host = info.get("host", "")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return (f"aelab process {info.get('pid', '?')}{where}" + (f" ({cmd})" if cmd else "")
            + (f", since {when}" if when else ""))


def _open_locked(directory: Path) -> int:
    path = directory / LOCK_NAME
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AelabError(f"{directory}: cannot create its lock file ({exc.strerror}); "
                             "choose a directory you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            owner = _owner_text(fd)
            os.close(fd)
            raise LockedError(f"{directory} is in use by {owner}; wait for it to finish, or write to "
                              "another directory") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the owner removed the file between our open and our lock: try again
    raise AelabError(f"{directory}: could not take its lock; try again")  # pragma: no cover


@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Own ``directory`` (which must exist) for the duration of the block, or raise LockedError."""
    key = Path(directory).resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    fd = _open_locked(key)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(OSError):  # the owner's note is informative; a full disk must not break the lock
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(key / LOCK_NAME)  # still locked: a waiting opener sees the inode change
        os.close(fd)


def held_fds(dirs) -> dict[str, int]:
    """This process's lock descriptors of ``dirs`` (each must be locked here), by resolved path:
    what a worker process that writes them is given (see :func:`adopt`)."""
    out = {}
    for d in dirs:
        key = Path(d).resolve()
        if key not in _held:
            raise RuntimeError(f"{d} is not locked by this process")
        out[str(key)] = _held[key][0]
    return out


def adopt(fds: dict[str, int]) -> None:
    """In a worker process: hold the locks its parent handed over (:func:`held_fds`, sent as the
    descriptors themselves). They are the parent's open file descriptions, so the flock is one and
    the same: it stays held while the parent *or* any worker lives, and a worker that outlives a
    crashed parent still owns what it writes until it exits. ``dir_lock`` on them is re-entrant
    here; they are never released here (they close when the worker exits). Raises LockedError if
    a descriptor does not hold its lock (it was not the parent's)."""
    for d, fd in fds.items():
        key = Path(d)
        os.set_inheritable(fd, False)  # as the parent's: a process this worker starts holds no lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same description: a no-op when held
        except OSError:
            raise LockedError(f"{d} is in use by {_owner_text(fd)}; a worker was not handed its lock") from None
        _held[key] = (fd, _held.get(key, (fd, 0))[1] + 1)


def is_lock_file(name: str) -> bool:
    return name == LOCK_NAME
