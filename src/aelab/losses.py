"""Loss functions as pure functions, each faithful to Keras' definition.

Shapes: ``y_true`` and predictions are ``(B, D)``; every loss returns the scalar batch mean of
the per-sample mean over the D values, which is what Keras reports for one batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Keras' ``backend.epsilon()``: probabilities are clipped to [EPS, 1 - EPS].
EPS = 1e-7


def bce_from_logits(y_true: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy computed from the pre-sigmoid values ``z`` (numerically stable).

    ``mean(max(z, 0) - z·y + log(1 + exp(-|z|)))`` — what Keras computes when the output layer is
    a sigmoid: it recovers the logits from the sigmoid's input instead of clipping probabilities.
    ``y_true, logits: (B, D)`` → scalar.
    """
    return F.binary_cross_entropy_with_logits(logits, y_true)


def bce_clipped(y_true: torch.Tensor, y_pred: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Binary cross-entropy from probabilities, Keras' way for a non-sigmoid output.

    ``p = clip(y_pred, eps, 1 - eps)``; ``loss = mean(-[y·log p + (1-y)·log(1-p)])`` (Keras 3 writes ``log(1 - p)``).
    ``torch.clamp`` passes zero gradient where the value was clipped, as Keras' ``clip_by_value``
    does, so a relu output above 1 (or at 0) gets no gradient from that pixel.
    ``y_true, y_pred: (B, D)`` → scalar.
    """
    return _ClippedBCE.apply(y_pred, y_true, eps)


class _ClippedBCE(torch.autograd.Function):
    """Keras' clipped BCE with its gradient computed by the kernels the fast engine path uses.

    Forward: the formula above (targets may lie outside [0, 1], as Keras allows). Backward:
    PyTorch's BCE-backward kernel ``(p − y) / (p (1 − p))``, divided by the element count, times
    clip's mask — mathematically the formula's derivative, and bit-identical to the stacked fast
    path, which matters because a relu output layer turns rounding differences into other runs.
    """

    @staticmethod
    def forward(ctx, y_pred: torch.Tensor, y_true: torch.Tensor, eps: float) -> torch.Tensor:
        p = torch.clamp(y_pred, eps, 1.0 - eps)
        ctx.save_for_backward(y_pred, p, y_true)
        return -(y_true * torch.log(p) + (1.0 - y_true) * torch.log(1.0 - p)).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y_pred, p, y_true = ctx.saved_tensors
        one = torch.ones((), dtype=p.dtype, device=p.device).expand_as(p)
        g = torch.ops.aten.binary_cross_entropy_backward(one, p, y_true, None, 0).div_(p.numel())
        g.mul_(torch.eq(y_pred, p))  # clip_by_value passes no gradient where it clipped
        return g.mul_(grad), None, None  # ×1.0 for a plain loss: exact, and no host sync


def mse(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """Mean squared error: ``mean((y - ŷ)²)``. ``(B, D)`` → scalar."""
    return F.mse_loss(y_pred, y_true)


def activity_l1(code: torch.Tensor, lam: float) -> torch.Tensor:
    """Keras ``activity_regularizer=l1(λ)`` as ``fit`` applies it: ``λ·Σ|h| / B``.

    Keras sums |h| over the batch and the units, then divides by the batch size, so the penalty
    is a per-sample mean of ``λ·Σ_units |h|``. ``code: (B, K)`` → scalar.
    """
    return lam * code.abs().sum() / code.shape[0]


def reconstruction_loss(kind: str, y_true: torch.Tensor, out: torch.Tensor, logits: torch.Tensor | None) -> torch.Tensor:
    """Dispatch on the loss name; BCE takes the logits path whenever logits are available."""
    if kind == "bce":
        return bce_from_logits(y_true, logits) if logits is not None else bce_clipped(y_true, out)
    if kind == "mse":
        return mse(y_true, out)
    raise ValueError(f"unknown loss {kind!r}; allowed: bce, mse")
