"""What aelab wrote in a directory, and nothing else: marks, layouts, left-over temporary files.

Every directory aelab writes artifacts into carries a *mark*: a small JSON file, written before
any artifact, naming the format of what the directory holds (``.aelab-run.json`` in a run
directory, ``.aelab-output.json`` in a study's or sweep's output directory; see
``docs/formats.md``). A directory's *layout* names the files aelab writes there (a name or a glob
pattern → ``None`` for a file, or the layout of a sub-directory).

Every cleanup — ``--overwrite``, a failed run's tidy-up, a dropped checkpoint, the temporary files
of a killed write — goes through :func:`remove_own` or :func:`clean_temps`, which remove only
entries the layout names (or aelab's own temporary names for them), never follow a symbolic link,
and leave everything else where it is. Callers refuse a directory that holds anything else
(:func:`foreign`) with one line before they remove anything.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from ._atomic import PROBE_PREFIX, temp_target, write_json
from ._lock import is_lock_file
from .errors import AelabError

Layout = Mapping[str, Any]  # name or glob → None (a file) or the Layout of a sub-directory


def _known(name: str, layout: Layout) -> tuple[bool, Any]:
    """(whether ``layout`` names ``name``, its sub-layout: None for a file)."""
    if name in layout:
        return True, layout[name]
    for pattern, sub in layout.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern):
            return True, sub
    return False, None


def is_own_temp(name: str, layout: Layout) -> bool:
    """Whether ``name`` is a temporary file aelab left while writing a file ``layout`` names there."""
    if name.startswith(PROBE_PREFIX):
        return True
    target = temp_target(name)
    if target is None:
        return False
    known, sub = _known(target, layout)
    return known and sub is None


def _kind(p: Path) -> Optional[str]:
    """"link", "dir", "file", "other", or None when it vanished meanwhile (another writer's rename)."""
    try:
        if p.is_symlink():
            return "link"
        if p.is_dir():
            return "dir"
        if p.is_file():
            return "file"
        return "other" if p.exists() else None
    except OSError:
        return "other"


def foreign(directory: Path, layout: Layout, _prefix: str = "") -> list[str]:
    """Entries of ``directory`` aelab does not write there (recursively, inside the layout's own
    sub-directories): ``["NOTES.md", "src/", "latent/mine.txt"]``. Symbolic links count as foreign."""
    out: list[str] = []
    for p in sorted(Path(directory).iterdir()):
        name = p.name
        if is_lock_file(name) or is_own_temp(name, layout):
            continue
        kind = _kind(p)
        if kind is None:
            continue
        known, sub = _known(name, layout)
        if not known or kind in ("link", "other") or (sub is None) != (kind == "file"):
            out.append(_prefix + name + ("/" if kind == "dir" else ""))
        elif sub is not None:
            out.extend(foreign(p, sub, f"{_prefix}{name}/"))
    return out


def remove_own(directory: Path, layout: Layout) -> None:
    """Remove what ``layout`` names in ``directory`` (and aelab's temporary files for it), recursively;
    a sub-directory of the layout goes when it is left empty. Anything else stays, links untouched."""
    for p in list(Path(directory).iterdir()):
        name = p.name
        if is_lock_file(name):
            continue
        kind = _kind(p)
        if kind == "file" and is_own_temp(name, layout):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            continue
        known, sub = _known(name, layout)
        if not known:
            continue
        if sub is None and kind == "file":
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        elif sub is not None and kind == "dir":
            remove_own(p, sub)
            with contextlib.suppress(OSError):
                p.rmdir()  # only when nothing else is left in it


def clean_temps(directory: Path, layout: Layout) -> list[Path]:
    """Remove the temporary files killed writes left in ``directory`` and the layout's sub-directories
    (only aelab's own temporary names for the files the layout names); returns what was removed.
    Call it while owning the directory (its lock): another owner's temporary files are in flight."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        kind = _kind(p)
        if kind == "file" and is_own_temp(p.name, layout):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
        elif kind == "dir":
            known, sub = _known(p.name, layout)
            if known and sub is not None:
                removed.extend(clean_temps(p, sub))
    return removed


def read_mark(directory: Path, name: str) -> Optional[dict]:
    """The mark ``name`` in ``directory`` as a dict with a "format", or None (absent or unreadable)."""
    try:
        mark = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and isinstance(mark.get("format"), str) else None


def output_contents(out: Path, layout: Layout, mark: str, fmt: str,
                    where: str) -> Optional[tuple[list[str], list[str], Optional[dict]]]:
    """What an output directory aelab is about to write into holds: ``(entries, foreign names, its
    mark when it is one of ``fmt``)``; None when ``out`` is absent, or holds nothing but locks, this
    layout's temporary files and the bare mark (free to use). A file in its place, or a directory
    that cannot be listed, is one :class:`~aelab.errors.AelabError` line naming ``where``."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise AelabError(f"{where} is a file, not a directory; give --out a directory path")
    try:
        entries = sorted(p.name for p in out.iterdir() if not is_lock_file(p.name) and not is_own_temp(p.name, layout))
        others = foreign(out, layout)
    except OSError as exc:
        raise AelabError(f"{where}: cannot list it ({exc.strerror}); check its permissions") from None
    if not entries or entries == [mark]:
        return None
    theirs = read_mark(out, mark)
    return entries, others, (theirs if theirs is not None and theirs.get("format") == fmt else None)


def write_mark(directory: Path, name: str, mark: dict) -> None:
    """Write ``mark`` (atomically) unless the directory carries exactly it already."""
    if read_mark(directory, name) != mark:
        write_json(Path(directory) / name, mark)


def names_text(names: list[str], limit: int = 4) -> str:
    """``"NOTES.md, src/ and 3 more"``: a few entries for a one-line message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
