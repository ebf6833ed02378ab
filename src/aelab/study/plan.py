"""A study or sweep, planned from what a client gives: the folder its results go to when none is
given, and the config a sweep starts from (a run config file, or a study's run).

Every client decides these the same way by calling here: ``aelab study``/``aelab sweep`` hold no
such logic, and a notebook gets the same folders.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config import RunConfig
from ..data import with_overrides
from ..errors import ConfigError
from ..runs.plan import data_name
from .spec import BASE_PROTOCOL, Study, load_study


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


__all__ = ["overrides_tag", "study_out", "sweep_base", "sweep_out"]
