"""aelab: an autoencoder lab — build, train, diagnose and compare autoencoders.

The public API (imported lazily: ``import aelab`` itself does no work):

- ``RunConfig`` (with ``ModelConfig``, ``DataConfig``, ``TrainConfig``): a validated, frozen run
  config; ``RunConfig.from_toml(path)``, ``cfg.with_overrides({"model.activity_l1": 1e-4})``.
- ``train_runs(configs, run_dirs, ...)``: train each config into its run directory (finished runs
  are reused, interrupted ones resume; a directory is reused only by the config it was written
  for, or replaced with ``overwrite=True``) and return a ``RunResult`` per run.
- ``load_model(run_dir)``: the trained model and its config, weights checked against their hash.
- ``build_model(model_config)``: an untrained model from a ``ModelConfig``.
- ``load_study(name_or_path)``, ``run_study(study, out_dir)``: the studies behind ``aelab study``.

Example::

    from aelab import RunConfig, train_runs, load_model
    cfg = RunConfig().with_overrides({"model.activity_l1": 1e-4, "train.epochs": 30})
    (result,) = train_runs([cfg], ["runs/sparse"])
    model, cfg = load_model("runs/sparse")
"""

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "config", "ModelConfig": "config", "DataConfig": "config", "TrainConfig": "config",
    "build_model": "models", "train_runs": "runs", "load_model": "runs", "RunResult": "runs",
    "load_study": "study", "run_study": "study",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):  # lazy re-exports keep `import aelab` (and `aelab --help`) fast
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'aelab' has no attribute {name!r}")


def __dir__():  # tab completion and dir() show the public API, not just what is loaded
    return sorted(set(globals()) | set(__all__))
