"""The unit of work: a group of same-shape runs trained side by side, from checkpoint to ``DONE``.

Runs with equal :func:`group_key` (same layer sizes, optimiser, loop settings, seed and clean
data) share one :class:`~aelab.engine.steppers.StackedDenseStepper`; any other run is a group of
one with a :class:`~aelab.engine.steppers.PlainStepper`. :func:`train_group` resumes the group
from its checkpoints, trains it (a checkpoint at every epoch end and when stopped), and finishes
each run (``finish.py``). Every executor (``executors/``) trains groups with this one function,
in this process, a worker process or a Ray task, so the results are the same bits everywhere.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..data.cache import DataCache
from ..data.prepare import TrainData
from ..engine.graphs import dense_stepper_class
from ..engine.loop import History, Hooks, LoopState, StopFlag, fit
from ..engine.schedules import Controls
from ..engine.steppers import PlainStepper, can_stack, stack_key
from ..errors import ConfigError
from ..models import family_of
from .codes import class_names, labels_for
from .directory import CHECKPOINT, RunResult, drop_checkpoint, load_checkpoint, prepare_run_dir, save_checkpoint
from .events import EpochEnded, Event, RunFinished, RunStarted
from .finish import finish_run
from .spec import RunSpec


@dataclass(frozen=True)
class GroupJob:
    """What every group of one ``train_runs`` call shares (sent as is to worker processes).

    ``device``: where the groups train; ``engine``: "auto"/"fast" (stack what can be stacked) or
    "plain"; ``resume``: continue from checkpoints; ``progress``: the loop's own per-batch bar and
    per-epoch lines (a single run's display; a whole call's is :class:`~aelab.runs.RunProgress`);
    ``figures``: draw each run's recon.png (off for runs nobody looks at, as the scikit-learn
    estimator's: the figure is most of a small run's finishing time, and an opened run draws it
    again on demand)."""

    device: torch.device
    engine: str = "auto"
    resume: bool = True
    progress: bool = False
    figures: bool = True


def fast_ok(spec: RunSpec) -> bool:
    """Whether the run may train on the fast (stacked) path: its model, loss and optimizer are ones
    it implements (``can_stack``) and its learning rate is constant (a schedule trains plain)."""
    return can_stack(spec.model_spec) and spec.config.train.lr_schedule is None


def group_key(spec: RunSpec, engine: str) -> tuple:
    """Runs with equal keys are trained side by side in one stepper; a run with early stopping or a
    schedule trains alone (its epochs and learning rate are its own)."""
    t = spec.config.train
    if engine == "plain" or not fast_ok(spec) or t.early_stopping is not None:
        return ("solo", spec.index)
    return (stack_key(spec.model_spec), t.epochs, t.batch_size, t.seed, t.shuffle, t.lr, t.beta1, t.beta2, t.eps,
            spec.data_key)


def train_group(specs: Sequence[RunSpec], job: GroupJob, data: DataCache, stop: Optional[StopFlag] = None,
                emit: Optional[Callable[[Event], None]] = None) -> list[RunResult]:
    """Train one group (see the module docstring) into its run directories; a result per run.

    ``stop``: checked between steps; when requested the group checkpoints and
    :class:`~aelab.engine.loop.Interrupted` is raised. ``emit``: receives the group's events
    (:mod:`aelab.runs.events`) as they happen."""
    emit = emit or (lambda ev: None)
    t0 = time.perf_counter()
    dev = job.device
    cfgs = [s.config for s in specs]
    t = cfgs[0].train
    models = [s.model_spec for s in specs]
    cks = [load_checkpoint(s) for s in specs] if job.resume else []
    usable = bool(cks) and all(ck is not None for ck in cks) and len({(ck[1]["epoch"], ck[1]["batch"]) for ck in cks}) == 1
    if job.engine == "plain" or not fast_ok(specs[0]):
        # A resumed run takes the intra-op thread count it started with: where that count is the
        # process's (models with image layers, see steppers._default_threads), a study resumed with
        # other worker counts would otherwise round its convolutions differently from then on.
        threads = cks[0][1].get("threads") if usable else None
        stepper = PlainStepper(models[0], t.lr, t.beta1, t.beta2, t.eps, dev, num_threads=threads, optimizer=t.optimizer)
    else:  # on CUDA, the CUDA-graph step (AELAB_CUDA_GRAPHS=0: off)
        stepper = dense_stepper_class(dev)(models, t.lr, t.beta1, t.beta2, t.eps, dev)
    # early stopping and the learning rate per epoch (a group of several runs has neither: constant lr)
    controls = Controls(t)
    datas = [data.train_data(c, dev) for c in cfgs]
    if conditional(specs[0]):  # a conditional model trains alone (PlainStepper): its labels go beside its data
        datas = [with_labels(datas[0], data, cfgs[0].data, dev)]
    state = None
    if usable:
        stepper.load_state([{k: v for k, v in ck[0].items() if not k.startswith("loop.")} for ck in cks])
        if len(specs) == 1:
            controls.load_state_tensors(cks[0][0], dev)
        meta = cks[0][1]
        state = LoopState(epoch=meta["epoch"], batch=meta["batch"], elapsed=meta["elapsed"],
                          histories=[History.from_dict(ck[1]["history"]) for ck in cks])
        if meta["batch"] > 0:
            state.loss_rows = torch.stack([ck[0]["loop.loss_rows"] for ck in cks], dim=1)
            state.pen_rows = torch.stack([ck[0]["loop.pen_rows"] for ck in cks], dim=1)
            if all("loop.term_rows" in ck[0] for ck in cks):
                state.term_rows = torch.stack([ck[0]["loop.term_rows"] for ck in cks], dim=1)
    for s in specs:
        if state is None and (s.run_dir / CHECKPOINT).exists():
            drop_checkpoint(s.run_dir)
        prepare_run_dir(s)

    threads_used = (stepper.threads.n or torch.get_num_threads()) if dev.type == "cpu" else None
    names = [c.name for c in cfgs]
    for s in specs:
        emit(RunStarted(s.name, s.index, s.run_dir, t.epochs, state.epoch if state else 0, tuple(names)))

    def checkpoint(st: LoopState) -> None:
        extra = controls.state_tensors() if controls.active else {}
        for m, (s, tensors) in enumerate(zip(specs, stepper.state())):
            save_checkpoint(s, {**tensors, **extra}, st, m, threads=threads_used)

    def epoch_end(st: LoopState) -> None:
        checkpoint(st)
        for s, h in zip(specs, st.histories):
            emit(_epoch_ended(s, h, t.epochs))

    desc = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
    st = fit(stepper, datas, epochs=t.epochs, batch_size=t.batch_size, seed=t.seed, shuffle=t.shuffle,
             state=state, hooks=Hooks(on_epoch_end=epoch_end, on_interrupt=checkpoint), stop=stop,
             progress=job.progress, desc=desc, names=names, terms=[m.term_names() for m in models],
             controls=controls)
    wall = time.perf_counter() - t0
    out = []
    for m, (model, s, d) in enumerate(zip(stepper.export_models(), specs, datas)):
        c = s.config
        res = finish_run(s, model, st.histories[m], d, dev, engine_name=type(stepper).__name__, wall=wall,
                         figures=job.figures,
                         group=names, data_source=data.provenance(c.data), threads=threads_used,
                         labels=labels_for(data, c.data), classes=class_names(data, c.data),
                         # trained without some classes: codes of the whole test split, held-out classes included
                         x_test=data.tensors(c.data, dev)[1] if c.data.exclude_labels else None, emit=emit)
        emit(RunFinished(s.name, s.index, s.run_dir, res))
        out.append(res)
    return out


def conditional(spec: RunSpec) -> bool:
    """Whether the run's model is conditioned on the class labels (``Family.conditional``)."""
    return bool(family_of(spec.config.model).conditional)


def with_labels(d: TrainData, data: DataCache, data_cfg, dev: torch.device) -> TrainData:
    """``d`` with its class labels (``y_train``, ``y_val``: int64 on ``dev``, row for row with its
    training split and its validation split, the test split without ``data.exclude_labels``)."""
    ytr, yte = labels_for(data, data_cfg)
    if ytr is None or yte is None:
        raise ConfigError(f"{data_cfg.dataset} has no labels; " + NO_LABELS)
    if data_cfg.exclude_labels:
        yte = yte[~np.isin(yte, np.asarray(data_cfg.exclude_labels))]
    y_train = torch.as_tensor(np.asarray(ytr, dtype=np.int64), device=dev)
    y_val = torch.as_tensor(np.asarray(yte, dtype=np.int64), device=dev)
    if y_train.shape[0] != d.x_train.shape[0] or y_val.shape[0] != d.x_val.shape[0]:
        raise ConfigError(f"{data_cfg.dataset}: {y_train.shape[0]} training and {y_val.shape[0]} validation labels "
                          f"for {d.x_train.shape[0]} and {d.x_val.shape[0]} samples; give one label per sample")
    return dataclasses.replace(d, y_train=y_train, y_val=y_val, _cache={})


#: what a conditional family says about a data set without labels
NO_LABELS = ("the conditional VAE (cvae) needs a class label per sample: use a labelled data set (mnist, digits, "
             "synthetic, shapes, a folder with one sub-folder per class, a CSV --label-column, an .npz with y)")


def _epoch_ended(spec: RunSpec, h: History, epochs: int) -> EpochEnded:
    """The event of the epoch a run's history just recorded."""
    train = {"loss": h.loss[-1], "penalty": h.penalty[-1], **{k: v[-1] for k, v in h.terms.items()}}
    val = {"loss": h.val_loss[-1], "penalty": h.val_penalty[-1], **{k: v[-1] for k, v in h.val_terms.items()}}
    return EpochEnded(spec.name, spec.index, spec.run_dir, h.epoch[-1], epochs, train, val, h.epoch_seconds[-1],
                      h.images_per_second[-1])
