"""Results as the report reads them: ``results.json`` loaded once, checked, and brought to the current format.

This is the one place where results written by an older aelab are migrated (:func:`migrate`); every
other part of the report reads the current format only. ``results.json`` says what it is and which
version of the format it follows (``{"format": "aelab-results", "version": N}``, written by the
study runner, :data:`aelab.study.RESULTS_VERSION`); a file without them is version 1.

Versions:
  1. every results.json written before the version was recorded: the base protocol is named
     ``"seed"``; a re-evaluation under another protocol is the block ``"corrected"``.
  2. the base protocol is ``"base"`` ("seed" means only a random seed); the ``"corrected"`` block
     names the protocol it was evaluated under (``"protocol"``). The report reads it as ``"reevaluated"``.

Also here, because every section reads them the same way: the run's saved arrays
(:class:`Samples` for ``samples.npz``, :class:`Codes` for ``codes.npz``, each loaded once) and
:func:`sample_shape`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Optional

import numpy as np

from ..artifacts import ResultsFile, read_samples, validate
from ..data import nouns
from ..data.dataset import SAMPLES, Nouns
from ..errors import DataError
from ..runs.codes import names_of, read_codes
from ..study import RESULTS_FORMAT, RESULTS_VERSION

__all__ = ["Codes", "nouns_of", "setting", "RESULTS_FORMAT", "RESULTS_VERSION", "Results", "Samples", "load_results", "migrate",
           "results_of", "sample_shape"]

_REWRITE = "re-run the study (or sweep) to rewrite it"


def migrate(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a results.json's content, any version) in the current format (a new dict)."""
    out = dict(raw)
    version = out.get("version", 1) if out.get("format", RESULTS_FORMAT) == RESULTS_FORMAT else 1
    if not isinstance(version, int) or isinstance(version, bool):
        version = 1
    if version < 2 and out.get("protocol") == "seed":
        out["protocol"] = "base"
    # a re-evaluation under another protocol: "corrected" as written (its protocol named inside since
    # version 2; a version-1 block is the "corrected" protocol's)
    if isinstance(out.get("corrected"), Mapping) and "reevaluated" not in out:
        block = dict(out.pop("corrected"))
        block.setdefault("protocol", "corrected")
        out["reevaluated"] = block
    out["format"], out["version"] = RESULTS_FORMAT, RESULTS_VERSION
    return out


@dataclass(frozen=True)
class Results(Mapping[str, Any]):
    """One study's or sweep's results, in the current format.

    ``directory``: where its runs' directories are (None for results given as a mapping alone: no
    saved arrays to draw from). ``kind``: ``"sweep"`` when it has sweep ``points``, else ``"study"``.
    ``data``: the migrated content of results.json (``runs``, ``questions`` or ``points``, ...)."""

    data: Mapping[str, Any]
    directory: Optional[Path] = None
    kind: Literal["study", "sweep"] = "study"
    path: Path = field(default=Path("results.json"))

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        return self.data["runs"]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


#: the blocks of a run record, each a JSON object (checked by :class:`~aelab.artifacts.ResultsFile`)
_RUN_BLOCKS = ("config", "history", "metrics", "run")


def _run(run: Mapping[str, Any]) -> dict[str, Any]:
    return {**run, **{k: run.get(k) or {} for k in _RUN_BLOCKS}}


def _complete(data: dict[str, Any]) -> dict[str, Any]:
    """Every run record (and every replicate's and re-evaluated run's) with all of its blocks, empty where
    the file has none: past this point a section reads ``run["metrics"]`` without asking whether it is there."""
    data["runs"] = {k: _run(r) for k, r in data["runs"].items()}
    if data.get("replicates") is not None:
        reps = dict(data["replicates"])
        reps["runs"] = {k: [_run(r) for r in rs] for k, rs in (reps.get("runs") or {}).items()}
        data["replicates"] = reps
    if data.get("reevaluated") is not None:
        block = dict(data["reevaluated"])
        block["runs"] = {k: _run(r) for k, r in (block.get("runs") or {}).items()}
        data["reevaluated"] = block
    return data


def results_of(raw: Mapping[str, Any], directory: Optional[Path] = None, path: Optional[Path] = None) -> Results:
    """:class:`Results` from a results.json's content: checked (one :class:`DataError` line naming the
    file) and migrated."""
    path = path or (directory / "results.json" if directory is not None else Path("results.json"))
    validate(ResultsFile, raw, path, _REWRITE, DataError)
    data = _complete(migrate(raw))
    return Results(data=data, directory=directory, kind="sweep" if data.get("points") is not None else "study",
                   path=path)


def load_results(directory: str | Path) -> Results:
    """``<directory>/results.json``, checked and migrated; :class:`DataError` (one line) when it is
    missing, not JSON or not a results file."""
    directory = Path(directory)
    path = directory / "results.json"
    if not path.is_file():
        raise DataError(f"{path} not found: run the study (or sweep) first, or point at its output directory")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc}); re-run the study to rewrite it") from exc
    return results_of(raw, directory, path)


def setting(run: Mapping[str, Any], *path: str, default: Any = None) -> Any:
    """The run's config value at ``path`` (``setting(run, "data", "scaling")``), or ``default`` where
    the config does not record it: every section reads a run's settings through this one accessor."""
    node: Any = run.get("config") if isinstance(run, Mapping) else None
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def sample_shape(*runs: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The sample shape the runs trained on, from their configs' ``model.input_shape`` ((C, H, W)
    or (D,)); None when no run recorded one (results written before shapes were saved: the figures
    then guess from the row width, :func:`aelab.plots.infer_shape`)."""
    for run in runs:
        shape = setting(run, "model", "input_shape")
        if (isinstance(shape, (list, tuple)) and shape
                and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            return tuple(shape)
    return None


def nouns_of(*runs: Mapping[str, Any]) -> Nouns:
    """What one sample of the runs' data is called (``Nouns("digit", "digits")``, ``("image", "images")``,
    ``("sample", "samples")``), from the first run whose config names its data set: the one place the
    report asks the data layer for its words."""
    for run in runs:
        name = setting(run, "data", "dataset")
        if isinstance(name, str) and name:
            return nouns(name)
    return SAMPLES


class Samples:
    """Loads each run's samples.npz once; a missing file is noted (``missing``), not fatal."""

    def __init__(self, directory: Optional[Path]):
        self.directory = directory
        self.cache: dict[str, dict[str, np.ndarray] | None] = {}
        self.missing: list[str] = []

    def get(self, run: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
        rel = run.get("dir")
        if not isinstance(rel, str):
            self._note(f"run {run.get('name', '?')!r} has no 'dir' in results.json")
            return None
        if rel in self.cache:
            return self.cache[rel]
        path = self.directory / rel / "samples.npz" if self.directory is not None else None
        arrays: dict[str, np.ndarray] | None = None
        if path is None or not path.is_file():
            self._note(f"{Path(rel) / 'samples.npz'} not found: reconstructions of this run are not shown")
        else:
            arrays = {k: v.astype(np.float32) for k, v in
                      read_samples(path, "re-run that run to rewrite it", DataError).items()}
        self.cache[rel] = arrays
        return arrays

    def _note(self, msg: str) -> None:
        if msg not in self.missing:
            self.missing.append(msg)


class Codes:
    """Loads each run's codes.npz once; a run without one (trained before codes were saved) has None."""

    def __init__(self, directory: Optional[Path]):
        self.directory = directory
        self.cache: dict[str, Optional[dict]] = {}

    def names(self, *runs: Mapping[str, Any]) -> tuple[str, ...]:
        """The class names saved with the runs' codes (the first run that has them), or ()."""
        for run in runs:
            arrays = self.get(run)
            if arrays is not None and names_of(arrays):
                return names_of(arrays)
        return ()

    def get(self, run: Mapping[str, Any]) -> Optional[dict]:
        rel = run.get("dir")
        if not isinstance(rel, str) or self.directory is None:
            return None
        if rel not in self.cache:
            self.cache[rel] = read_codes(self.directory / rel)
        return self.cache[rel]
