"""aelab: an autoencoder lab — build, train, diagnose and compare autoencoders.

The public API. ``import aelab`` itself does no work: each name is imported the first time it is
used, so a program that only parses arguments (``aelab --help``) never loads PyTorch.

Configs
    ``RunConfig`` (with ``ModelConfig``, ``DataConfig``, ``TrainConfig``): a validated, frozen run
    config; ``RunConfig.from_toml(path)``, ``cfg.with_overrides({"model.activity_l1": 1e-4})``.
    ``fit_config(cfg)``: the config with its model's input shape (and a table's scaling) fitted to
    the data it names, as the CLI fits its flags (a model written for MNIST's 784 pixels takes
    the 64 of ``digits``).

Training
    ``train(cfg, run_dir, on_event=None, ...)``: train one config into its run directory and
    return it opened (a ``TrainedRun``); a finished run is reused, an interrupted one resumes.
    ``train_runs(configs, run_dirs, ...)``: many configs at once (groups of same-shape runs
    trained side by side), a ``RunResult`` per run.
    ``load_study(name_or_path)``, ``run_study(study, out_dir)``: the studies behind ``aelab study``.
    ``run_sweep(base, parameter, values, out_dir)``: one parameter over a list of values
    (``aelab sweep``); ``sweep_base(...)`` gives its starting config from a study or a file.

Finished runs
    ``open_run(run_dir) -> TrainedRun``: ``.config``, ``.history``, ``.metrics``, ``.model``, and
    ``.encode(x)``, ``.decode(z)``, ``.reconstruct(x)`` on arrays in the data's own shape and
    range (``aelab.data.load`` output goes straight in: the run's own scaling is applied, and
    decodings come back in the data's range).
    ``load_model(run_dir)``: the trained ``torch`` model and its config, weights checked.
    ``build_model(model_config)``: an untrained model.

Reports
    ``compose_report(dir_or_results) -> Report``: a study's or sweep's report content (its
    sections as typed objects, its figures as PNG bytes; ``.html()``, ``.markdown()``), built from
    the saved results without writing a file. ``write_report(report, dir)`` writes it;
    ``build_report(study_dir)`` does both for a study (``aelab report``).

Example::

    import aelab
    cfg = aelab.fit_config(aelab.RunConfig().with_overrides({"data.dataset": "digits", "train.epochs": 5}))
    run = aelab.train(cfg, "runs/digits")
    x = aelab.data.load(cfg.data).x_test          # uint8, (N, 1, 8, 8), values 0..16
    codes = run.encode(x)                         # (N, 32)
    images = run.reconstruct(x)                   # (N, 1, 8, 8), values 0..16
"""

__version__ = "0.1.0"

#: public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "RunConfig": "config", "ModelConfig": "config", "DataConfig": "config", "TrainConfig": "config",
    "fit_config": "data",
    "build_model": "models",
    "train_runs": "runs", "load_model": "runs", "RunResult": "runs",
    "train": "runs.trained", "open_run": "runs.trained", "TrainedRun": "runs.trained",
    "load_study": "study", "run_study": "study", "run_sweep": "study",
    "sweep_base": "study.plan",
    "compose_report": "report", "write_report": "report", "Report": "report", "build_report": "report",
}

#: subpackages reachable as attributes before anything imported them (``aelab.data.load``)
_SUBPACKAGES = ("data", "models", "runs", "study", "report", "track", "export", "sklearn")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):  # lazy re-exports keep `import aelab` (and `aelab --help`) free of PyTorch
    if name in _EXPORTS or name in _SUBPACKAGES:
        import importlib  # deferred: a standard module, needed only when a name is first used

        if name in _SUBPACKAGES:
            return importlib.import_module(f".{name}", __name__)  # the import binds it as an attribute
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # the next use is a plain attribute
        return value
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")


def __dir__():  # tab completion and dir() show the public API, not just what is loaded
    return sorted(set(globals()) | set(__all__))
