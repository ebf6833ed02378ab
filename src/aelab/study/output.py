"""A study's or sweep's output directory: one directory holds one study or one sweep.

``<out>/`` holds its mark (:data:`OUTPUT_MARK`, written first), ``results.json``, the report and its
figures, and ``runs/<name>-<hash8>/`` — one run directory per distinct config; the hash is the
config's, so a finished run is found again and never retrained, and an interrupted study resumes
from the checkpoints its runs left. Writing into a directory that holds anything else is refused
with one line, before anything is written (docs/formats.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

from .._atomic import ensure_dir
from .._lock import LOCK_NAME, dir_lock, is_lock_file
from .._owned import clean_temps, is_own_temp, names_text, read_mark, write_mark
from ..config import RunConfig, config_hash
from ..data import DataCache
from ..errors import AelabError
from ..runs import RUN_MARK, is_done

#: the mark aelab writes first into a study's or sweep's output directory (docs/formats.md)
OUTPUT_MARK = ".aelab-output.json"
OUTPUT_FORMAT = "aelab-output"
#: what a study or sweep writes at the top of its output directory (its runs: runs/<name>-<hash8>/)
OUTPUT_LAYOUT = {OUTPUT_MARK: None, "results.json": None, "report.html": None, "report.md": None,
                 "figures": {"*.png": None}}


def run_dir_for(out: Path, cfg: RunConfig) -> Path:
    """Where the run of ``cfg`` lives in the output directory ``out``: ``runs/<name>-<hash8>``."""
    return out / "runs" / f"{cfg.name}-{config_hash(cfg)[:8]}"


@contextlib.contextmanager
def owned_output(out: Path, cfgs: Sequence[RunConfig], data: DataCache, mark: dict | None = None):
    """Validate every run's data, then create ``out`` and own it (a lock) for the block.

    Nothing is written before the checks pass; a second process on the same ``out`` gets one line.
    ``mark`` (:func:`output_mark`): what ``out`` is for; a directory holding anything else is refused
    (:func:`check_output`), and the mark is written first.
    """
    if mark is not None:
        check_output(out, mark)
    for c in cfgs:
        if not is_done(run_dir_for(out, c)):
            data.check(c)
    created = not out.exists()
    ensure_dir(out)
    with dir_lock(out):
        try:
            if mark is not None:
                check_output(out, mark)  # under the lock: what another process wrote meanwhile counts
                with contextlib.suppress(OSError):
                    clean_temps(out, OUTPUT_LAYOUT)  # a killed write's temporary files (results, report, figures)
                write_mark(out, OUTPUT_MARK, mark)
            yield
        except BaseException:
            if created:  # failed before any run saved anything (a full disk, bad data): leave no empty folder
                _drop_if_empty(out)
            raise


def _drop_if_empty(out: Path) -> None:
    """Remove ``out`` when it holds nothing but its mark, an empty ``runs/`` and its lock file."""
    with contextlib.suppress(OSError):
        rest = [p for p in out.iterdir() if not is_lock_file(p.name) and p.name != OUTPUT_MARK]
        if any(p.name != "runs" or not p.is_dir() or any(p.iterdir()) for p in rest):
            return
        for p in rest:
            p.rmdir()
        (out / OUTPUT_MARK).unlink(missing_ok=True)
        (out / LOCK_NAME).unlink(missing_ok=True)
        out.rmdir()


def data_text(cfgs: Sequence[RunConfig]) -> str:
    """The data sets of ``cfgs`` as a message names them: ``data mnist`` (a path by its last part)."""
    names = sorted({Path(c.data.dataset).name or c.data.dataset for c in cfgs})
    return f"data {', '.join(names)}"


def output_mark(kind: str, name: str, cfgs: Sequence[RunConfig], describe: str) -> dict:
    """The mark of an output directory holding the ``kind`` ("study" or "sweep") called ``name``,
    whose runs are ``cfgs`` (seed replicates left out: adding --seeds later extends the same one);
    ``describe``: how a message names it."""
    return {"format": OUTPUT_FORMAT, "version": 1, "kind": kind, "name": name, "describe": describe,
            "config_hashes": sorted({config_hash(c) for c in cfgs})}


def _same_output(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("kind", "name", "config_hashes"))


def _legacy_mark(out: Path) -> dict | None:
    """What an output directory written before marks holds, from its results.json; None if it has none."""
    try:
        res = json.loads((out / "results.json").read_text(encoding="utf-8"))
        kind = "sweep" if isinstance(res.get("sweep"), str) else "study" if isinstance(res.get("study"), str) else None
        hashes = sorted({r["config"]["config_hash"] for r in res["runs"].values()})
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if kind is None:
        return None
    return {"kind": kind, "name": res[kind], "config_hashes": hashes,
            "describe": f"{kind} {res[kind]}" + (" (quick)" if res.get("quick") else "")}


def _only_cached_runs(entries: list[Path]) -> bool:
    """Written before marks and interrupted before its results.json: nothing but runs/<name>-<hash8>/."""
    if [p.name for p in entries] != ["runs"] or not entries[0].is_dir() or entries[0].is_symlink():
        return False
    return all(p.is_dir() and not p.is_symlink() and len(p.name) > 9 and p.name[-9] == "-"
               and all(c in "0123456789abcdef" for c in p.name[-8:]) for p in entries[0].iterdir())


def check_output(out: Path, mark: dict) -> None:
    """Refuse, with one line and before anything is written, an output directory that holds anything
    but the study or sweep ``mark`` names: another study or sweep, a run directory, or files aelab
    did not write. A new or empty directory, and this study's or sweep's own, are fine."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise AelabError(f"--out {out} is a file, not a directory; give --out a directory path")
    try:
        entries = sorted(p for p in out.iterdir() if not is_lock_file(p.name)
                         and not is_own_temp(p.name, OUTPUT_LAYOUT))
    except OSError as exc:
        raise AelabError(f"--out {out}: cannot list it ({exc.strerror}); check its permissions") from None
    if not entries or [p.name for p in entries] == [OUTPUT_MARK]:
        return
    theirs = read_mark(out, OUTPUT_MARK)
    if theirs is None or theirs.get("format") != OUTPUT_FORMAT:
        theirs = _legacy_mark(out)
    if theirs is None and _only_cached_runs(entries):
        return
    if theirs is not None and _same_output(theirs, mark):
        return
    if theirs is not None:
        held = str(theirs.get("describe") or f"{theirs.get('kind')} {theirs.get('name')}")
        if held == mark["describe"]:
            held += " with other run settings"
        what = f"already holds {held}; this is {mark['describe']}"
    elif (out / RUN_MARK).exists() or (out / "config.json").exists():
        what = "is a run directory"
    else:
        what = "holds files aelab did not write there (" + names_text(
            [p.name + ("/" if p.is_dir() else "") for p in entries]) + ")"
    raise AelabError(f"--out {out} {what}; one directory holds one study or sweep (nothing is replaced): give "
                     "--out a new or empty directory")
