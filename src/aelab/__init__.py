"""aelab: an autoencoder lab — build, train, diagnose and compare autoencoders.

Importing this package does no work; the public API is re-exported lazily from its modules.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "RunConfig", "ModelConfig", "DataConfig", "TrainConfig", "build_model",
           "train_runs", "load_model"]


def __getattr__(name):  # lazy re-exports keep `import aelab` (and `aelab --help`) fast
    if name in ("RunConfig", "ModelConfig", "DataConfig", "TrainConfig"):
        from . import config
        return getattr(config, name)
    if name == "build_model":
        from .models import build_model
        return build_model
    if name in ("train_runs", "load_model"):
        from . import runs
        return getattr(runs, name)
    raise AttributeError(name)
