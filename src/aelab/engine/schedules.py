"""Early stopping and learning-rate schedules: what the loop does between epochs.

:class:`Controls` is built from a run's ``TrainConfig`` (``train.early_stopping``, ``train.lr_schedule``)
and asked twice per epoch by the loop (``loop.py``): :meth:`Controls.epoch_lr` before it (the learning
rate the epoch trains with, recorded in the history as ``lr``), :meth:`Controls.epoch_end` after its
validation (True: stop). Everything it holds is a few numbers and, with ``restore_best_weights``, a copy
of the best weights: :meth:`Controls.state_tensors` turns it into checkpoint tensors (``loop.ctl.*``,
``loop.best.*``) and :meth:`Controls.load_state_tensors` back, so a run interrupted anywhere — in the
middle of a patience, a cooldown or a reduced learning rate — resumes bit for bit.

The rules are Keras 3's, read in its source (``keras/src/callbacks/early_stopping.py``,
``reduce_lr_on_plateau.py``), edge cases included:

* **EarlyStopping.** ``auto`` mode is ``min`` (everything aelab records is a loss). At each epoch end
  from ``start_from_epoch`` on: the first monitored epoch's weights are the best so far; ``wait += 1``;
  an improvement is ``current − min_delta < best`` (``>`` + ``min_delta`` in ``max`` mode; the first
  epoch always improves on ±inf): it becomes the best (weights copied) and resets ``wait`` only if it
  also improves on ``baseline`` (when given); otherwise training stops when ``wait ≥ patience`` and the
  epoch is not the first (``stopped_epoch`` = that epoch). At the end of training the best weights are
  restored whenever ``restore_best_weights`` is set and an epoch was monitored — **whether or not
  training stopped early**: that is Keras 3 (fixed in Nov 2023 after keras-team/keras#18822,
  tensorflow#35634); tf.keras ≤ 2.15 restored them only when it stopped.
* **ReduceLROnPlateau.** An improvement is ``current < best − min_delta`` (absolute, as Keras; PyTorch's
  default is relative); each epoch end in a cooldown counts it down and zeroes ``wait``; an improvement
  resets ``wait``; otherwise, out of cooldown, ``wait += 1`` and at ``wait ≥ patience`` the rate becomes
  ``max(lr·factor, min_lr)`` if ``lr > float32(min_lr)``, then ``cooldown`` epochs of rest. Keras keeps
  the rate in a float32 variable: each new rate here is computed from the float32 rate and rounded to
  float32 as Keras does (the first rate stays as given, so a run the plateau never reduces trains to
  the same bits as without it).
* **step** (PyTorch's ``StepLR``) and **cosine** (Keras' ``CosineDecay`` / PyTorch's
  ``CosineAnnealingLR``) are functions of the epoch, evaluated at its start.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch


def step_lr(lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """``lr · gamma^⌊epoch / step_size⌋`` (epochs from 0), PyTorch's StepLR."""
    return lr * gamma ** (epoch // step_size)


def cosine_lr(lr: float, epoch: int, t_max: int, min_lr: float = 0.0) -> float:
    """``min_lr + (lr − min_lr)·(1 + cos(π·min(epoch, t_max)/t_max))/2``: Keras' CosineDecay with
    ``alpha = min_lr/lr`` (which stays at the floor after ``t_max``), per epoch."""
    e = min(epoch, t_max)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * e / t_max))


def _f32(x: float) -> float:
    return float(np.float32(x))


class EarlyStopping:
    """Keras 3's EarlyStopping on a sequence of monitored values (see the module docstring)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, mode: str = "auto",
                 baseline: Optional[float] = None, restore_best_weights: bool = False, start_from_epoch: int = 0):
        self.monitor, self.patience, self.baseline = monitor, patience, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.maximize = mode == "max"  # auto: every value aelab records is a loss
        self.min_delta = abs(min_delta) if self.maximize else -abs(min_delta)
        self.best = -math.inf if self.maximize else math.inf
        self.wait = 0
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.has_best_weights = False  # whether the caller holds best weights (copied when told to)

    def _improves(self, value: float, reference: float) -> bool:
        v = value - self.min_delta
        return v > reference if self.maximize else v < reference

    def update(self, epoch: int, current: float) -> tuple[bool, bool]:
        """One epoch's end: ``(stop, copy_weights)`` — stop training after this epoch; copy the
        model's weights now as the best ones."""
        if epoch < self.start_from_epoch:
            return False, False
        copy = False
        if self.restore_best_weights and not self.has_best_weights:
            copy = True  # the first monitored epoch's weights are the best until one improves
            self.has_best_weights = True
            self.best_epoch = epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            copy = copy or self.restore_best_weights
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return False, copy
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True, copy
        return False, copy

    _STATE = ("best", "wait", "best_epoch", "stopped_epoch", "has_best_weights")


class ReduceLROnPlateau:
    """Keras 3's ReduceLROnPlateau (see the module docstring); ``lr`` is the current rate."""

    def __init__(self, lr: float, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.maximize = mode == "max"  # auto: "acc" in the name would be max; aelab records losses only
        self.best = -math.inf if self.maximize else math.inf
        self.wait = 0
        self.cooldown_counter = 0
        self.lr = lr  # as given until a reduction (then float32, as Keras stores it): no reduction, no change

    def _improves(self, a: float, b: float) -> bool:
        return a > b + self.min_delta if self.maximize else a < b - self.min_delta

    def update(self, current: float) -> None:
        """One epoch's end: may lower :attr:`lr` for the next epochs."""
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = _f32(self.lr)  # Keras reads its float32 variable
                if old > float(np.float32(self.min_lr)):
                    self.lr = _f32(max(old * self.factor, self.min_lr))
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    _STATE = ("best", "wait", "cooldown_counter", "lr")


class Controls:
    """A run's early stopping and learning-rate schedule, and their state (one model: a group of one).

    ``train``: the run's TrainConfig; ``epochs``: its epoch count (the cosine's default length)."""

    def __init__(self, train: Any, epochs: Optional[int] = None) -> None:
        self.base_lr = train.lr
        self.epochs = epochs if epochs is not None else train.epochs
        self.schedule = train.lr_schedule
        es = train.early_stopping
        self.early = EarlyStopping(**es.model_dump()) if es is not None else None
        sch = self.schedule
        self.plateau = (ReduceLROnPlateau(train.lr, **sch.model_dump(exclude={"kind"}))
                        if sch is not None and sch.kind == "plateau" else None)
        self.best_weights: Optional[list[dict[str, torch.Tensor]]] = None
        self.stopped = False

    @property
    def active(self) -> bool:
        """Whether anything changes between epochs (else the lr is constant and nothing stops)."""
        return self.early is not None or self.schedule is not None

    @property
    def changes_lr(self) -> bool:
        return self.schedule is not None

    def epoch_lr(self, epoch: int) -> float:
        """The learning rate epoch ``epoch`` (from 0) trains with."""
        s = self.schedule
        if s is None:
            return self.base_lr
        if s.kind == "step":
            return step_lr(self.base_lr, epoch, s.step_size, s.gamma)
        if s.kind == "cosine":
            return cosine_lr(self.base_lr, epoch, s.t_max or self.epochs, s.min_lr)
        return self.plateau.lr

    def epoch_end(self, epoch: int, logs: dict[str, float], stepper: Any) -> bool:
        """After epoch ``epoch``'s validation, with its recorded values: whether to stop now.
        ``stepper``: copies the best weights from it (``weights()``) when early stopping says so."""
        if self.plateau is not None:
            self.plateau.update(logs[self.plateau.monitor])
        if self.early is None:
            return False
        stop, copy = self.early.update(epoch, logs[self.early.monitor])
        if copy:
            self.best_weights = stepper.weights()
        self.stopped = self.stopped or stop
        return stop

    def finish(self, stepper: Any) -> bool:
        """At the end of training: restore the best weights (Keras 3: whenever it holds them). Returns
        whether it did."""
        if self.early is not None and self.early.restore_best_weights and self.best_weights is not None:
            stepper.set_weights(self.best_weights)
            return True
        return False

    # -- checkpoints -------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The state as float64 checkpoint tensors (exact for these counters and values)."""
        out: dict[str, torch.Tensor] = {"loop.ctl.stopped": torch.tensor(float(self.stopped), dtype=torch.float64)}
        for prefix, obj in (("es", self.early), ("plateau", self.plateau)):
            if obj is not None:
                for k in obj._STATE:
                    out[f"loop.ctl.{prefix}.{k}"] = torch.tensor(float(getattr(obj, k)), dtype=torch.float64)
        if self.best_weights is not None:
            (w,) = self.best_weights
            # (as floating point, which every loop.* tensor of a checkpoint is: an integer buffer exactly)
            out.update({f"loop.best.{k}": (v if v.is_floating_point() else v.double()).detach().to("cpu").clone()
                        for k, v in w.items()})
        return out

    def load_state_tensors(self, d: dict[str, torch.Tensor], device: Any = "cpu") -> None:
        """Put back what :meth:`state_tensors` saved (absent: as at the start, a checkpoint of before)."""
        if "loop.ctl.stopped" in d:
            self.stopped = bool(float(d["loop.ctl.stopped"]))
        for prefix, obj in (("es", self.early), ("plateau", self.plateau)):
            if obj is None:
                continue
            for k in obj._STATE:
                key = f"loop.ctl.{prefix}.{k}"
                if key in d:
                    v = float(d[key])
                    cur = getattr(obj, k)
                    setattr(obj, k, bool(v) if isinstance(cur, bool) else int(v) if isinstance(cur, int) else v)
        best = {k[len("loop.best."):]: v.to(device) for k, v in d.items() if k.startswith("loop.best.")}
        self.best_weights = [best] if best else None
