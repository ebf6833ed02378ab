"""Artifact files: atomic writes, checked reads, usable output directories.

Writes go to a temporary file beside the target, are fsynced, then renamed: a reader (or a
crash) never sees a half-written artifact; the target holds the old content or the new one.
Reads of JSON artifacts and the creation of output directories turn every problem a user can
cause (a damaged file, a path that is a file, a read-only or system directory) into one
:class:`~aelab.errors.AelabError` line naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import AelabError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    On an exception the temporary file is removed and the target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; artifacts are meant to be shared like any other file
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


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


def ensure_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    Raises one AelabError line when the path (or a parent) is a file, cannot be created (a system
    or read-only location) or is not writable — before anything else is written.
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise AelabError(f"{what} {path}: {p} is a file, not a directory; give {what} a directory path")
        if p.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AelabError(f"{what} {path}: cannot create it ({exc.strerror}); choose a location you can write to, "
                         "such as a folder in your home directory") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".aelab-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise AelabError(f"{what} {path}: cannot write files there ({exc.strerror}); choose a writable directory "
                         "or fix its permissions") from None
    return path
