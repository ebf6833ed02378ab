"""Adam with Keras' update rule.

Keras (``keras.optimizers.Adam``) applies, at step t::

    lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t)
    m ← m + (g − m)(1 − β1)          v ← v + (g² − v)(1 − β2)
    p ← p − lr_t · m / (sqrt(v) + ε)

PyTorch adds ε to the bias-corrected ``sqrt(v̂)`` instead, which differs early in training. The
two agree exactly when PyTorch's ε is replaced by ``ε / sqrt(1 − β2^t)`` at each step; that is how
:func:`keras_adam_step_` uses PyTorch's fused kernel on a GPU (one launch instead of six; equal to
rounding). On a CPU it applies the formula above operation for operation (``ckernels.keras_adam_``).
"""

from __future__ import annotations

import math

import torch

from .. import kernels as ckernels


#: Whether PyTorch's one-pass fused Adam kernel exists. It is what both engine paths use on a GPU,
#: where one kernel launch instead of six is what counts; on a CPU both use Keras' own formula
#: (``ckernels.keras_adam_``: one C loop, or the same float operations in PyTorch).
FUSED = hasattr(torch, "_fused_adam_")


def keras_lr_t(lr: float, beta1: float, beta2: float, t: int) -> float:
    return lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)


def keras_adam_step_(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
    t: int, lr: float, beta1: float, beta2: float, eps: float, fused: bool | None = None,
) -> None:
    """One in-place Keras Adam update of flat tensors ``p, g, m, v`` (same shape), step ``t`` ≥ 1.

    ``step`` is a 0-d float tensor holding t − 1 before the call (PyTorch's fused kernel reads
    and the caller keeps it); it holds t afterwards. ``fused``: use PyTorch's fused kernel (with
    ε rescaled so its rule is Keras'; equal to rounding); ``None`` picks it on a GPU only.
    """
    step.add_(1.0)
    if fused is None:
        fused = FUSED and p.device.type != "cpu"
    if fused:
        torch._fused_adam_(
            [p], [g], [m], [v], [], [step], amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
            weight_decay=0.0, eps=eps / math.sqrt(1.0 - beta2**t), maximize=False,
        )
        return
    ckernels.keras_adam_(p, g, m, v, keras_lr_t(lr, beta1, beta2, t), beta1, beta2, eps)


class KerasAdam(torch.optim.Optimizer):
    """``torch.optim`` wrapper of the Keras rule, for the generic (autograd) engine path."""

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7):
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch's signature
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                    st["t"] = 0
                # t is kept as a Python int so a step never waits on a device value.
                st["t"] += 1
                keras_adam_step_(
                    p, p.grad, st["m"], st["v"], st["step"], st["t"], group["lr"], group["beta1"],
                    group["beta2"], group["eps"],
                )
        return None
