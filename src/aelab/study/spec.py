"""Studies as data: a TOML file of shared defaults, baselines, variants and questions.

A variant is a baseline plus dotted overrides (``base = "lab_sparse"``, ``model.activity_l1 =
0.01``); a question pairs a variant with its baseline and lists the claims to check. Loading a
study validates every run's config and every claim (:mod:`aelab.study.claims`), so a typo fails
before anything trains. Optional ``[[notes]]`` tables (``title``, ``text``) are the study's method
notes: its report lists them, and only its.

Protocols. A study runs under its *base* protocol (:data:`BASE_PROTOCOL`: the settings its tables
give) unless another is chosen. ``[protocols.NAME]`` tables declare the others as data: dotted
settings merged into the defaults (``data.scaler_fit = "train"``), an optional ``description``, and
``reevaluate = true`` when the settings change only how the test split is prepared, not what
trains: a study run under its base protocol then also evaluates each trained run under that
protocol, without retraining (results.json ``corrected``; at most one such protocol per study).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_toml
from ..errors import ConfigError
from ..models import family_of
from ..presets import load_preset
from .claims import Claim, ClaimError, parse_claim, parse_metric_path

TOP_KEYS = {"title", "description", "defaults", "quick", "protocols", "baselines", "variants", "questions", "notes"}
NOTE_KEYS = {"title", "text"}
QUESTION_KEYS = {"id", "section", "question", "baseline", "variant", "claims"}
#: the keys of a ``[protocols.NAME]`` table that are not run settings
PROTOCOL_KEYS = {"description", "reevaluate"}

#: the protocol a study runs under when none is chosen: the settings its own tables give
BASE_PROTOCOL = "base"
#: earlier names of the base protocol ("seed": the seed notebook's) accepted on the command line and
#: read from a results.json written before the rename; the one place they are mapped
PROTOCOL_ALIASES = {"seed": BASE_PROTOCOL}


def protocol_name(name: str | None) -> str:
    """The protocol's name as results.json and the runner use it: None and the base protocol's
    earlier names are :data:`BASE_PROTOCOL`; any other name is returned as it is."""
    if name is None:
        return BASE_PROTOCOL
    return PROTOCOL_ALIASES.get(name, name)


@dataclass(frozen=True)
class Protocol:
    """One ``[protocols.NAME]`` table: ``settings`` (nested, merged into the study's defaults),
    ``description`` (what it changes, in words) and ``reevaluate`` (the settings change only the
    evaluation data, so the base protocol's trained runs are also evaluated under it)."""

    name: str
    settings: dict = field(default_factory=dict)
    description: str = ""
    reevaluate: bool = False


@dataclass(frozen=True)
class Question:
    id: str
    section: str
    question: str
    baseline: str
    variant: str
    claims: tuple[Claim, ...] = ()


@dataclass
class Study:
    name: str
    title: str
    description: str
    runs: dict[str, RunConfig]  # run name → validated config (baselines first, then variants)
    questions: list[Question] = field(default_factory=list)
    protocol: str = BASE_PROTOCOL
    quick: bool = False
    source: str = ""
    protocols: dict[str, Protocol] = field(default_factory=dict)
    #: under the base protocol, the protocol whose settings change only the evaluation data, with each
    #: run's config under it: the runner evaluates the trained runs again on that data (no retraining)
    reevaluate: tuple[Protocol, dict[str, RunConfig]] | None = None
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


def load_study(name_or_path: str, *, protocol: str | None = None, quick: bool = False,
               overrides: dict[str, Any] | None = None) -> Study:
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


def study_from_dict(raw: dict, *, name: str = "study", protocol: str | None = None, quick: bool = False,
                    overrides: dict[str, Any] | None = None, source: str = "") -> Study:
    where = source or name
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"study {where}: unknown top-level key {min(unknown)!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    protocol = protocol_name(protocol)
    defaults = raw.get("defaults", {})
    protocols = _protocols(raw.get("protocols", {}), where)
    if protocol != BASE_PROTOCOL and protocol not in protocols:
        raise ConfigError(f"study {where}: unknown protocol {protocol!r}; allowed: "
                          f"{', '.join([BASE_PROTOCOL, *protocols])}")
    late = raw.get("quick", {}) if quick else {}
    if overrides:
        late = deep_merge(late, _nest(overrides))
    baselines = raw.get("baselines", {})
    variants = raw.get("variants", {})
    if not baselines:
        raise ConfigError(f"study {where}: no [baselines.<name>] tables; a study needs at least one baseline")
    # every protocol's runs are built (so a typo in one not chosen fails now too); the chosen one's train
    under = {p.name: _runs(deep_merge(defaults, p.settings), baselines, variants, late, f"{where} (protocol {p.name})")
             for p in protocols.values()}
    runs = under[protocol] if protocol in under else _runs(defaults, baselines, variants, late, where)
    again = [p for p in protocols.values() if p.reevaluate]
    if len(again) > 1:
        raise ConfigError(f"study {where}: protocols {', '.join(p.name for p in again)} both say "
                          "reevaluate = true; at most one protocol may")
    reevaluate = (again[0], under[again[0].name]) if again and protocol == BASE_PROTOCOL else None
    questions = []
    for i, q in enumerate(raw.get("questions", [])):
        bad = set(q) - QUESTION_KEYS
        if bad:
            raise ConfigError(f"study {where}: question {i + 1}: unknown key {min(bad)!r}; allowed: {', '.join(sorted(QUESTION_KEYS))}")
        for k in ("baseline", "variant"):
            if q.get(k) not in runs:
                raise ConfigError(f"study {where}: question {q.get('id', i + 1)}: {k} {q.get(k)!r} is not a run of the study")
        questions.append(Question(id=str(q.get("id", i + 1)), section=str(q.get("section", "")),
                                  question=str(q.get("question", "")), baseline=q["baseline"],
                                  variant=q["variant"], claims=_claims(q.get("claims", []), where, q.get("id", i + 1),
                                                 runs[q["baseline"]], runs[q["variant"]])))
    return Study(name=name, title=str(raw.get("title", name)), description=str(raw.get("description", "")),
                 runs=runs, questions=questions, protocol=protocol, quick=quick, source=source,
                 protocols=protocols, reevaluate=reevaluate, notes=_notes(raw.get("notes", []), where))


def _runs(defaults: dict, baselines: dict, variants: dict, late: dict, where: str) -> dict[str, RunConfig]:
    """Every run's validated config: the defaults, then its baseline (and variant) table, then ``late``
    (--quick settings and command-line overrides); baselines first, then variants."""
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
    return runs


def _protocols(raw: Any, where: str) -> dict[str, Protocol]:
    """The ``[protocols.NAME]`` tables, checked (their settings are checked with the runs they build)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"study {where}: 'protocols' must hold [protocols.NAME] tables")
    out = {}
    for pname, table in raw.items():
        if protocol_name(pname) == BASE_PROTOCOL:
            raise ConfigError(f"study {where}: [protocols.{pname}]: {pname!r} names the base protocol (the study's "
                              "own settings); give the protocol another name")
        if not isinstance(table, dict):
            raise ConfigError(f"study {where}: protocols.{pname} must be a table of settings")
        table = dict(table)
        description = table.pop("description", "")
        reevaluate = table.pop("reevaluate", False)
        if not isinstance(description, str):
            raise ConfigError(f"study {where}: protocols.{pname}.description must be a string")
        if not isinstance(reevaluate, bool):
            raise ConfigError(f"study {where}: protocols.{pname}.reevaluate must be true or false")
        if reevaluate and set(table) - {"data"}:
            raise ConfigError(f"study {where}: protocols.{pname}: reevaluate = true re-evaluates trained runs on other "
                              f"data, so its settings may change only data.*, not {min(set(table) - {'data'})}.*")
        out[pname] = Protocol(pname, table, " ".join(description.split()), reevaluate)
    return out


def _claims(raw: Any, where: str, qid: Any, baseline: RunConfig, variant: RunConfig) -> tuple[Claim, ...]:
    """A question's claims, each validated against its kind (:func:`aelab.study.claims.parse_claim`)
    and against the runs it reads (:func:`_check_names`)."""
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"study {where}: question {qid}: 'claims' must be a list of {{text, kind, params}} tables")
    out = []
    for j, c in enumerate(raw):
        try:
            claim = parse_claim(c)
            _check_names(claim, baseline, variant)
        except ClaimError as err:
            raise ConfigError(f"study {where}: question {qid}: claim {j + 1}: {err}") from None
        out.append(claim)
    return tuple(out)


def _check_names(claim: Claim, baseline: RunConfig, variant: RunConfig) -> None:
    """A loss term (``final.terms.<name>``) or family diagnostic (``metrics.family.<key>``) that a
    claim names must be one the family of every run it reads declares; ClaimError otherwise. Other
    names depend on the data and the run (a metric a table has no SSIM for is "not judged" later)."""
    p = claim.params
    of = getattr(p, "of", "variant")
    runs = [baseline] if of == "baseline" else [variant] if p.one_run else [baseline, variant]
    for field_name in ("metric", "history"):
        path = getattr(p, field_name, None)
        if not isinstance(path, str):
            continue
        mp = parse_metric_path(path) if field_name == "metric" else None
        key = mp.key if mp else path
        history = mp is None or mp.source != "metrics"
        term = key.split(".", 1)[1] if history and key.startswith(("terms.", "val_terms.")) else None
        diagnostic = mp.key if mp is not None and mp.block == "family" else None
        for cfg in runs:
            fam = family_of(cfg.model)
            if term is not None and term != "reconstruction" and term not in fam.terms:
                known = ", ".join(["reconstruction", *fam.terms])
                raise ClaimError(f"{field_name} {path!r}: run {cfg.name!r} ({fam.name}) has no loss term {term!r}; "
                                 f"its terms: {known}")
            if diagnostic is not None and diagnostic not in fam.diagnostics:
                known = ", ".join(fam.diagnostics) or "none"
                raise ClaimError(f"{field_name} {path!r}: run {cfg.name!r} ({fam.name}) has no diagnostic "
                                 f"{diagnostic!r}; its diagnostics: {known}")


def _from_preset(table: dict, where: str, rname: str) -> dict:
    """A baseline may start from a shipped preset (``preset = "keras-blog-conv"``); its own keys
    override the preset's, and the study's defaults give way to both."""
    if not isinstance(table, dict) or "preset" not in table:
        return table
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
            raise ConfigError(f"study {where}: note {i + 1}: unknown key {min(bad)!r}; allowed: {', '.join(sorted(NOTE_KEYS))}")
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
