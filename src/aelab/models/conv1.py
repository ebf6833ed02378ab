"""Convolutions with one output channel on a CPU, by aelab's own C kernels.

The last layer of every image autoencoder here turns C feature maps into one image:
``Conv2D(1, 3, padding="same")`` (the Keras blog's conv AE, keras.io's denoiser) or
``Conv2DTranspose(1, 3, padding="same")`` (keras.io's VAE; with stride 1 it is a convolution with
the kernel flipped). oneDNN, which PyTorch and TensorFlow both call, vectorises over output
channels and runs this shape at ~6 GFLOP/s — measured here at 20–30 % of the conv AE's training
step. ``_kernels.c``'s ``conv1_*`` kernels vectorise over the input channels instead: on this
project's VM, one thread, a 128-image batch of 28×28, C = 16 → 1: forward 4.3 → 1.4 ms, both
backward passes 6.3 → 2.2 ms; C = 32: 8.0 → 1.9 and 8.3 → 2.6 ms (``/tmp``-free check:
``tests/models/test_conv1.py`` compares them with PyTorch's convolution).

The values are the same convolution summed in another order: they agree with oneDNN's to float
rounding, not bit for bit (and do not depend on the thread count). Used only where it applies (a
CPU, float32, C a multiple of 16, stride 1, a square kernel, the same zero padding on every side,
the C library loaded; ``AELAB_CONV1=0`` turns it off), otherwise the layer calls PyTorch as before.
A second derivative (a penalty that differentiates through the layer) recomputes the layer with
PyTorch's differentiable convolution.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F

from .. import kernels



def enabled() -> bool:
    return os.environ.get("AELAB_CONV1", "1") != "0"


def applies(x: torch.Tensor, weight: torch.Tensor, in_channels: int, out_channels: int, stride, dilation,
            groups: int, pad: tuple[int, int]) -> bool:
    """Whether :func:`conv1` can compute this layer on ``x``."""
    k = weight.shape[-1]
    return (out_channels == 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and weight.shape[-2] == k and pad[0] == pad[1] and 0 <= pad[0] < k and weight.dtype == torch.float32
            and enabled() and kernels.conv1_usable(x, in_channels))


def _packed(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The kernel as ``(K, K, C)`` for the C kernels: a conv's ``weight[0, c, kh, kw]``, or a
    stride-1 transposed conv's ``weight[c, 0]`` flipped (the convolution it equals)."""
    w = weight[:, 0].flip(-2, -1) if transposed else weight[0]
    return w.permute(1, 2, 0).contiguous()


def _unpacked(gwt: torch.Tensor, transposed: bool) -> torch.Tensor:
    w = gwt.permute(2, 0, 1)
    return w.flip(-2, -1).unsqueeze(1).contiguous() if transposed else w.unsqueeze(0).contiguous()


def _as_conv_weight(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """The (1, C, K, K) convolution kernel the layer computes with (differentiable)."""
    return weight.flip(-2, -1).transpose(0, 1) if transposed else weight


class _Conv1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pad: int, transposed: bool):
        k = weight.shape[-1]
        wt = _packed(weight.detach(), transposed)
        ctx.save_for_backward(x, weight, bias)
        ctx.pad, ctx.transposed, ctx.wt = pad, transposed, wt
        b = 0.0 if bias is None else float(bias.detach()[0])
        return kernels.conv1_forward(x.detach(), wt, b, pad, k)

    @staticmethod
    def backward(ctx, g):
        x, weight, bias = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # a second derivative asked for: PyTorch's differentiable conv
            w = _as_conv_weight(weight, ctx.transposed)
            ins = [t for t, need in ((x, need_x), (weight, need_w), (bias, need_b)) if need]
            with torch.enable_grad():
                y = F.conv2d(x, w, bias, 1, ctx.pad)
                grads = iter(torch.autograd.grad(y, ins, g, create_graph=True))
            return (next(grads) if need_x else None, next(grads) if need_w else None,
                    next(grads) if need_b else None, None, None)
        gx, gwt, gb = kernels.conv1_backward(g, x.detach(), ctx.wt, ctx.pad, weight.shape[-1], need_x,
                                                 need_w or need_b)
        gw = _unpacked(gwt, ctx.transposed) if need_w else None
        return gx, gw, (gb.reshape(1) if need_b else None), None, None


def conv1(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], pad: int,
          transposed: bool = False) -> torch.Tensor:
    """The layer's output ``(N, 1, OH, OW)`` (channels-last memory) for a channels-last ``x``."""
    return _Conv1.apply(x, weight, bias, pad, transposed)
