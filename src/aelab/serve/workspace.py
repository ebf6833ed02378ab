"""The workspace a lab server shows: one folder of runs, studies and sweeps, and nothing outside it.

Every path a page or a request names is relative to the workspace root and goes through
:meth:`Workspace.resolve`, which refuses an absolute path, a ``..`` step and a symbolic link that
leads out of the root (:class:`PathRefused`). Runs are found by aelab's own marks: a run directory
carries ``.aelab-run.json`` (or, written before marks, an aelab ``config.json``), a study's or a
sweep's output directory ``.aelab-output.json``; their status comes from the same files the CLI
reads (``DONE``, ``run.json``'s weight hash, the checkpoint, the directory's lock).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from ..errors import AelabError

#: how deep below the root runs and studies are looked for (runs/<name>, studies-out/<s>/runs/<r>)
MAX_DEPTH = 5
#: folders never walked into (they hold no runs and can be huge)
SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", "checkpoint", "latent", "figures", ".cache",
        "uploads"}
RUN_MARK = ".aelab-run.json"  # aelab.runs.directory.RUN_MARK (read here without importing PyTorch)
OUTPUT_MARK = ".aelab-output.json"  # aelab.study.output.OUTPUT_MARK
LOCK_NAME = ".aelab.lock"  # aelab._lock.LOCK_NAME


class PathRefused(AelabError):
    """A path outside the workspace (absolute, ``..``, or a link that leads out), or one that does not exist."""


@dataclass
class RunEntry:
    """One run directory as the workspace page lists it.

    ``rel``: its path relative to the root (POSIX spelling, what URLs carry); ``status``: "running",
    "finished", "interrupted" or "damaged"; ``problem``: why it is damaged (one line);
    ``final``: the last epoch's ``loss`` and ``val_loss`` (and each named term) from history.json;
    ``epochs_done``/``epochs``: how far it got; ``study``: the study or sweep folder holding it."""

    rel: str
    name: str
    status: str
    family: str = "?"
    data: str = "?"
    final: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0
    epochs: int = 0
    has_recon: bool = False
    problem: str = ""
    study: Optional[str] = None
    mtime: float = 0.0


@dataclass
class StudyEntry:
    """A study's or sweep's output folder: ``kind`` "study" or "sweep", whether its report exists."""

    rel: str
    name: str
    kind: str
    has_report: bool
    runs: int
    mtime: float = 0.0


class Workspace:
    """A folder of runs, studies and sweeps (``root``), with every path checked to stay inside it."""

    def __init__(self, root: str | os.PathLike) -> None:
        root = Path(root)
        if not root.is_dir():
            raise AelabError(f"{root} is not a folder; give the folder that holds your runs (default: the current one)")
        self.root = root.resolve()
        self._lock = threading.Lock()
        self._opened: dict[str, tuple[tuple, Any]] = {}  # rel -> (stamp, TrainedRun)
        self._verified: dict[str, tuple[tuple, Optional[str]]] = {}  # rel -> (stamp, problem or None)
        #: run dirs (resolved) this server trains right now: "running" without asking the lock file
        self.active: set[Path] = set()

    # -- paths ----------------------------------------------------------------------------------
    def resolve(self, rel: str, *, must_exist: bool = True) -> Path:
        """The absolute path of ``rel`` (relative to the root, "/"-separated), inside the root after
        every symbolic link is followed; else :class:`PathRefused` (one line)."""
        if not isinstance(rel, str) or "\x00" in rel or "\\" in rel:
            raise PathRefused(f"{rel!r} is not a path in this workspace")
        p = PurePosixPath(rel)
        if p.is_absolute() or any(part == ".." for part in p.parts):
            raise PathRefused(f"{rel!r} leaves the workspace; give a path relative to {self.root}")
        target = self.root.joinpath(*p.parts)
        try:
            real = target.resolve(strict=must_exist)
        except (OSError, RuntimeError):
            raise PathRefused(f"{rel!r} does not exist in this workspace") from None
        if real != self.root and self.root not in real.parents:
            raise PathRefused(f"{rel!r} leads outside the workspace (a symbolic link); it is not served")
        return real

    def rel(self, path: Path) -> str:
        """``path`` (inside the root) relative to it, "/"-separated."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def claim(self, path: Path) -> None:
        """Mark ``path`` as written by this server (a training, a study) until :meth:`release`; one
        that overlaps a claimed one (the same, inside it, or holding it) is refused: aelab's locks are
        re-entrant within a process, so they would not stop a second writer here."""
        p = Path(path).resolve()
        with self._lock:
            for a in self.active:
                if a == p or a in p.parents or p in a.parents:
                    raise AelabError(f"{self.rel(p)} is being written by this server already ({self.rel(a)}); "
                                     "wait for it to finish, or stop it first")
            self.active.add(p)

    def release(self, path: Path) -> None:
        with self._lock:
            self.active.discard(Path(path).resolve())

    # -- listing --------------------------------------------------------------------------------
    def _walk(self):
        """(dir, names) of every folder below the root, at most MAX_DEPTH deep, no link followed."""
        stack = [(self.root, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                with os.scandir(d) as it:
                    ents = list(it)
            except OSError:
                continue
            names = {e.name for e in ents}
            yield d, names
            if depth >= MAX_DEPTH or RUN_MARK in names:
                continue
            for e in ents:
                if e.name in SKIP or e.name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append((Path(e.path), depth + 1))
                except OSError:
                    continue

    def runs(self) -> list[RunEntry]:
        """Every run directory under the root, newest first."""
        out = []
        studies = {s.rel for s in self.studies()}
        for d, names in self._walk():
            if RUN_MARK in names or ("config.json" in names and "history.json" in names and d != self.root):
                e = self.run_entry(d, names)
                parts = PurePosixPath(e.rel).parts
                for i in range(len(parts) - 1, 0, -1):
                    if "/".join(parts[:i]) in studies:
                        e.study = "/".join(parts[:i])
                        break
                out.append(e)
        return sorted(out, key=lambda e: -e.mtime)

    def studies(self) -> list[StudyEntry]:
        """Every study's and sweep's output folder under the root, newest first."""
        out = []
        for d, names in self._walk():
            if OUTPUT_MARK not in names:
                continue
            kind = "study"
            try:
                mark = json.loads((d / OUTPUT_MARK).read_text(encoding="utf-8"))
                kind = "sweep" if isinstance(mark, dict) and "sweep" in json.dumps(mark) else "study"
            except (OSError, ValueError):
                pass
            runs_dir = d / "runs"
            n = sum(1 for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else 0
            out.append(StudyEntry(self.rel(d), d.name, kind, (d / "report.html").is_file(), n, _mtime(d)))
        return sorted(out, key=lambda e: -e.mtime)

    def run_entry(self, d: Path, names: Optional[set] = None) -> RunEntry:
        """What the workspace page says about one run directory (never raises for a damaged one)."""
        if names is None:
            try:
                names = {p.name for p in d.iterdir()}
            except OSError:  # not created yet (a training about to start), or gone
                names = set()
        e = RunEntry(self.rel(d), d.name, "interrupted", mtime=_mtime(d), has_recon="recon.png" in names)
        try:
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
            e.family = str(cfg.get("model", {}).get("family", "ae"))
            e.data = str(cfg.get("data", {}).get("dataset", "?"))
            e.epochs = int(cfg.get("train", {}).get("epochs", 0))
            e.name = str(cfg.get("name", d.name))
        except FileNotFoundError:
            e.problem = "no config.json yet"
        except (OSError, ValueError, AttributeError, TypeError):
            e.status, e.problem = "damaged", "config.json is unreadable"
            return e
        hist = _history(d)
        if hist:
            e.epochs_done = len(hist.get("loss", []))
            e.final = {k: float(v[-1]) for k, v in hist.items()
                       if isinstance(v, list) and v and isinstance(v[-1], (int, float)) and "second" not in k}
        if d.resolve() in self.active or _lock_alive(d):
            e.status = "running"
        elif "DONE" in names:
            problem = self.verify(d)
            e.status, e.problem = ("damaged", problem) if problem else ("finished", "")
        return e

    def verify(self, d: Path) -> Optional[str]:
        """None when the finished run ``d`` verifies (weights and config against run.json), else why
        not; cached while its files are unchanged."""
        rel = self.rel(d)
        stamp = _stamp(d)
        with self._lock:
            hit = self._verified.get(rel)
        if hit and hit[0] == stamp:
            return hit[1]
        from ..artifacts import verify_run  # deferred: pydantic schemas, only for a finished run

        try:
            verify_run(d)
            problem = None
        except AelabError as exc:
            problem = str(exc)
        with self._lock:
            self._verified[rel] = (stamp, problem)
        return problem

    # -- opening ---------------------------------------------------------------------------------
    def open_run(self, rel: str):
        """The finished, verified run at ``rel`` as a :class:`~aelab.runs.trained.TrainedRun`,
        opened once and kept while its files are unchanged; else one AelabError line."""
        d = self.resolve(rel)
        if not (d / "DONE").is_file():
            raise AelabError(f"{rel} is not a finished run; open a run marked finished on the workspace page")
        key = self.rel(d)
        stamp = _stamp(d)
        with self._lock:
            hit = self._opened.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
        from ..runs.trained import open_run  # deferred: PyTorch, loaded when a run is first opened

        run = open_run(d)
        with self._lock:
            self._opened[key] = (stamp, run)
        return run


def _mtime(d: Path) -> float:
    best = 0.0
    for name in ("DONE", "history.json", "config.json", "results.json", ""):
        try:
            best = max(best, (d / name).stat().st_mtime if name else d.stat().st_mtime)
        except OSError:
            pass
    return best


def _stamp(d: Path) -> tuple:
    out = []
    for name in ("DONE", "run.json", "weights.safetensors", "config.json"):
        try:
            st = (d / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _history(d: Path) -> dict:
    """history.json, or the checkpoint's partial history of an interrupted run ({} if neither reads)."""
    for p in (d / "history.json", d / "checkpoint" / "state.json"):
        try:
            h = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(h, dict) and isinstance(h.get("history"), dict):
            h = h["history"]
        if isinstance(h, dict) and isinstance(h.get("loss"), list):
            return h
    return {}


def _lock_alive(d: Path) -> bool:
    """Whether another live process on this host holds ``d``'s lock: its lock file names a pid that
    runs. (Probing with flock could make the owner's own lock attempt fail; reading it cannot.)"""
    try:
        info = json.loads((d / LOCK_NAME).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("host", socket.gethostname()) != socket.gethostname():
        return isinstance(info, dict) and bool(info)  # another host's lock: trust it
    try:
        pid = int(info.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
