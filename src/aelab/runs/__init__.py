"""Runs: from validated configs to trained, evaluated, saved run directories.

One concept per module:

* ``plan.py`` — one run planned from what a client gives (its config fitted to its data, its name
  and directory), as ``aelab train`` and the API do;
* ``spec.py`` — :class:`RunSpec`: a run's config, directory, fingerprint and data key, computed once;
* ``directory.py`` — a run directory: layout, state, mark, checkpoints, reading a finished run back;
* ``group.py`` — the unit of work: a group of same-shape runs trained side by side (:func:`train_group`);
* ``finish.py`` — finishing a run: evaluation and artifacts, ``DONE`` last;
* ``codes.py`` — a run's codes (``codes.npz``) and the data's own baselines of the latent table;
* ``events.py`` — typed events for any callback, and :class:`Stop` (stop from code, as Ctrl-C);
* ``progress.py`` — :class:`RunProgress`, the progress display (a consumer of the events);
* ``executors/`` — where groups train (local process pool, Ray), behind one protocol with a registry;
* ``train.py`` — :func:`train_runs`, which ties them together.

Every file is written atomically; ``DONE`` last (formats: ``docs/formats.md``).
"""

from ..data.cache import DataCache, DataOptions, data_key
from ..engine.loop import Interrupted
from .directory import (CHECKPOINT, RUN_FORMAT, RUN_LAYOUT, RUN_MARK, RunResult, drop_checkpoint, interruption_summary,
                        is_done, load_checkpoint, load_model, read_result, run_dir_state, save_checkpoint)
from .events import (EpochEnded, Event, FinishStep, Progress, RunFinished, RunFinishing, RunStarted, Stop)
from .executors import BACKENDS, EXECUTORS, Executor, open_executor, register_executor
from .executors.local import resolve_device
from .executors.schedule import SPLIT_PENALTY, balance_groups, lpt_makespan, plan_workers
from .finish import FINISH_STEPS, finish_run, save_weights, write_recon_png
from .group import GroupJob, group_key, train_group
from .progress import RunProgress
from .spec import RunSpec, spec_of
from .train import TrainOptions, train_runs

__all__ = [
    "train_runs", "TrainOptions", "load_model", "RunResult", "RunSpec", "spec_of", "read_result", "is_done",
    "RUN_LAYOUT", "RUN_MARK", "RUN_FORMAT", "CHECKPOINT", "run_dir_state", "save_checkpoint", "load_checkpoint",
    "drop_checkpoint", "interruption_summary", "finish_run", "save_weights", "write_recon_png", "FINISH_STEPS",
    "train_group", "group_key", "GroupJob", "Event", "RunStarted", "EpochEnded", "RunFinishing", "FinishStep",
    "RunFinished", "Progress", "Stop", "Interrupted", "RunProgress", "Executor", "EXECUTORS", "BACKENDS",
    "open_executor", "register_executor", "resolve_device", "plan_workers", "balance_groups", "lpt_makespan",
    "SPLIT_PENALTY", "DataCache", "DataOptions", "data_key",
]
