"""The optimizers a run trains with, each exactly as its framework defines it.

``train.optimizer`` names one (``aelab.config.OPTIMIZERS``); ``train.lr`` is its learning rate. The
Keras ones are written out here after Keras 3's ``update_step`` (operation for operation, float32);
the PyTorch ones *are* ``torch.optim``'s classes. Where the frameworks differ it is on purpose:

============== ============================================================================================
keras_adam     lr_t = lr·sqrt(1−β2^t)/(1−β1^t); m ← m + (g−m)(1−β1); v ← v + (g²−v)(1−β2);
               p ← p − lr_t·m/(sqrt(v) + ε)  — ε added to the *uncorrected* sqrt(v); ε 1e-7 (``adam.py``)
torch_adam     m ← β1m + (1−β1)g; v ← β2v + (1−β2)g²;
               p ← p − lr/(1−β1^t) · m/(sqrt(v)/sqrt(1−β2^t) + ε)  — ε added to sqrt(v̂); ε 1e-8
keras_adadelta a ← ρa + (1−ρ)g²; Δ = −sqrt(d + ε)·g/sqrt(a + ε); d ← ρd + (1−ρ)Δ²; p ← p + lr·Δ
               (ρ 0.95, ε 1e-7; Keras 1/2 and Zeiler use lr 1.0, tf.keras ≥ 2.3 and Keras 3 0.001)
torch_adadelta the same rule (``torch.optim.Adadelta``: ρ 0.9, ε 1e-6, lr 1.0 by default)
keras_sgd      m ← μm − lr·g; p ← p + m (nesterov: p ← p + μm − lr·g); μ = 0: p ← p − lr·g
               — the velocity carries the learning rate, so a changed lr acts only on new gradients
torch_sgd      b ← g at the first step, then b ← μb + (1−d)g; p ← p − lr·b (nesterov: p ← p − lr(g + μb))
               — the buffer holds gradients, a changed lr scales the whole step at once; with a
               constant lr and d = 0 both SGDs take the same steps, to rounding
keras_rmsprop  v ← ρv + (1−ρ)g²; inc = lr·g/sqrt(v + ε) (centred: sqrt(v − ḡ² + ε), ḡ ← ρḡ + (1−ρ)g);
               momentum: b ← μb + inc, p ← p − b; else p ← p − inc  (ρ 0.9, ε 1e-7 *inside* the root)
torch_rmsprop  v ← αv + (1−α)g²; avg = sqrt(v) + ε (centred: sqrt(v − ḡ²) + ε); momentum:
               b ← μb + g/avg, p ← p − lr·b; else p ← p − lr·g/avg  (α 0.99, ε 1e-8 *outside* the root)
============== ============================================================================================

Checkpoints: Keras Adam's state keeps the names it always had (``adam.m.<param>``, ``adam.v.<param>``,
``adam.t``), so older checkpoints load; every other optimizer's per-parameter slots are
``opt.<slot>.<param>`` and its step count ``opt.t`` (:func:`state_tensors`, :func:`load_state_tensors`,
:func:`state_shapes`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from .adam import KerasAdam


class _KerasOptimizer(torch.optim.Optimizer):
    """A Keras optimizer: per parameter, its named slots (zeros before the first step) and step count.

    Subclasses name their ``slots`` (for a config: :meth:`slots_for`) and write ``_update``."""

    @classmethod
    def slots_for(cls, cfg: Any) -> tuple[str, ...]:
        raise NotImplementedError

    def _slots(self, group: dict) -> tuple[str, ...]:
        return self.slots_for(group["cfg"])

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch's signature
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update({s: torch.zeros_like(p) for s in self._slots(group)})
                    st["t"] = 0
                st["t"] += 1
                self._update(p, p.grad, st, group["lr"], group["cfg"])
        return None

    def _update(self, p: torch.Tensor, g: torch.Tensor, st: dict, lr: float, cfg: Any) -> None:
        raise NotImplementedError


class KerasAdadelta(_KerasOptimizer):
    """Keras 3's ``Adadelta.update_step``, operation for operation::

        a ← ρ·a + (1 − ρ)·g²
        Δ = −(sqrt(d + ε) · g) / sqrt(a + ε)
        d ← ρ·d + (1 − ρ)·Δ²
        p ← p + lr·Δ
    """

    def __init__(self, params, lr: float, cfg: Any):
        super().__init__(params, dict(lr=lr, cfg=cfg))

    @classmethod
    def slots_for(cls, cfg: Any) -> tuple[str, ...]:
        return ("accumulated_grad", "accumulated_delta_var")

    def _update(self, p, g, st, lr, cfg):
        rho, eps = cfg.rho, cfg.eps
        a, d = st["accumulated_grad"], st["accumulated_delta_var"]
        a.copy_(torch.add(a * rho, torch.mul(torch.square(g), 1 - rho)))
        delta = torch.neg(torch.div(torch.mul(torch.sqrt(torch.add(d, eps)), g), torch.sqrt(torch.add(a, eps))))
        d.copy_(torch.add(torch.mul(d, rho), torch.mul(torch.square(delta), 1 - rho)))
        p.add_(torch.mul(delta, lr))


class KerasSGD(_KerasOptimizer):
    """Keras 3's ``SGD.update_step``::

        μ = 0:      p ← p − g·lr
        otherwise:  m ← m·μ − g·lr;  p ← p + m            (nesterov: p ← p + (m·μ − g·lr))
    """

    def __init__(self, params, lr: float, cfg: Any):
        super().__init__(params, dict(lr=lr, cfg=cfg))

    @classmethod
    def slots_for(cls, cfg: Any) -> tuple[str, ...]:
        return ("momentum",) if cfg.momentum != 0 else ()

    def _update(self, p, g, st, lr, cfg):
        if cfg.momentum == 0:
            p.sub_(torch.mul(g, lr))
            return
        m = st["momentum"]
        m.copy_(torch.sub(torch.mul(m, cfg.momentum), torch.mul(g, lr)))
        if cfg.nesterov:
            p.add_(torch.sub(torch.mul(m, cfg.momentum), torch.mul(g, lr)))
        else:
            p.add_(m)


class KerasRMSprop(_KerasOptimizer):
    """Keras 3's ``RMSprop.update_step``::

        v ← ρ·v + (1 − ρ)·g²
        centred:  ḡ ← ρ·ḡ + (1 − ρ)·g;  den = v − ḡ² + ε      otherwise: den = v + ε
        inc = lr·g / sqrt(den)
        μ > 0:    b ← μ·b + inc;  p ← p − b                   otherwise: p ← p − inc
    """

    def __init__(self, params, lr: float, cfg: Any):
        super().__init__(params, dict(lr=lr, cfg=cfg))

    @classmethod
    def slots_for(cls, cfg: Any) -> tuple[str, ...]:
        return ("velocity",) + (("momentum",) if cfg.momentum > 0 else ()) + (("average_gradient",) if cfg.centered else ())

    def _update(self, p, g, st, lr, cfg):
        rho = cfg.rho
        v = st["velocity"]
        v.copy_(torch.add(torch.mul(v, rho), torch.mul(torch.square(g), 1 - rho)))
        if cfg.centered:
            ag = st["average_gradient"]
            ag.copy_(torch.add(torch.mul(ag, rho), torch.mul(g, 1 - rho)))
            den = torch.add(torch.sub(v, torch.square(ag)), cfg.eps)
        else:
            den = torch.add(v, cfg.eps)
        inc = torch.div(torch.mul(g, lr), torch.sqrt(den))
        if cfg.momentum > 0:
            b = st["momentum"]
            b.copy_(torch.add(torch.mul(b, cfg.momentum), inc))
            p.sub_(b)
        else:
            p.sub_(inc)


# -- the registry ----------------------------------------------------------------------------------
class OptimizerKind:
    """One entry of :data:`OPTIMIZERS`: how to build it, its framework, and its state's names.

    ``slots(cfg)``: the per-parameter state tensors, in the names the optimizer's own state uses;
    ``prefix``: the checkpoint's prefix for them ("adam" for Keras Adam, as always, else "opt")."""

    def __init__(self, framework: str, build: Callable[..., torch.optim.Optimizer],
                 slots: Callable[[Any], tuple[str, ...]], prefix: str = "opt", torch_step: bool = False,
                 step_key: str = "t") -> None:
        self.framework, self.build, self.slots, self.prefix = framework, build, slots, prefix
        self.torch_step = torch_step  # a torch.optim class: its state's "step" is a float tensor
        self.step_key = step_key


def _keras_adam(params, lr, cfg, train) -> torch.optim.Optimizer:
    return KerasAdam(params, lr=lr, beta1=train.beta1, beta2=train.beta2, eps=train.eps)


def _torch_adam(params, lr, cfg, train):
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def _torch_adadelta(params, lr, cfg, train):
    return torch.optim.Adadelta(params, lr=lr, rho=cfg.rho, eps=cfg.eps)


def _torch_sgd(params, lr, cfg, train):
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, dampening=cfg.dampening, nesterov=cfg.nesterov)


def _torch_rmsprop(params, lr, cfg, train):
    return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                               centered=cfg.centered)


def _torch_rmsprop_slots(cfg) -> tuple[str, ...]:
    return ("square_avg",) + (("momentum_buffer",) if cfg.momentum > 0 else ()) + (("grad_avg",) if cfg.centered else ())


OPTIMIZERS: dict[str, OptimizerKind] = {
    "keras_adam": OptimizerKind("Keras", _keras_adam, lambda cfg: ("m", "v"), prefix="adam"),
    "torch_adam": OptimizerKind("PyTorch", _torch_adam, lambda cfg: ("exp_avg", "exp_avg_sq"), torch_step=True),
    "keras_adadelta": OptimizerKind("Keras", lambda p, lr, cfg, t: KerasAdadelta(p, lr, cfg), KerasAdadelta.slots_for),
    "torch_adadelta": OptimizerKind("PyTorch", _torch_adadelta, lambda cfg: ("square_avg", "acc_delta"), torch_step=True),
    "keras_sgd": OptimizerKind("Keras", lambda p, lr, cfg, t: KerasSGD(p, lr, cfg), KerasSGD.slots_for),
    "torch_sgd": OptimizerKind("PyTorch", _torch_sgd, lambda cfg: ("momentum_buffer",) if cfg.momentum != 0 else ()),
    "keras_rmsprop": OptimizerKind("Keras", lambda p, lr, cfg, t: KerasRMSprop(p, lr, cfg), KerasRMSprop.slots_for),
    "torch_rmsprop": OptimizerKind("PyTorch", _torch_rmsprop, _torch_rmsprop_slots, torch_step=True),
}


def _kind(train: Any) -> tuple[OptimizerKind, Any]:
    cfg = getattr(train, "optimizer", None)
    name = "keras_adam" if cfg is None else cfg.name
    return OPTIMIZERS[name], cfg


def build_optimizer(params: Iterable[torch.nn.Parameter], train: Any, lr: float | None = None) -> torch.optim.Optimizer:
    """The optimizer ``train`` (a TrainConfig, or anything with its fields) names, over ``params``."""
    kind, cfg = _kind(train)
    return kind.build(list(params), train.lr if lr is None else lr, cfg, train)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate every later step uses (a schedule's)."""
    for group in opt.param_groups:
        group["lr"] = lr


def state_keys(train: Any, param_names: Iterable[str]) -> tuple[dict[str, str], str]:
    """``({checkpoint key: parameter name}, step-count key)`` of the optimizer ``train`` names."""
    kind, cfg = _kind(train)
    keys = {f"{kind.prefix}.{slot}.{name}": name for name in param_names for slot in kind.slots(cfg)}
    return keys, f"{kind.prefix}.t"


def state_shapes(train: Any, model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """For a checkpoint's check: ``({key: the parameter it must match in shape and dtype}, step key)``."""
    params = dict(model.named_parameters())
    keys, t_key = state_keys(train, params)
    return {k: params[n] for k, n in keys.items()}, t_key


def state_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module, train: Any, t: int) -> dict[str, torch.Tensor]:
    """The optimizer's state as checkpoint tensors (zeros for a slot not made yet), step count ``t``."""
    kind, cfg = _kind(train)
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        st = opt.state.get(p, {})
        for slot in kind.slots(cfg):
            v = st.get(slot)
            out[f"{kind.prefix}.{slot}.{name}"] = v.detach().clone() if v is not None else torch.zeros_like(p)
    out[f"{kind.prefix}.t"] = torch.tensor(t, dtype=torch.int64)
    return out


def load_state_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module, train: Any,
                       d: dict[str, torch.Tensor]) -> int:
    """Put a checkpoint's optimizer state back (see :func:`state_tensors`); returns the step count.

    At step 0 nothing is loaded: every optimizer then starts as new (torch's SGD makes its buffer
    from the first gradient, which zeros would not reproduce with dampening)."""
    kind, cfg = _kind(train)
    t = int(d[f"{kind.prefix}.t"])
    if t == 0:
        return 0
    for name, p in model.named_parameters():
        st: dict[str, Any] = {slot: d[f"{kind.prefix}.{slot}.{name}"].to(p.device).clone() for slot in kind.slots(cfg)}
        if kind.prefix == "adam":  # KerasAdam's own bookkeeping
            st["step"] = torch.tensor(float(t))
            st["t"] = t
        elif kind.torch_step:
            st["step"] = torch.tensor(float(t), dtype=torch.float32)
        elif kind.framework == "Keras":
            st["t"] = t
        opt.state[p] = st
    return t
