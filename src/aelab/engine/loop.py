"""The training loop: epochs, shuffling, noise, validation, history, checkpoints, signals.

It knows no specific model: a stepper (``steppers.py``) takes the steps. The data set lives on
the device as one tensor per split; an epoch is a permutation of row indices; the per-batch
losses go into a device buffer and are read once per epoch. Everything random is derived from
the run's seed and the epoch number (``SeedSequence([seed, stream, epoch])``), so a run resumed
from a checkpoint mid-epoch replays exactly the same permutation and noise.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..data.prepare import TrainData, add_noise  # noqa: F401  (the data layer owns the training arrays and their noise)
from .. import _signals
from ..errors import AelabError, TrainingError
from ..streams import (STREAM_EVAL, STREAM_INIT, STREAM_NOISE, STREAM_SAMPLE,  # noqa: F401  (re-exported)
                       STREAM_SHUFFLE, derived_seed, generator)
from ..kernels import gather_rows


def permutation(n: int, seed: int, epoch: int, shuffle: bool, device) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=generator(seed, STREAM_SHUFFLE, epoch)).to(device)


class _EpochRows:
    """Each epoch's inputs and targets, copied once into the epoch's shuffled order.

    A step then reads its batch as a contiguous slice instead of gathering 64 random rows from a
    data set far larger than the cache (a wait on memory every step: ~50 µs of a ~500 µs step).
    On a CPU the next epoch's copy is made on a background thread while this epoch trains, so
    a second core does the gathering; the values are the same, so are the results, bit for bit.
    An epoch whose copy is not ready (the first a loop trains, or one whose copy into fresh memory
    is still being made) does not wait for it (the whole set gathered, half a second for MNIST
    before the first step): its steps gather their own rows by index, ~5 % slower, while the
    next epoch's copy is made.
    Costs two extra copies of each distinct training tensor: an epoch's copy is written into the
    buffers of the epoch before last, which its caller has finished with once it asks for the next
    (fresh memory costs a page fault per 4 KiB page, about as long as the gathering itself, on the
    thread whose result the next epoch waits for).
    """

    def __init__(self, datas: Sequence[TrainData], y: torch.Tensor, seed: int, shuffle: bool, epochs: int):
        self.datas, self.y, self.seed, self.shuffle, self.epochs = datas, y, seed, shuffle, epochs
        self.n = y.shape[0]
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="aelab-rows") if y.device.type == "cpu" and shuffle else None
        self.pending: tuple[int, Future] | None = None
        #: the row buffers the last get() handed out
        self.handed: list[torch.Tensor] = []

    def _tensors(self, epoch: int):
        """The epoch's training tensors, unshuffled: (inputs per model, targets, labels or None)."""
        x_in = [d.train_inputs(epoch) for d in self.datas]
        # x_train, or the epoch's binary sample (dynamic binarisation: TrainData.train_targets)
        targets = getattr(self.datas[0], "train_targets", None)
        y = self.y if targets is None else targets(epoch)
        labels = self.datas[0].y_train  # a conditional model's class labels, shuffled with the same rows
        return x_in, y, labels

    def _make(self, epoch: int, free: list[torch.Tensor] | None = None):
        """The epoch's rows (as :meth:`get`), and the buffers made for them; ``free``: buffers to write
        into (any of the right shape and dtype)."""
        x_in, y, labels = self._tensors(epoch)
        if not self.shuffle:
            return (x_in, y, labels, None), []
        perm = permutation(self.n, self.seed, epoch, self.shuffle, self.y.device)
        free = list(free or ())
        done: dict[int, torch.Tensor] = {}  # one copy per distinct tensor (inputs often are targets)

        def rows(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in done:
                buf = next((b for b in free if b.shape == t.shape and b.dtype == t.dtype and b.device == t.device), None)
                if buf is not None:
                    free.remove(buf)
                done[id(t)] = gather_rows(t, perm, out=buf)
            return done[id(t)]

        out = [rows(t) for t in x_in], rows(y), (None if labels is None else labels.index_select(0, perm)), None
        return out, list(done.values())

    def get(self, epoch: int, by_index: bool = False):
        """(inputs per model, targets, labels or None, order) for ``epoch``; starts on the next.

        ``order`` is None when the rows are in the epoch's order (a step takes a slice of them).
        With ``by_index``, an epoch whose copy is not ready (none was started: the first epoch a loop
        trains; or it is still being made) does not wait for it: the rows are the training tensors
        themselves and ``order`` the epoch's permutation, a step gathering rows
        ``order[b * batch_size:(b + 1) * batch_size]`` (the same values, so the same results)."""
        ahead = self.pending[1] if self.pending is not None and self.pending[0] == epoch else None
        late = None  # a copy not waited for: its buffers are free once it is done
        if ahead is not None and (ahead.done() or not by_index):  # (a copy ahead means a pool)
            out, made = ahead.result()
        elif by_index and self.pool is not None:
            out, made, late = self._sources(epoch), [], ahead
        else:
            out, made = self._make(epoch)
        self.pending = None
        # the previous epoch's buffers are free now: the next epoch's rows go into them
        free, self.handed = self.handed, made
        if self.pool is not None and epoch + 1 < self.epochs:
            self.pending = (epoch + 1, self.pool.submit(self._make_after, epoch + 1, free, late))
        return out

    def _make_after(self, epoch: int, free: list[torch.Tensor], late: Future | None):
        """:meth:`_make` on the pool, with the buffers of a copy not waited for (done before this
        starts: the pool has one thread) added to ``free``."""
        return self._make(epoch, free + (late.result()[1] if late is not None else []))

    def _sources(self, epoch: int):
        """The epoch's training tensors unshuffled, with its permutation."""
        return *self._tensors(epoch), permutation(self.n, self.seed, epoch, self.shuffle, self.y.device)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pending = None


# -- history ------------------------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch records, as Keras' ``History.history`` plus timing."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    val_penalty: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    images_per_second: list[float] = field(default_factory=list)
    #: every named loss term per epoch, the reconstruction first: {"reconstruction": [...], "kl": [...]}
    terms: dict[str, list[float]] = field(default_factory=dict)
    val_terms: dict[str, list[float]] = field(default_factory=dict)
    #: the learning rate each epoch trained with (a schedule's; constant without one)
    lr: list[float] = field(default_factory=list)
    #: the epoch (from 1) after which early stopping stopped training, as Keras' ``stopped_epoch + 1``;
    #: None when it did not stop
    stopped_epoch: Optional[int] = None
    #: the epoch (from 1) whose weights the run ends with when early stopping restored its best
    restored_epoch: Optional[int] = None

    _SCALARS = ("stopped_epoch", "restored_epoch")

    def to_dict(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if k in self._SCALARS:
                if v is not None:  # only when it happened: histories of before keep their keys
                    out[k] = v
            elif k == "lr" and not v:
                continue
            else:
                out[k] = {n: list(x) for n, x in v.items()} if isinstance(v, dict) else list(v)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        out = {}
        for k in cls.__dataclass_fields__:
            v = d.get(k)
            if k in ("terms", "val_terms"):
                out[k] = {n: list(x) for n, x in (v or {}).items()}
            elif k in cls._SCALARS:
                out[k] = int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            else:
                out[k] = list(v or [])
        return cls(**out)


def epoch_logs(h: History) -> dict[str, float]:
    """The values the last epoch recorded, by the names early stopping monitors (Keras' logs):
    ``loss``, ``val_loss``, ``penalty``, ``val_penalty`` and every term and ``val_`` term."""
    logs = {"loss": h.loss[-1], "val_loss": h.val_loss[-1], "penalty": h.penalty[-1], "val_penalty": h.val_penalty[-1]}
    logs.update({k: v[-1] for k, v in h.terms.items()})
    logs.update({f"val_{k}": v[-1] for k, v in h.val_terms.items()})
    return logs


# -- interruption -------------------------------------------------------------------------------------
class Interrupted(AelabError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint."""

    exit_code = 130


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (main thread only).

    The first signal names the stop; a repeated one (a second Ctrl-C, a SIGTERM after it) changes
    nothing: the running step ends, the checkpoint is written and the message names the first
    signal, what each run holds and how to resume (``aelab._signals``). The loop checks the flag
    before each step: a stop waits for the step under way, never for a whole epoch."""

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self._old: dict = {}

    def request(self, why: str = "stop requested") -> None:
        self.requested = why

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = _signals.note(signum)  # a stop under way: later signals interrupt nothing
        if not self.requested:
            self.requested = name

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class LoopState:
    """Where a group of runs stands: what a checkpoint must hold besides the model states."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next batch of that epoch
    histories: list[History] = field(default_factory=list)
    loss_rows: Optional[torch.Tensor] = None  # (batch, M): the batch losses of this epoch so far
    pen_rows: Optional[torch.Tensor] = None
    term_rows: Optional[torch.Tensor] = None  # (batch, M, T): each named term, when the stepper has any
    elapsed: float = 0.0  # seconds spent in the epoch so far


@dataclass
class Hooks:
    """Callbacks. ``on_epoch_end(state)`` after each finished epoch (checkpoint here);
    ``on_interrupt(state)`` when stopped mid-epoch; ``on_nan(state, model_index, epoch, batch)``."""

    on_epoch_end: Optional[Callable[[LoopState], None]] = None
    on_interrupt: Optional[Callable[[LoopState], None]] = None
    on_nan: Optional[Callable[[LoopState, int, int, int], None]] = None


#: The most steps a stepper's ``train_steps`` takes per call: the loop checks its stop flag between calls.
STEPS_PER_CALL = 64

NAN_HINT = ("common causes: a learning rate too high, inputs not scaled to [0, 1], a linear or relu "
            "output with MSE that diverged, or a huge activity penalty; lower train.lr or check the data")


@contextlib.contextmanager
def flush_denormals(device: torch.device):
    """Flush denormals to zero while training on a CPU, as TensorFlow (so Keras) does.

    Adam's moments of units that stop learning decay into the denormal range, where x86
    arithmetic is ~100× slower (measured: the deep AE's epoch 3.2 s → 1.85 s, same losses).
    Scoped, because the flag is per thread and would change the caller's own numpy/torch maths.
    """
    if device.type != "cpu":
        yield
        return
    was_on = float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def fit(stepper, datas: Sequence[TrainData], **kw) -> LoopState:
    """Train the stepper's models (see :func:`_fit` for the arguments), denormals flushed on CPU."""
    with flush_denormals(datas[0].x_train.device):
        return _fit(stepper, datas, **kw)


def _fit(stepper, datas: Sequence[TrainData], *, epochs: int, batch_size: int, seed: int, shuffle: bool,
         state: Optional[LoopState] = None, hooks: Optional[Hooks] = None, stop: Optional[StopFlag] = None,
         progress: bool = True, desc: str = "train", names: Sequence[str] = (),
         terms: Optional[Sequence[Sequence[str]]] = None, controls=None) -> LoopState:
    """Train the stepper's models on ``datas`` (one per model, same N) for ``epochs`` epochs.

    ``terms[m]``: the term names model m records in its history (default: all the stepper's).
    ``controls``: an :class:`aelab.engine.schedules.Controls` (early stopping, a learning-rate
    schedule; its state already loaded when resuming): the learning rate of each epoch is set from it
    and recorded in the history (``lr``), and after each epoch it may stop training (``stopped_epoch``);
    at the end it restores the best weights when early stopping says so (``restored_epoch``). With
    early stopping or a schedule the stepper trains one model.
    Returns the final LoopState (histories filled). Raises :class:`Interrupted` after
    ``hooks.on_interrupt`` when ``stop`` is requested, and :class:`TrainingError` on a NaN/inf loss.
    """
    hooks = hooks or Hooks()
    M = stepper.n_models
    if controls is not None and controls.active and M != 1:
        raise ValueError("early stopping and learning-rate schedules train one model per stepper")
    if len(datas) != M:
        raise ValueError("one TrainData per model")
    n = datas[0].x_train.shape[0]
    if any(d.x_train.shape[0] != n for d in datas):
        raise ValueError("the models of a group need training sets of the same size")
    y = datas[0].x_train
    if any(d.x_train is not y for d in datas):
        raise ValueError("the models of a group must share one clean training tensor")
    y_val = datas[0].x_val
    if batch_size > n:
        raise TrainingError(f"train.batch_size {batch_size} is larger than the training set ({n} images); lower it")
    device = y.device
    nb = math.ceil(n / batch_size)
    sizes = torch.full((nb,), float(batch_size), dtype=torch.float64, device=device)
    sizes[-1] = n - (nb - 1) * batch_size
    st = state or LoopState(histories=[History() for _ in range(M)])
    names = list(names) or [f"model {i}" for i in range(M)]
    stop = stop or StopFlag()

    loss_buf = torch.zeros(nb, M, device=device)
    pen_buf = torch.zeros(nb, M, device=device)
    term_names = list(getattr(stepper, "term_names", []))
    T = len(term_names)
    term_buf = torch.zeros(nb, M, T, device=device) if T else None
    writes_terms = T > 0 and bool(getattr(stepper, "writes_terms", True))
    model_terms = [list(t) for t in terms] if terms is not None else [term_names] * M
    needs_rng = bool(getattr(stepper, "needs_rng", False))
    # A stepper may take a run of steps in one call, ``train_steps(x_in, y, b0, b1, batch_size,
    # loss_buf, pen_buf, term_buf)`` for batches b0 ≤ b < b1 (the CUDA-graph path, engine/graphs.py,
    # replays a captured step without returning to Python); runs end at multiples of STEPS_PER_CALL,
    # so the stop flag is still checked that often. A stepper that samples takes single steps.
    train_steps = None if needs_rng else getattr(stepper, "train_steps", None)
    val_in = [d.val_inputs() for d in datas]  # drawn before the background thread touches datas
    # labels (a conditional model's) travel beside the inputs: the stepper trains one model, step by step
    labelled = datas[0].y_train is not None
    if labelled and (M != 1 or datas[0].y_val is None or datas[0].y_train.shape[0] != n):
        raise ValueError("labels need one model per stepper and one label per training and validation row")
    if labelled:
        train_steps = None
    val_labels = {"labels": datas[0].y_val} if labelled else {}

    def _epochs(rows: _EpochRows, st: LoopState) -> LoopState:
        from tqdm.auto import tqdm  # deferred: tqdm only once a loop runs, so importing aelab stays cheap

        while st.epoch < epochs and not (controls is not None and controls.stopped):
            epoch = st.epoch
            lr = None
            if controls is not None:
                lr = controls.epoch_lr(epoch)
                if controls.changes_lr:
                    stepper.set_lr(lr)
            # order: None when the rows are in the epoch's order, else the permutation a step gathers by
            x_in, y_rows, label_rows, order = rows.get(epoch, by_index=train_steps is None)
            # a conditional model's labels go beside the inputs, sliced with the same batch; other
            # steppers are called exactly as before
            with_labels = {} if label_rows is None else {"labels": label_rows}
            start_b = st.batch
            loss_buf.zero_()
            pen_buf.zero_()
            if term_buf is not None:
                term_buf.zero_()
            if start_b > 0 and st.loss_rows is not None:
                # resuming mid-epoch: restore the batch losses already recorded this epoch
                loss_buf[:start_b].copy_(st.loss_rows.to(device))
                pen_buf[:start_b].copy_(st.pen_rows.to(device))
                if term_buf is not None and st.term_rows is not None:
                    term_buf[:start_b].copy_(st.term_rows.to(device))
            # disable=None: a bar only on a terminal; a log file gets the per-epoch lines alone
            bar = tqdm(total=nb, initial=start_b, desc=f"{desc} {epoch + 1}/{epochs}", unit="batch",
                       disable=None if progress else True, leave=False, dynamic_ncols=True, mininterval=0.5)
            t0 = time.perf_counter()
            b = start_b
            update_every = 64
            while b < nb:
                # checked before each step (or run of steps): a stop asked for between epochs (a pause
                # at an epoch's end) is taken at batch 0 of the next, and the CUDA-graph path's runs of
                # up to STEPS_PER_CALL steps cannot carry a short run past it to the end
                if stop.requested:
                    st.batch = b
                    st.elapsed += time.perf_counter() - t0
                    st.loss_rows = loss_buf[:b].clone()
                    st.pen_rows = pen_buf[:b].clone()
                    st.term_rows = term_buf[:b].clone() if term_buf is not None else None
                    bar.close()
                    if hooks.on_interrupt:
                        hooks.on_interrupt(st)
                    raise Interrupted(
                        f"{stop.requested}: stopped at epoch {epoch + 1}, batch {b} of {nb}; a checkpoint was saved"
                    )
                if train_steps is not None:
                    b_next = min(nb, (b // STEPS_PER_CALL + 1) * STEPS_PER_CALL)
                    train_steps(x_in, y_rows, b, b_next, batch_size, loss_buf, pen_buf,
                                term_buf if writes_terms else None)
                    bar.update(b_next - b)
                    b = b_next
                else:
                    batch = slice(b * batch_size, (b + 1) * batch_size)
                    stepper.train_step(x_in, y_rows, batch if order is None else order[batch], loss_buf[b],
                                       pen_buf[b], term_buf[b] if writes_terms else None,
                                       generator(seed, STREAM_SAMPLE, epoch, b) if needs_rng else None, **with_labels)
                    b += 1
                    if b % update_every == 0:
                        bar.update(update_every)
            bar.update(nb - bar.n)
            bar.close()
            # one host sync per epoch: the whole epoch's losses at once
            finite = torch.isfinite(loss_buf).all(dim=1)
            if not bool(finite[start_b:].all()):
                bad_b = int((~finite[start_b:]).nonzero()[0, 0]) + start_b
                bad_m = int((~torch.isfinite(loss_buf[bad_b])).nonzero()[0, 0])
                if hooks.on_nan:
                    hooks.on_nan(st, bad_m, epoch, bad_b)
                kept = (f"the last good checkpoint (end of epoch {epoch}) was kept" if epoch > 0
                        else "no checkpoint exists yet (it happened in the first epoch)")
                raise TrainingError(
                    f"the loss of {names[bad_m]} became {float(loss_buf[bad_b, bad_m])} at epoch {epoch + 1}, "
                    f"batch {bad_b + 1}; training stopped and {kept}; {NAN_HINT}"
                )
            # Weighting by the batch size makes the epoch loss the mean over samples, as Keras 3's
            # loss tracker does (only the last, smaller batch differs from a plain mean of batches).
            w = sizes.unsqueeze(1)
            train_loss = ((loss_buf.double() * w).sum(0) / n).tolist()
            train_pen = ((pen_buf.double() * w).sum(0) / n).tolist()
            if term_buf is not None and not writes_terms:  # the stepper's one term is its penalty
                term_buf[:, :, 0] = pen_buf
            train_terms = ((term_buf.double() * w.unsqueeze(2)).sum(0) / n).tolist() if term_buf is not None else None
            val_loss, val_pen, val_terms = stepper.evaluate(val_in, y_val, **val_labels)
            val_loss, val_pen, val_terms = val_loss.tolist(), val_pen.tolist(), val_terms.tolist()
            secs = st.elapsed + (time.perf_counter() - t0)
            for m, h in enumerate(st.histories):
                h.epoch.append(epoch + 1)
                h.loss.append(float(train_loss[m]))
                h.val_loss.append(float(val_loss[m]))
                h.penalty.append(float(train_pen[m]))
                h.val_penalty.append(float(val_pen[m]))
                h.epoch_seconds.append(secs)
                h.images_per_second.append(n * M / secs if secs > 0 else float("nan"))
                h.terms.setdefault("reconstruction", []).append(float(train_loss[m] - train_pen[m]))
                h.val_terms.setdefault("reconstruction", []).append(float(val_loss[m] - val_pen[m]))
                for name in model_terms[m]:
                    t = term_names.index(name)
                    h.terms.setdefault(name, []).append(float(train_terms[m][t]))
                    h.val_terms.setdefault(name, []).append(float(val_terms[m][t]))
                if lr is not None:
                    h.lr.append(float(lr))
            if not all(math.isfinite(v) for v in val_loss):
                bad_m = next(i for i, v in enumerate(val_loss) if not math.isfinite(v))
                raise TrainingError(f"the validation loss of {names[bad_m]} became {val_loss[bad_m]} at epoch {epoch + 1}; {NAN_HINT}")
            early_stop = False
            if controls is not None and controls.active:
                early_stop = controls.epoch_end(epoch, epoch_logs(st.histories[0]), stepper)
                if early_stop:
                    st.histories[0].stopped_epoch = epoch + 1
            st.epoch, st.batch, st.loss_rows, st.pen_rows, st.elapsed = epoch + 1, 0, None, None, 0.0
            st.term_rows = None
            if progress:
                def _terms(m: int) -> str:  # a model's named terms, so a log shows what the loss is made of
                    if not model_terms[m]:
                        return ""
                    parts = [f"reconstruction {train_loss[m] - train_pen[m]:.4g}"] + [
                        f"{nm} {train_terms[m][term_names.index(nm)]:.4g}" for nm in model_terms[m]]
                    return f" ({', '.join(parts)})"

                msg = "  ".join(f"{names[m]}: loss {train_loss[m]:.4f}{_terms(m)} val {val_loss[m]:.4f}"
                                for m in range(M))
                tqdm.write(f"{desc} epoch {epoch + 1}/{epochs}  {msg}  {n * M / secs:,.0f} img/s")
            if hooks.on_epoch_end:
                hooks.on_epoch_end(st)
            if early_stop:
                if progress:
                    tqdm.write(f"{desc} epoch {epoch + 1}: early stopping ({controls.early.monitor} has not improved "
                               f"for {controls.early.patience} epochs)")
                break
        if controls is not None and controls.finish(stepper):
            st.histories[0].restored_epoch = controls.early.best_epoch + 1
        return st

    rows = _EpochRows(datas, y, seed, shuffle, epochs)
    try:
        return _epochs(rows, st)
    finally:
        rows.close()
