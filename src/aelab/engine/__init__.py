"""The training engine: the loop (``loop.py``), steppers (``steppers.py``), Keras Adam (``adam.py``)."""

from .adam import KerasAdam, keras_adam_step_
from .loop import History, Hooks, Interrupted, LoopState, StopFlag, TrainData, fit
from .steppers import ModelSpec, PlainStepper, StackedDenseStepper

__all__ = ["KerasAdam", "keras_adam_step_", "History", "Hooks", "Interrupted", "LoopState", "StopFlag",
           "TrainData", "fit", "ModelSpec", "PlainStepper", "StackedDenseStepper"]
