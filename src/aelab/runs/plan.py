"""One run, planned from what a client gives: its config (overrides applied, the model fitted to
the data), its name when none is given, a directory that overwrites nothing, and what to tell the
user about it (the data a finished run used, an engine that does not take its config).

Every client decides these the same way by calling here: ``aelab train`` holds no such logic, and
a notebook or a web page gets the same names and directories.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from .._atomic import check_out_path
from ..artifacts import DataSource, read_config, retrain_fix
from ..config import RunConfig
from ..data import fit_config, is_registered, with_overrides
from ..engine.steppers import can_stack
from ..errors import AelabError
from .directory import is_done
from .spec import spec_of
from .trained import open_run

#: layer kinds written short in a default run name
_SHORT = {"conv2d": "c", "conv2d-transpose": "t", "max-pool": "pool", "up-sample": "up"}


def data_name(dataset: str) -> str:
    """A data set as one directory-name part: a registered name as it is, a path by its last part."""
    return dataset if is_registered(dataset) else (Path(dataset).stem or "data")


def default_run_name(cfg: RunConfig) -> str:
    """A run name from its config, for runs given no name: the layers, then what sets it apart.

    ``32relu-784sigmoid``, ``128relu-64relu-32relu-64relu-128relu-784sigmoid-l1_0.0001``, ``…-noise0.6``;
    the family first when it is not the plain AE, the data set last when it is not MNIST.
    """
    m, d = cfg.model, cfg.data
    default = RunConfig()
    parts = [] if m.family == default.model.family else [m.family]
    for layer in (*m.encoder, *m.decoder):
        if layer.kind == "dense":
            parts.append(f"{layer.size}{layer.activation}")
        elif layer.kind in _SHORT:
            parts.append(_SHORT[layer.kind] + str(getattr(layer, "filters", "")))
    if getattr(m, "latent", None):
        parts.append(f"z{m.latent}")
    if getattr(m, "activity_l1", 0):
        parts.append(f"l1_{m.activity_l1:g}")
    if d.noise_factor:
        parts.append(f"noise{d.noise_factor:g}")
    if d.dataset != default.data.dataset:
        parts.append(data_name(d.dataset))  # a run name is one directory name
    return "-".join(parts)


def run_config(base: RunConfig, overrides: Optional[Mapping[str, Any]] = None, *, name: Optional[str] = None) -> RunConfig:
    """``base`` with dotted ``overrides`` applied and its model fitted to the data they name, as ``aelab
    train`` builds a run from its flags: the data overrides first, so layers given with them may be
    written for the data's shape (``data.dataset=digits`` with ``model.decoder=["64:sigmoid"]``), and
    layers written for MNIST's 784 are fitted (:func:`aelab.fit_config`). Named ``name``, else
    :func:`default_run_name` when the config keeps the default name."""
    ov = dict(overrides or {})
    if name:
        ov["name"] = name
    cfg = with_overrides(base, ov) if ov else fit_config(base)
    if not name and cfg.name == RunConfig().name:
        cfg = cfg.model_copy(update={"name": default_run_name(cfg)})
    return cfg


def resume_target(run_dir: str | Path) -> tuple[RunConfig, bool]:
    """``(config, finished)`` of a run directory to resume: its saved config, and whether it is already
    finished — said only once its record, weights, history and metrics verify (:func:`open_run`).
    A directory that is not a run aelab wrote, or whose config does not load, is one error line."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise AelabError(f"{run_dir / 'config.json'} does not exist; {run_dir} is not a run directory aelab train "
                         "wrote: give the directory that holds its config.json")
    cfg, _ = read_config(run_dir, f"the run cannot be resumed; {retrain_fix(run_dir)}")
    if is_done(run_dir):
        open_run(run_dir)
        return cfg, True
    return cfg, False


def fast_engine_note(cfg: RunConfig) -> Optional[str]:
    """What to tell a user who asked for the fast engine on a config it does not implement (the run
    then trains on the autograd path, recorded in run.json), or None when the fast engine takes it."""
    if can_stack(spec_of(cfg)) and cfg.train.lr_schedule is None:
        return None
    return (f"--engine fast implements dense ae models with the bce or mse loss, Keras Adam and a constant learning "
            f"rate; {cfg.name} (family {cfg.model.family}, loss {cfg.train.loss}, optimizer {cfg.train.optimizer.name}"
            f"{', a learning-rate schedule' if cfg.train.lr_schedule is not None else ''}) trains on the autograd path "
            "(recorded as the engine in run.json)")


def fresh_run_dir(out: str | Path, overwrite: bool = False) -> tuple[Path, str]:
    """``(directory, note)``: ``out`` itself when it is free (absent, empty, or ``overwrite``), else a
    new timestamped directory beside it and a note saying why. A run is never overwritten silently
    (``overwrite`` is carried out by :func:`aelab.train_runs`, under the directory's lock, and only
    on a run directory)."""
    out = Path(out)
    check_out_path(out)  # a looping link or a system directory: one line before anything else
    if overwrite or not out.exists() or (out.is_dir() and not [p for p in out.iterdir() if not p.name.startswith(".aelab")]):
        return out, ""
    if not out.is_dir():
        raise AelabError(f"--out {out} is a file, not a directory; give --out a directory path")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cand = out.with_name(f"{out.name}-{stamp}")
    i = 2
    while cand.exists():
        cand = out.with_name(f"{out.name}-{stamp}-{i}")
        i += 1
    return cand, f" ({out} already exists; use --overwrite to replace it)"


def data_source_text(run: str | Path | Mapping[str, Any]) -> str:
    """``mnist from the cache /path``: which data a finished run used, in words, from its ``run.json``
    (a run directory, or the run record as results.json holds it); ``?`` when it says nothing."""
    try:  # a record that is not aelab's (validated as run.json's data_source) says nothing
        rec = run if isinstance(run, Mapping) else json.loads((Path(run) / "run.json").read_text())
        src = DataSource.model_validate(rec.get("data_source") or {})
    except (OSError, ValueError, AttributeError):  # a pydantic ValidationError is a ValueError
        return "?"
    name, kind = src.dataset, src.source
    if kind == "cache":
        return f"{name} from the cache {src.cache_dir}"
    if kind.startswith("files"):
        where = sorted({str(Path(f).parent) if "[" not in f else f.split("[")[0] for f in src.files.values()})
        return f"{name} from {', '.join(where)}" + (" (and the cache)" if "cache" in kind else "")
    return f"{name} ({kind})"


__all__ = ["data_name", "data_source_text", "default_run_name", "fast_engine_note", "fresh_run_dir", "resume_target", "run_config"]
