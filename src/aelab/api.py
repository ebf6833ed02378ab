"""What every client of the lab decides the same way, as library functions: a run's default name,
where a command's results go when no directory is given, a sweep's starting config, and how a
finished run's data source reads in words.

The CLI calls these and holds no such logic itself; a notebook or a web page calling them gets the
same names and folders as ``aelab train``/``study``/``sweep`` would. The public names are
re-exported by :mod:`aelab` (``aelab.sweep_base``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from ._atomic import check_out_path
from .artifacts import DataSource
from .config import RunConfig
from .data import fit_config, is_registered, with_overrides
from .engine.steppers import can_stack
from .errors import AelabError, ConfigError
from .runs import spec_of
from .study import Study, load_study
from .study.spec import BASE_PROTOCOL

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


def fast_engine_note(cfg: RunConfig) -> Optional[str]:
    """What to tell a user who asked for the fast engine on a config it does not implement (the run
    then trains on the autograd path, recorded in run.json), or None when the fast engine takes it."""
    if can_stack(spec_of(cfg)):
        return None
    return (f"--engine fast implements dense ae models with the bce or mse loss; {cfg.name} (family "
            f"{cfg.model.family}, loss {cfg.train.loss}) trains on the autograd path (recorded as the engine in run.json)")


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


def overrides_tag(overrides: Mapping[str, Any]) -> str:
    """``-digits-epochs3``: what the overrides change, for a default output folder ("" for none).

    The data set by its name (a path by its last part), any other setting as KEYVALUE; a long tag is
    shortened to a hash of the settings, so two different settings never share a folder."""
    parts = []
    for key, value in overrides.items():
        if key == "data.dataset":
            parts.append(data_name(str(value)))
        else:
            text = "_".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            parts.append(key.split(".")[-1] + text)
    tag = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts))
    if len(tag) > 48:
        tag = "set-" + hashlib.sha256(json.dumps(dict(overrides), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"-{tag}" if tag else ""


def study_out(study: Study, overrides: Optional[Mapping[str, Any]] = None, root: str | Path = "studies-out") -> Path:
    """A study's default output folder, ``studies-out/<study>[-quick][-<protocol>][-<overrides>]``: what
    a user would not want mixed (quick settings, a protocol other than the base one, other data or
    settings) gets its own. ``study`` as :func:`aelab.load_study` gave it."""
    protocol = "" if study.protocol == BASE_PROTOCOL else f"-{study.protocol}"
    return Path(root) / (study.name + ("-quick" if study.quick else "") + protocol + overrides_tag(overrides or {}))


def sweep_out(base: RunConfig, parameter: str, *, quick: bool = False,
              overrides: Optional[Mapping[str, Any]] = None, root: str | Path = "studies-out") -> Path:
    """A sweep's default output folder, ``studies-out/sweep-<baseline>-<parameter>[-quick][-<overrides>]``:
    quick results live apart from full ones, so they can never be mistaken for each other."""
    return Path(root) / (f"sweep-{base.name}-{parameter.split('.')[-1]}" + ("-quick" if quick else "")
                         + overrides_tag(overrides or {}))


def sweep_base(*, study: Optional[str] = None, baseline: Optional[str] = None, config: Optional[str | Path] = None,
               quick: bool = False, overrides: Optional[Mapping[str, Any]] = None) -> RunConfig:
    """The config a sweep starts from: a run config file (``config``), or the run ``baseline`` of the
    study ``study`` (a shipped name or a .toml path; ``quick``: with its quick settings), with
    ``overrides`` applied and the model fitted to the data they name.

    One :class:`~aelab.errors.ConfigError` line for a combination that cannot be meant: a file and
    a study both, ``quick`` with a file (a file names no quick settings), a baseline the study lacks.
    """
    if config is not None:
        if study is not None or baseline is not None:
            raise ConfigError("--config is the sweep's baseline itself; drop --baseline/--study, or drop --config "
                              "to start from a study's run")
        if quick:
            raise ConfigError("--quick applies a study's quick settings, and --config names no study; set "
                              "--limit and --epochs instead")
        base = RunConfig.from_toml(config)
    else:
        if study is None or baseline is None:
            raise ConfigError("a sweep starts from a run config file or from a study's run: give both the study "
                              "and its baseline run, or a config")
        st = load_study(study, quick=quick)
        if baseline not in st.runs:
            raise ConfigError(f"--baseline {baseline!r} is not a run of study {st.name}; choose from {', '.join(st.runs)}")
        base = st.runs[baseline]
    return with_overrides(base, dict(overrides)) if overrides else base  # the model takes its input shape from the data


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


__all__ = ["data_name", "data_source_text", "default_run_name", "fresh_run_dir", "fast_engine_note", "overrides_tag", "run_config",
           "study_out", "sweep_base", "sweep_out"]
