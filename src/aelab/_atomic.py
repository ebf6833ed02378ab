"""Artifact files: atomic writes, checked reads, usable output directories.

Writes go to a temporary file beside the target, are fsynced, then renamed: a reader (or a
crash) never sees a half-written artifact; the target holds the old content or the new one.
Reads of JSON artifacts and the creation of output directories turn every problem a user can
cause (a damaged file, a path that is a file, a read-only or system directory) into one
:class:`~aelab.errors.AelabError` line naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import AelabError


class DiskFullError(AelabError):
    """A write found no space left on its disk (or the user's quota spent); nothing was half-written."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write that found the disk full: an OSError with
    ENOSPC/EDQUOT, or another library's error carrying the OS's message (safetensors' Rust writer
    raises ``SafetensorError: … No space left on device (os error 28)``)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if any(s in text for s in ("No space left on device", "Disk quota exceeded", f"os error {errno.ENOSPC})",
                                   f"os error {errno.EDQUOT})")):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_full_message(target: str | os.PathLike, what: str = "--out") -> str:
    return (f"{target}: disk full (no space left on device) while writing it; nothing was half-written (the file "
            f"is as it was): free space or choose another {what}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "", *, what: str = "--out") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    On an exception the temporary file is removed and the target is left untouched; a full disk
    (however the writer reports it) is one :class:`DiskFullError` line naming ``target`` and
    ``what`` to choose instead (the option that placed it: ``--out``, ``--data-dir``).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(disk_full_message(target, what)) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; artifacts are meant to be shared like any other file
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, AelabError) and is_disk_full(exc):
            raise DiskFullError(disk_full_message(target, what)) from None
        raise


#: an atomic_path temporary: "." + the target's name + "." + mkstemp's 8 random characters + ".tmp"
#: (or the target's own suffix, for writers that insist on one: np.savez's ".npz")
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)$")
#: ensure_dir's write probe, removed at once (left only by a process killed in between)
PROBE_PREFIX = ".aelab-probe-"


def temp_target(name: str) -> Optional[str]:
    """The file name an :func:`atomic_path` temporary called ``name`` was to become (a write killed
    before its rename leaves one behind), or None when ``name`` is not such a temporary."""
    m = _TEMP_NAME.match(name)
    if m is None:
        return None
    target, suffix = m["target"], m["suffix"]
    return target if suffix == ".tmp" or target.endswith(suffix) else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or damaged file is one AelabError line ending in ``fix``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AelabError(f"{path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise AelabError(f"{path} is a directory, not a JSON file; {fix}") from None
    except OSError as exc:
        raise AelabError(f"{path}: cannot read it ({exc.strerror}); {fix}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise AelabError(f"{path} is not valid JSON{where}; {fix}") from None
    except RecursionError:
        raise AelabError(f"{path} is not an aelab JSON file (nested too deeply to read); {fix}") from None


#: where the operating system keeps itself: no output goes there, even for root (who could write it)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/boot", "/proc", "/sys",
               "/dev", "/run", "/var/lib", "/var/cache", "/var/log", "/var/spool", "/var/mail", "/var/run", "/snap")
#: scratch space inside them that is meant for users' files
USER_SCRATCH = ("/dev/shm", "/run/user", "/run/shm")


def _home() -> tuple[str, ...]:
    """The user's home, which may lie in a system directory (a service account's /var/lib/jenkins)."""
    home = os.path.realpath(os.path.expanduser("~"))
    return (home,) if home not in ("/", "~") else ()


def _under(path: str, dirs: tuple[str, ...]) -> Optional[str]:
    return next((d for d in dirs if path == d or path.startswith(d + "/")), None)


def check_out_path(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, as one AelabError line and before anything is created, an output path that cannot
    be one: a symbolic link that loops (ELOOP) on the way to it, or a place inside a system
    directory (:data:`SYSTEM_DIRS`, the file system's root itself included) — refused for every
    user, root too, whose writes there would succeed."""
    path = Path(path)
    for p in (path, *path.parents):
        try:
            os.stat(p)
            break  # the nearest existing directory on the way resolves; what lies below it is created
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AelabError(f"{what} {path}: ELOOP: too many levels of symbolic links (a link on the way loops "
                                 f"back on itself); remove that link or choose another {what}") from None
            break  # a file on the way, or no permission: ensure_dir says which
    given = os.path.normpath(os.path.abspath(path))
    real = os.path.realpath(given)
    system = "/" if real == "/" else _under(given, SYSTEM_DIRS) or _under(real, SYSTEM_DIRS)
    if system and not _under(real, USER_SCRATCH + _home()):
        inside = "is the file system's root" if system == "/" else f"is inside the system directory {system}"
        raise AelabError(f"{what} {path} {inside}, where aelab writes nothing (not even as root); choose a "
                         "location such as a folder in your home directory")
    return path


def ensure_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    Raises one AelabError line when the path (or a parent) is a file or a looping link, lies in a
    system directory (:func:`check_out_path`), cannot be created (a read-only location) or is not
    writable — before anything else is written.
    """
    path = check_out_path(path, what)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise AelabError(f"{what} {path}: {p} is a file, not a directory; give {what} a directory path")
        if p.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"{what} {path}: cannot create it: no space left on device; free space or choose "
                                f"another {what}") from None
        raise AelabError(f"{what} {path}: cannot create it ({exc.strerror}); choose a location you can write to, "
                         "such as a folder in your home directory") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(f"{what} {path}: cannot write files there: no space left on device; free space or "
                                f"choose another {what}") from None
        raise AelabError(f"{what} {path}: cannot write files there ({exc.strerror}); choose a writable directory "
                         "or fix its permissions") from None
    return path
