"""Studies as data: a TOML file of shared defaults, baselines, variants and questions.

A variant is a baseline plus dotted overrides (``base = "lab_sparse"``, ``model.activity_l1 =
0.01``); a question pairs a variant with its baseline and lists the claims to check. Loading a
study validates every run's config, so a typo fails before anything trains. Optional ``[[notes]]``
tables (``title``, ``text``) are the study's method notes: its report lists them, and only its.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from ..config import RunConfig, load_toml
from ..errors import ConfigError

TOP_KEYS = {"title", "description", "defaults", "quick", "protocols", "baselines", "variants", "questions", "notes"}
NOTE_KEYS = {"title", "text"}
QUESTION_KEYS = {"id", "section", "question", "baseline", "variant", "claims"}


@dataclass(frozen=True)
class Question:
    id: str
    section: str
    question: str
    baseline: str
    variant: str
    claims: tuple = ()


@dataclass
class Study:
    name: str
    title: str
    description: str
    runs: dict[str, RunConfig]  # run name → validated config (baselines first, then variants)
    questions: list[Question] = field(default_factory=list)
    protocol: str = "seed"
    quick: bool = False
    source: str = ""
    protocols: dict = field(default_factory=dict)
    #: method notes of this study (``[[notes]]`` tables: ``title``, ``text``); its report lists them
    notes: list[dict[str, str]] = field(default_factory=list)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def shipped_studies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("aelab.studies").iterdir() if p.name.endswith(".toml"))


def find_study(name_or_path: str) -> Path:
    """A shipped study's name (``exercise12``) or a path to a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"study file {p} does not exist; give a path to a .toml file or one of: {', '.join(shipped_studies())}")
        return p
    res = resources.files("aelab.studies") / f"{name_or_path}.toml"
    if not res.is_file():
        raise ConfigError(f"unknown study {name_or_path!r}; shipped studies: {', '.join(shipped_studies())} (or give a .toml path)")
    return Path(str(res))


def load_study(name_or_path: str, *, protocol: str = "seed", quick: bool = False,
               overrides: Optional[dict[str, Any]] = None) -> Study:
    path = find_study(name_or_path)
    raw = load_toml(path, "study file")
    return study_from_dict(raw, name=path.stem, protocol=protocol, quick=quick, overrides=overrides, source=str(path))


def _nest(dotted: dict[str, Any]) -> dict:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}`` (TOML already nests dotted keys; CLI overrides don't)."""
    out: dict = {}
    for k, v in dotted.items():
        node = out
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def study_from_dict(raw: dict, *, name: str = "study", protocol: str = "seed", quick: bool = False,
                    overrides: Optional[dict[str, Any]] = None, source: str = "") -> Study:
    where = source or name
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"study {where}: unknown top-level key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    defaults = raw.get("defaults", {})
    protocols = raw.get("protocols", {})
    if protocol != "seed":
        if protocol not in protocols:
            raise ConfigError(f"study {where}: unknown protocol {protocol!r}; allowed: seed, {', '.join(protocols) or '(none)'}")
        defaults = deep_merge(defaults, protocols[protocol])
    late = raw.get("quick", {}) if quick else {}
    if overrides:
        late = deep_merge(late, _nest(overrides))
    baselines = raw.get("baselines", {})
    variants = raw.get("variants", {})
    if not baselines:
        raise ConfigError(f"study {where}: no [baselines.<name>] tables; a study needs at least one baseline")
    runs: dict[str, RunConfig] = {}
    for rname, table in baselines.items():
        table = _from_preset(table, where, rname)
        d = deep_merge(deep_merge(defaults, table), late)
        d["name"] = rname
        runs[rname] = _validated(d, where, rname)
    for rname, table in variants.items():
        table = dict(table)
        base = table.pop("base", None)
        if base not in baselines:
            raise ConfigError(f"study {where}: variant {rname!r} needs base = one of {', '.join(baselines)} (got {base!r})")
        d = deep_merge(deep_merge(deep_merge(defaults, _from_preset(baselines[base], where, base)), table), late)
        d["name"] = rname
        if rname in runs:
            raise ConfigError(f"study {where}: the name {rname!r} is both a baseline and a variant")
        runs[rname] = _validated(d, where, rname)
    questions = []
    for i, q in enumerate(raw.get("questions", [])):
        bad = set(q) - QUESTION_KEYS
        if bad:
            raise ConfigError(f"study {where}: question {i + 1}: unknown key {sorted(bad)[0]!r}; allowed: {', '.join(sorted(QUESTION_KEYS))}")
        for k in ("baseline", "variant"):
            if q.get(k) not in runs:
                raise ConfigError(f"study {where}: question {q.get('id', i + 1)}: {k} {q.get(k)!r} is not a run of the study")
        questions.append(Question(id=str(q.get("id", i + 1)), section=str(q.get("section", "")),
                                  question=str(q.get("question", "")), baseline=q["baseline"],
                                  variant=q["variant"], claims=tuple(q.get("claims", ()))))
    return Study(name=name, title=str(raw.get("title", name)), description=str(raw.get("description", "")),
                 runs=runs, questions=questions, protocol=protocol, quick=quick, source=source,
                 protocols=protocols, notes=_notes(raw.get("notes", []), where))


def _from_preset(table: dict, where: str, rname: str) -> dict:
    """A baseline may start from a shipped preset (``preset = "keras-blog-conv"``); its own keys
    override the preset's, and the study's defaults give way to both."""
    if not isinstance(table, dict) or "preset" not in table:
        return table
    from ..models.presets import load_preset

    table = dict(table)
    name = table.pop("preset")
    try:
        start = load_preset(str(name)).to_dict()
    except ConfigError as err:
        raise ConfigError(f"study {where}: baseline {rname!r}: {err}") from None
    start.pop("name", None)
    return deep_merge(start, table)


def _notes(raw: Any, where: str) -> list[dict[str, str]]:
    """``[[notes]]`` tables (``title`` optional, ``text`` required) or plain strings → [{title, text}]."""
    if not isinstance(raw, list):
        raise ConfigError(f"study {where}: 'notes' must be a list of [[notes]] tables with a 'text' (and optional 'title')")
    out = []
    for i, n in enumerate(raw):
        if isinstance(n, str):
            n = {"text": n}
        if not isinstance(n, dict):
            raise ConfigError(f"study {where}: note {i + 1} must be a table with 'text' (and optional 'title'), got {n!r}")
        bad = set(n) - NOTE_KEYS
        if bad:
            raise ConfigError(f"study {where}: note {i + 1}: unknown key {sorted(bad)[0]!r}; allowed: {', '.join(sorted(NOTE_KEYS))}")
        text = n.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"study {where}: note {i + 1} needs a non-empty 'text'")
        title = n.get("title", "")
        if not isinstance(title, str):
            raise ConfigError(f"study {where}: note {i + 1}: 'title' must be a string")
        out.append({"title": " ".join(title.split()), "text": " ".join(text.split())})
    return out


def _validated(d: dict, where: str, rname: str) -> RunConfig:
    try:
        return RunConfig.from_dict(d)
    except ConfigError as err:
        raise ConfigError(f"study {where}, run {rname!r}: {err}") from None
