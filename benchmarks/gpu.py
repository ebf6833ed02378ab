"""What a GPU gives aelab: the issue's targets, measured in one run of under 5 minutes.

    python -m benchmarks.gpu [--device cuda] [--epochs 5] [--results benchmarks/RESULTS.md]
    python -m benchmarks.gpu --device cpu --tiny      # smoke test: synthetic data, seconds

Measures, on one device, through aelab's own API (what ``aelab study``/``sweep`` run):

* **undercomplete** — seconds per epoch of the lab undercomplete AE (784→32→784, batch 64, full
  MNIST), the median over epochs 2..N (epoch 1 pays one-off start-up: CUDA context, kernels,
  the CUDA-graph capture); then the same run with ``AELAB_CUDA_GRAPHS=0`` (on a GPU: the eager
  stacked step instead of the captured one; on a CPU the same path twice);
* **study** — the whole ``exercise12`` study (17 trainings: the nine of the notebook and 4.1's noise curve), training wall time;
* **sweep** — a 64-value sweep of the undercomplete AE's ``model.activity_l1`` (64 same-shape
  models: one stacked group) against the same sweep with one value, and their ratio;
* **presets** — seconds per epoch of the convolutional and VAE presets (``keras-blog-conv``,
  ``keras-io-vae``, ``pytorch-vae``) at their own batch sizes.

Targets (the issue's, for one H100/H200): undercomplete ≤ 0.05 s/epoch, study ≤ 15 s, sweep ≤ 2×
one run. ``--tiny`` shrinks everything (synthetic digits, a few hundred images, 2 epochs) so the
whole script runs in seconds on a CPU; it checks the script, not the hardware, and writes
``--results`` only when given. A full run replaces the GPU block of ``benchmarks/RESULTS.md``
(between ``<!-- gpu-begin -->`` and ``<!-- gpu-end -->``) and leaves the rest of the file as it is.
Each figure's stepper (``run.json``'s engine: ``GraphedDenseStepper`` is the CUDA-graph path) is
listed under the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

BEGIN, END = "<!-- gpu-begin -->", "<!-- gpu-end -->"
TARGETS = {"undercomplete_s_per_epoch": 0.05, "study_s": 15.0, "sweep_ratio": 2.0}
PRESETS = ("keras-blog-conv", "keras-io-vae", "pytorch-vae")


def _data(tiny: bool) -> dict:
    if tiny:
        return {"data.dataset": "synthetic", "data.limit": 256, "data.test_limit": 64}
    return {}


def _toml_value(v) -> str:
    return json.dumps(v)  # numbers, strings and lists of them read the same in TOML


def _study_toml(path: Path, runs: dict[str, dict], defaults: dict) -> Path:
    lines = ['title = "benchmark"', 'description = "benchmarks/gpu.py"', "[defaults]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in defaults.items()]
    for name, keys in runs.items():
        lines.append(f"[baselines.{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _env(name: str, value: str):
    """``name=value`` in the environment for the block (worker processes spawned in it inherit it)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _engines(runs) -> str:
    """The steppers that trained these run records (study or sweep results), from their run.json."""
    recs = [r for v in runs.values() for r in (v if isinstance(v, list) else [v])]
    return ", ".join(sorted({r.get("run", {}).get("engine", "?") for r in recs}))


def _sec_per_epoch(history: dict) -> float:
    secs = history["epoch_seconds"]
    return statistics.median(secs[1:] if len(secs) > 1 else secs)


PARTS = ("undercomplete", "study", "sweep", "presets")


def measure(device: str, tiny: bool, epochs: int, work: Path, parts=PARTS) -> dict:
    from aelab.engine.graphs import ENV as GRAPHS_ENV
    from aelab.study import load_study, run_study

    # --tiny trains in this process (worker processes would take longer to start than to train)
    common = dict(device=device, progress=False, report=False, workers=1 if tiny else None)
    out: dict = {}
    ex12 = load_study("exercise12")
    under = ex12.runs["lab_undercomplete"].to_dict()
    lab = {"model.encoder": under["model"]["encoder"], "model.decoder": under["model"]["decoder"],
           "train.epochs": epochs, "train.batch_size": 64}

    if "undercomplete" in parts:  # the lab undercomplete AE alone
        study = load_study(str(_study_toml(work / "under.toml", {"undercomplete": lab}, _data(tiny))))
        res = run_study(study, work / "under", **common)
        out["undercomplete_s_per_epoch"] = _sec_per_epoch(res["runs"]["undercomplete"]["history"])
        out["undercomplete_engine"] = _engines(res["runs"])
        with _env(GRAPHS_ENV, "0"):  # the switch off: the eager step, for comparison
            res = run_study(study, work / "under_eager", **common)
        out["undercomplete_eager_s_per_epoch"] = _sec_per_epoch(res["runs"]["undercomplete"]["history"])
        out["undercomplete_eager_engine"] = _engines(res["runs"])

    # the whole exercise12 study (its own epochs; --tiny: its quick settings on synthetic data)
    study = load_study("exercise12", quick=tiny, overrides={**_data(tiny), "train.epochs": 1} if tiny else {})
    if "study" in parts:
        t0 = time.perf_counter()
        res = run_study(study, work / "study", **common)
        out["study_s"] = res["wall_seconds"]
        out["study_engines"] = _engines(res["runs"])
        out["study_total_s"] = time.perf_counter() - t0

    # 64 same-shape models in one stacked group against one
    if "sweep" in parts:
        _sweep(study.runs["lab_undercomplete"], lab, tiny, work, common, out)
    if "presets" in parts:
        _presets(tiny, epochs, work, common, out)
    return out


def _sweep(base, lab: dict, tiny: bool, work: Path, common: dict, out: dict) -> None:
    from aelab.study import run_sweep

    base = base.with_overrides({**lab, **_data(tiny)})
    n = 4 if tiny else 64  # --tiny: each run's artifacts (figures, metrics) would dominate
    values = [float(f"{1e-7 * (1e-1 / 1e-7) ** (i / (n - 1)):.6g}") for i in range(n)]
    one = run_sweep(base, "model.activity_l1", values[:1], work / "sweep1", **common)
    many = run_sweep(base, "model.activity_l1", values, work / "sweep64", **common)
    out["sweep_values"], out["sweep1_s"], out["sweep64_s"] = n, one["wall_seconds"], many["wall_seconds"]
    out["sweep_ratio"] = many["wall_seconds"] / one["wall_seconds"]
    out["sweep_engines"] = _engines(many["runs"])


def _presets(tiny: bool, epochs: int, work: Path, common: dict, out: dict) -> None:
    from aelab.study import load_study, run_study

    # the image presets, each at its own batch size
    # a preset's own settings win over [defaults]: the data goes into each run
    runs = {p.replace("-", "_"): {"preset": p, "train.epochs": epochs, **(_data(tiny) if tiny else {})}
            for p in PRESETS}
    study = load_study(str(_study_toml(work / "presets.toml", runs, {})))
    res = run_study(study, work / "presets", **common)
    out["presets"] = {p: {"s_per_epoch": _sec_per_epoch(res["runs"][p.replace("-", "_")]["history"]),
                          "batch_size": res["runs"][p.replace("-", "_")]["config"]["train"]["batch_size"]}
                      for p in PRESETS}


def machine(device: str) -> dict:
    import torch

    from aelab.runs import resolve_device

    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": str(dev), "name": name, "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(res: dict) -> str:
    m, r = res["machine"], res["results"]
    on_gpu = m["device"].startswith("cuda")

    def verdict(key: str) -> str:
        if not on_gpu:
            return "– (not a GPU)"
        return "met" if r[key] <= TARGETS[key] else "not met"

    lines = [BEGIN, "## GPU: benchmarks/gpu.py", "",
             f"Command: `{res['command']}`", "",
             f"Device: {m['name']} ({m['device']}); torch {m['torch']}, CUDA {m['cuda']}, Python {m['python']}; "
             f"{m['date']}." + ("" if not res["tiny"] else " **--tiny: synthetic data, a smoke test, not a measurement.**"),
             "", "| what | measured | target | |", "|---|---:|---:|---|"]
    if "undercomplete_s_per_epoch" in r:
        lines.append(f"| lab undercomplete AE, batch 64, s/epoch | {r['undercomplete_s_per_epoch']:.3f} | ≤ 0.05 | "
                     f"{verdict('undercomplete_s_per_epoch')} |")
    if "undercomplete_eager_s_per_epoch" in r:
        lines.append(f"| the same, `AELAB_CUDA_GRAPHS=0`, s/epoch | {r['undercomplete_eager_s_per_epoch']:.3f} | | |")
    if "study_s" in r:
        lines.append(f"| exercise12 study, training s | {r['study_s']:.1f} | ≤ 15 | {verdict('study_s')} |")
    if "sweep_ratio" in r:
        lines.append(f"| {r['sweep_values']}-value sweep ÷ one run ({r['sweep64_s']:.1f} s ÷ {r['sweep1_s']:.1f} s) | "
                     f"{r['sweep_ratio']:.2f} | ≤ 2 | {verdict('sweep_ratio')} |")
    for p, v in r.get("presets", {}).items():
        lines.append(f"| {p}, batch {v['batch_size']}, s/epoch | {v['s_per_epoch']:.3f} | | |")
    engines = [f"{what}: {r[key]}" for what, key in (
        ("lab undercomplete AE", "undercomplete_engine"), ("with `AELAB_CUDA_GRAPHS=0`", "undercomplete_eager_engine"),
        ("exercise12", "study_engines"), ("sweep", "sweep_engines")) if key in r]
    if engines:
        lines += ["", "Steppers (run.json): " + "; ".join(engines) + "."]
    lines += ["", END]
    return "\n".join(lines)


def merge(text: str, block: str) -> str:
    """``text`` with its GPU block replaced by ``block`` (appended when it has none)."""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    ap.add_argument("--tiny", action="store_true", help="synthetic data, seconds: checks the script, not the device")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per timed model (default 5; --tiny: 2)")
    ap.add_argument("--results", metavar="MD", default=None,
                    help="Markdown file whose GPU block to replace (default: benchmarks/RESULTS.md; --tiny: none)")
    ap.add_argument("--json", metavar="PATH", help="also write the raw figures here")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"what to measure, comma-separated (default: {','.join(PARTS)})")
    args = ap.parse_args(argv)
    epochs = args.epochs or (2 if args.tiny else 5)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    res = {"command": f"python -m benchmarks.gpu {argv_text}".strip(), "tiny": args.tiny,
           "machine": machine(args.device)}
    with tempfile.TemporaryDirectory(prefix="aelab-gpu-bench-") as work:
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            ap.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
        res["results"] = measure(args.device, args.tiny, epochs, Path(work), parts)
    block = markdown(res)
    print(block)
    results = args.results if args.results is not None else (None if args.tiny else "benchmarks/RESULTS.md")
    if results:
        md = Path(results)
        md.write_text(merge(md.read_text() if md.exists() else "", block))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
