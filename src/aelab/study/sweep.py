"""Sweeps: one baseline trained once per value of one parameter, into one output directory.

``aelab sweep --param data.noise_factor --values 0.1,0.3,0.6`` — values as a list, a log range or a
list of lists (:func:`parse_values`); each point's config is the baseline with that one key changed
(:func:`sweep_configs`), and results.json lists the points in order (docs/formats.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .._atomic import write_json
from ..config import RunConfig, parse_value
from ..data import DataCache, DataOptions, fit_config
from ..engine.loop import StopFlag
from ..errors import ConfigError
from ..runs.events import OnEvent
from .output import check_output, data_text, output_mark, owned_output
from .result import StudyResult
from .runner import Report, opened, report_step, results_head, run_record, train_all


def parse_values(text: str) -> list[Any]:
    """``"0.1,0.2,0.4"`` → floats/ints; ``"1e-6..1e-1:6"`` → 6 log-spaced values; ``"2..256:8"`` likewise;
    ``"[0],[1],[3,5]"`` → lists (commas inside brackets belong to the list)."""
    text = text.strip()
    if ".." in text:
        rng, _, count = text.partition(":")
        lo_s, _, hi_s = rng.partition("..")
        missing = [name for name, part in (("LO", lo_s), ("HI", hi_s), ("COUNT", count)) if not part.strip()]
        if missing:
            example = f"{rng.strip()}:6" if missing == ["COUNT"] else "1e-6..1e-1:6"
            raise ConfigError(f"--values {text!r}: the range has no {' and no '.join(missing)}; write LO..HI:COUNT, "
                              f"e.g. {example} for 6 log-spaced values")
        try:
            lo, hi, k = float(lo_s), float(hi_s), int(count)
        except ValueError:
            raise ConfigError(f"--values {text!r}: write a list (0.1,0.2) or a log range LO..HI:COUNT (1e-6..1e-1:6)") from None
        if k < 2 or lo <= 0 or hi <= lo:
            wrong = (f"COUNT is {k}" if k < 2 else f"LO is {lo_s.strip()}" if lo <= 0
                     else f"HI {hi_s.strip()} is not above LO {lo_s.strip()}")
            raise ConfigError(f"--values {text!r}: a range needs 0 < LO < HI and COUNT ≥ 2 ({wrong})")
        vals = [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)]
        if lo_s.strip().lstrip("-").isdigit() and hi_s.strip().lstrip("-").isdigit():
            return sorted({round(v) for v in vals})
        return [float(f"{v:.6g}") for v in vals]
    vals = [parse_value(p.strip()) for p in _split_top(text) if p.strip()]
    if not vals:
        raise ConfigError("--values is empty; give a comma-separated list such as 0.1,0.3,0.6")
    return vals


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets: ``"[0],[3,5]"`` → ``["[0]", "[3,5]"]`` (each value may be a
    list, e.g. the classes data.exclude_labels leaves out)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--values {text!r}: a ']' without its '['; write lists as [0],[3,5]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if depth:
        raise ConfigError(f"--values {text!r}: a '[' is not closed; write lists as [0],[3,5]")
    return parts + [cur]


def sweep_configs(base: RunConfig, parameter: str, values: Sequence[Any]) -> list[RunConfig]:
    cfgs = []
    for v in values:
        if parameter in ("model.code_size", "code_size"):
            enc = list(base.to_dict()["model"]["encoder"])
            if not isinstance(enc[-1], str):
                raise ConfigError(f"--param {parameter}: the last encoder layer of {base.name} is not a dense layer; "
                                  "sweep its own key instead (e.g. the filters of a conv layer via a config file)")
            act = enc[-1].split(":")[1]
            enc[-1] = f"{int(v)}:{act}"
            cfg = base.with_overrides({"model.encoder": enc})
        else:
            cfg = base.with_overrides({parameter: v})
        cfgs.append(cfg.model_copy(update={"name": f"{base.name}-{parameter.split('.')[-1]}={v}"}))
    return cfgs


def run_sweep(base: RunConfig, parameter: str, values: Sequence[Any], out: Path, *, device: str = "auto",
              engine: str = "auto", progress: bool = True, data_opts: DataOptions | None = None,
              report: Report | bool | None = None, stop: StopFlag | None = None,
              workers: int | None = None, quick: bool = False, backend: str = "local",
              address: str | None = None, shared_fs: bool | None = None, seeds: int = 1,
              on_event: OnEvent | None = None) -> StudyResult:
    """Train ``base`` once per value of ``parameter`` into ``out`` and write results.json;
    ``backend``/``address``/``shared_fs``, ``on_event`` and ``report`` (e.g.
    :func:`aelab.report.build_sweep_report`) as for :func:`aelab.study.run_study`. ``seeds`` K > 1:
    each value is trained again with seeds seed+1 … seed+K−1 (results.json ``replicates``, as a
    study's), so the report can show the spread the seed alone causes. Returns what results.json
    holds, as a :class:`~aelab.study.result.StudyResult`."""
    out = Path(out)
    report = report_step(report)
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give 1 or more")
    cfgs = [fit_config(c) for c in sweep_configs(base, parameter, values)]
    extra = [c.with_overrides({"train.seed": c.train.seed + k}).model_copy(
                 update={"name": f"{c.name}@seed{c.train.seed + k}"}) for k in range(1, seeds) for c in cfgs]
    data = DataCache(data_opts or DataOptions())
    vals = ",".join(str(v) for v in values)
    mark = output_mark("sweep", f"{base.name}: {parameter}", cfgs,
                       f"sweep {base.name}: {parameter} over {vals if len(vals) <= 60 else vals[:57] + '...'} "
                       f"({', '.join((['quick'] if quick else []) + [data_text(cfgs)])})")
    check_output(out, mark)  # before a backend is started
    with opened(backend, address, shared_fs, out, cfgs + extra) as be, owned_output(out, cfgs + extra, data, mark):
        results = _run_sweep(base, parameter, values, cfgs, out, device=device, engine=engine, progress=progress,
                             data=data, stop=stop, workers=workers, quick=quick, backend=be, extra=extra,
                             on_event=on_event)
        if report:
            report(out)
        return StudyResult(results, out)


def _run_sweep(base, parameter, values, cfgs, out, *, device, engine, progress, data, stop, workers,
               quick, backend, extra=(), on_event=None) -> dict:
    t0 = time.perf_counter()
    all_dirs = train_all(out, list(cfgs) + list(extra), device=device, engine=engine, data=data,
                         progress=progress, stop=stop, workers=workers, backend=backend, on_event=on_event)
    dirs = all_dirs[:len(cfgs)]
    runs = {c.name: run_record(out, c, d) for c, d in zip(cfgs, dirs)}
    log_x = all(isinstance(v, (int, float)) and v > 0 for v in values) and max(values) / min(values) >= 50
    # no "protocol": a sweep has none of its own; the report reads the scaling from the runs' configs
    results = {
        **results_head(),
        "sweep": f"{base.name}: {parameter}", "parameter": parameter, "values": list(values), "log_x": log_x,
        "quick": quick, "wall_seconds": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "aelab_version": __version__, "runs": runs,
        "points": [{"value": v, "run": c.name} for v, c in zip(values, cfgs)], "baseline": None,
    }
    if extra:  # seed replicates of every point, the point's own run first (as a study's "replicates")
        k = len(extra) // len(cfgs) + 1
        recs = [run_record(out, c, d) for c, d in zip(extra, all_dirs[len(cfgs):])]
        results["replicates"] = {
            "seeds": [cfgs[0].train.seed + j for j in range(k)],
            "runs": {c.name: [runs[c.name]] + [recs[j * len(cfgs) + i] for j in range(k - 1)]
                     for i, c in enumerate(cfgs)},
        }
    write_json(out / "results.json", results)
    return results
