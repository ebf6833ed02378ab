"""The CUDA-graph training path: a stacked dense step that reads and writes only device tensors,
so one captured CUDA graph replays it with no host input at all.

Why: on a GPU the dense models of this project are launch-bound. A step of the lab undercomplete
AE (784→32→784, batch 64) is ~25 kernels of a few microseconds each; eager PyTorch spends longer
issuing them from Python than the GPU spends running them. A CUDA graph records the kernels once
and replays them with one launch (PyTorch's ``torch.cuda.CUDAGraph``); stacking M same-shape models
(:class:`~aelab.engine.steppers.StackedDenseStepper`) keeps the kernel count independent of M.

What a replayed step may not do: read a value on the host (``.item()``, a Python branch on a
tensor), take a Python number that changes between steps (a batch offset, Adam's step count, a
learning rate computed from it), or allocate a tensor that outlives it. So everything a step
reads or writes lives in tensors at fixed addresses (:class:`GraphedDenseStepper`):

* the epoch's rows — the loop's shuffled inputs and targets, copied once per epoch into one
  static ``(K, N, D)`` buffer (K distinct tensors: models that share an input share its rows; it
  costs one more copy of each on the device: 188 MB for MNIST's training set);
* a batch counter ``c`` on the device: the step gathers batch c's rows (``index_select`` on the
  buffer viewed ``(K, N // B, B, D)``), writes each model's loss and penalty into row c of its own
  ``(nb, M)`` loss rows (``index_copy_``) and adds 1 to c;
* Adam's step count ``t`` on the device, and Keras' ``α_t = lr·√(1−β2ᵗ)/(1−β1ᵗ)`` read from a
  float32 table indexed by t. The table is filled on the host by :func:`~aelab.engine.adam.keras_lr_t`,
  so α_t is the very float32 the CPU path hands its C kernel. The update is Keras' (ε added to
  √v): on a GPU in PyTorch's one-kernel fused Adam, given α_t as its (tensor) learning rate and a
  constant step count so large that β1ᵗ and β2ᵗ are 0 — its bias corrections are then 1 and its
  denominator is √v + ε, Keras' own (equal to Keras' operations to rounding: it rounds
  ``β·m + (1−β)·g`` where Keras rounds ``m + (g−m)(1−β)``); elsewhere (and with
  ``fused_adam=False``) in the operations of ``ckernels.keras_adam_``'s PyTorch path.

An epoch is then: the host sets c and t (two fills) and replays the one captured step
``nb − 1`` times (in runs of at most 64, so the loop still checks its stop flag); a ragged last
batch runs the same body eagerly, its rows a slice of the buffer. The loop calls
:meth:`GraphedDenseStepper.train_steps` for that (its optional multi-step hook), and reads the
losses once per epoch as always.

The same body runs eagerly (no capture) on any device: that is how the CPU tests check it. On a
CPU, with ``fused_adam=False`` (the default there), it trains to the bits of
:class:`StackedDenseStepper`: its gradients and its Adam are the same float operations (tested;
with the fused Adam a GPU uses, to rounding, also tested on a CPU). The reported loss values differ
from that path by float rounding: they are one batched reduction over each model's ``(B, D)``
block instead of one reduction per model — with M = 64, per-model reductions would be 128 more
kernels per step. On a GPU a model's values may depend on the models beside it at rounding anyway
(cuBLAS may pick another batched-matmul kernel for another batch count), unlike on the CPU path,
which keeps them bit-identical alone or in a group.

Capture follows PyTorch's recipe (``torch.cuda.graph``): a few real steps run eagerly on a side
stream first (they create the cuBLAS workspace and allocate the step's kept buffers), then the
step is captured on that same stream into a graph-private memory pool. Capturing executes
nothing, so the warm-up steps are simply the epoch's first steps.

``AELAB_CUDA_GRAPHS=0`` turns the path off (:func:`wanted`): a CUDA run then trains on
:class:`StackedDenseStepper` as before. It is an execution choice like ``--engine``, not part of a
run's config (a run's config hash names what determines its result; the two paths agree to float
rounding). This path was written and tested on CPUs only; the tests that capture on a GPU
(``tests/test_cuda_graphs.py``, skipped without CUDA) have not run yet.
"""

from __future__ import annotations

import os
import weakref
from typing import Sequence

import torch

from ..errors import ConfigError
from .adam import FUSED, keras_lr_t
from .steppers import StackedDenseStepper, distinct_tensors

ENV = "AELAB_CUDA_GRAPHS"
_ON = {"", "1", "true", "on", "yes"}
_OFF = {"0", "false", "off", "no"}


def wanted(device: torch.device) -> bool:
    """Whether stacked dense groups on ``device`` train through CUDA graphs: on CUDA unless
    ``AELAB_CUDA_GRAPHS`` says 0/false/off/no. A value that is neither raises :class:`ConfigError`."""
    raw = os.environ.get(ENV, "")
    val = raw.strip().lower()
    if val not in _ON | _OFF:
        raise ConfigError(f"{ENV}={raw!r} is not understood; "
                          "set it to 1 (CUDA graphs on a GPU, the default) or 0 (off)")
    return torch.device(device).type == "cuda" and val in _ON and hasattr(torch.cuda, "CUDAGraph")


def dense_stepper_class(device: torch.device) -> type[StackedDenseStepper]:
    """The stepper class for a group of stackable dense models on ``device``."""
    return GraphedDenseStepper if wanted(device) else StackedDenseStepper


class _Layout:
    """The static buffers of one epoch shape: rows of K tensors (N, D), batches of B rows."""

    def __init__(self, K: int, n: int, D: int, B: int, M: int, where: tuple[int, ...], jy: int, device) -> None:
        self.key = (K, n, D, B, M, where, jy)
        self.K, self.n, self.D, self.B = K, n, D, B
        self.nbf = n // B  # full batches
        self.nb = -(-n // B)  # all batches, a ragged last one included
        self.jy = jy  # which of the K tensors holds the targets
        self.shared = where[0] if len(set(where)) == 1 else None  # every model reads the same input
        self.where = torch.tensor(where, dtype=torch.int64, device=device)
        self.E = torch.zeros(K, n, D, device=device)
        self.Ev = self.E[:, : self.nbf * B].view(K, self.nbf, B, D) if self.nbf else None
        self.sel = torch.empty(K, 1, B, D, device=device)  # batch c's rows of each tensor
        self.loss_rows = torch.zeros(self.nb, M, device=device)
        self.pen_rows = torch.zeros(self.nb, M, device=device)


class GraphedDenseStepper(StackedDenseStepper):
    """:class:`StackedDenseStepper` with a step whose inputs all live on the device (see the module
    docstring), captured in a CUDA graph on a GPU (``capture``; default: on CUDA) and run eagerly
    elsewhere. Same parameters, state and checkpoints as its base; ``train_step`` (one step from
    the host) still works and keeps the device counters in step.
    """

    #: eager steps before the capture (PyTorch's examples use 3; they are real training steps)
    WARMUP = 3
    #: entries of the α_t table at first (it doubles when a run goes past it, and the step is
    #: captured again): 65536 steps, 70 epochs of full MNIST at batch 64
    LR_TABLE = 1 << 16

    #: a step count at which β1ᵗ and β2ᵗ are 0 in double precision: PyTorch's fused Adam then
    #: applies no bias correction (see the module docstring)
    NO_BIAS_STEP = float(2**30)

    def __init__(self, specs, lr: float, beta1: float, beta2: float, eps: float, device,
                 capture: bool | None = None, fused_adam: bool | None = None, num_threads: int | None = None) -> None:
        dev = torch.device(device)
        fused = FUSED and dev.type == "cuda" if fused_adam is None else bool(fused_adam)
        # the trick needs βᵗ to vanish at NO_BIAS_STEP: true of any β up to 1 − 1e-7 (a β2 of
        # 1 − 1e-12 would leave a bias correction); else Adam's separate operations
        fused = fused and all(1.0 - b ** self.NO_BIAS_STEP == 1.0 for b in (beta1, beta2))
        # a step from the host (train_step) takes the base class's Adam: PyTorch's fused kernel too
        # when this one does (with ε rescaled per step: the same rule, equal to rounding)
        super().__init__(specs, lr, beta1, beta2, eps, dev, fused_adam=fused, num_threads=num_threads)
        self.capture = dev.type == "cuda" if capture is None else bool(capture)
        if self.capture and dev.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        # PyTorch operations only: the C kernels are host calls through ctypes, which a graph
        # cannot record (and they exist for CPU tensors only)
        self._c = False
        self._hid_c = [False] * (self.L - 1)
        self._pen_c = False
        M = self.n_models
        self._counter = torch.zeros(1, dtype=torch.int64, device=dev)  # the batch in the epoch
        self._t = torch.zeros(1, dtype=torch.int64, device=dev)  # Adam's step count
        self._alpha = torch.zeros(1, device=dev)  # α_t of this step
        self._no_bias = torch.full((), self.NO_BIAS_STEP, device=dev)  # fused Adam's step count
        self._lr_table: torch.Tensor | None = None
        # the temporaries of Adam in separate operations, over the flat buffers
        self._tmp = None if self.fused_adam else torch.empty_like(self.flat)
        self._tmp2 = None if self.fused_adam else torch.empty_like(self.flat)
        self._loss = torch.zeros(M, device=dev)  # this step's losses and penalties
        self._pen = torch.zeros(M, device=dev)
        self._lay: _Layout | None = None
        self._seen: tuple = ()  # (weak reference, version) of each tensor last copied into the rows
        self._graph = None  # torch.cuda.CUDAGraph of one full-batch step
        self._stream = None  # the side stream of warm-up and capture
        self._warm = 0  # eager full-batch steps since the layout was made
        #: full-batch steps taken by replaying the graph (tests and benchmarks read it)
        self.replays = 0

    # -- the loop's multi-step hook ----------------------------------------------------------------
    def train_steps(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, b0: int, b1: int, batch_size: int,
                    loss_out: torch.Tensor, pen_out: torch.Tensor, terms_out: torch.Tensor | None = None) -> None:
        """Batches ``b0 ≤ b < b1`` of the epoch whose rows are ``x_in`` (one tensor per model, (N, D))
        and ``y`` (N, D), already in the epoch's order: batch b is rows ``[b·B, (b+1)·B)``. Each
        model's loss goes into ``loss_out[b, m]``, its penalty into ``pen_out[b, m]`` (``loss_out``,
        ``pen_out``: (nb, M)). This stepper's one term is its penalty: ``terms_out`` is not written.
        """
        with self.threads:
            self._train_steps(x_in, y, b0, b1, batch_size, loss_out, pen_out)

    def _train_steps(self, x_in, y, b0: int, b1: int, B: int, loss_out, pen_out) -> None:
        lay = self._prepare(x_in, y, B)
        if not 0 <= b0 <= b1 <= lay.nb:
            raise ValueError(f"batches {b0}..{b1} are outside the epoch's {lay.nb}")
        if b0 == b1:
            return
        self._lr_table_to(self.t + (b1 - b0))
        # the host's counts are the truth (a checkpoint holds them; train_step may have moved t)
        self._counter.fill_(b0)
        self._t.fill_(self.t)
        b, full_end = b0, min(b1, lay.nbf)
        while b < full_end:
            if self.capture:
                b += self._graphed(full_end - b)
            else:
                self._body(lay, ragged=False)
                b += 1
        if b1 > lay.nbf:  # the ragged last batch: the same body, eagerly, on a slice of the rows
            self._body(lay, ragged=True)
        self.t += b1 - b0
        self.step_t.fill_(float(self.t))  # where the base class's step reads the count
        loss_out[b0:b1].copy_(lay.loss_rows[b0:b1])
        pen_out[b0:b1].copy_(lay.pen_rows[b0:b1])

    # -- static buffers ------------------------------------------------------------------------------
    def _prepare(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, B: int) -> _Layout:
        """The layout for these tensors (made when their shape changes), with this epoch's rows in it
        (copied when the loop hands over other tensors than last time, or changed ones)."""
        if len(x_in) != self.n_models:
            raise ValueError("one input tensor per model")
        uniq, where = distinct_tensors(list(x_in) + [y])
        jy = where.pop()
        n, D = y.shape
        if any(u.shape != y.shape for u in uniq):
            raise ValueError("the inputs and the targets must have the same shape (N, D)")
        key = (len(uniq), n, D, B, self.n_models, tuple(where), jy)
        if self._lay is None or self._lay.key != key:
            self._lay = _Layout(len(uniq), n, D, B, self.n_models, tuple(where), jy, self.device)
            self._graph, self._warm, self._seen = None, 0, ()
        seen = tuple((weakref.ref(u), u._version) for u in uniq)
        if not (len(seen) == len(self._seen)
                and all(r0() is u and v == v0 for (_, v), (r0, v0), u in zip(seen, self._seen, uniq))):
            for k, u in enumerate(uniq):
                self._lay.E[k].copy_(u)
            self._seen = seen
        return self._lay

    def _lr_table_to(self, t_max: int) -> None:
        """Make the α_t table reach step ``t_max``; a new table is a new address: capture again."""
        have = 0 if self._lr_table is None else self._lr_table.numel()
        if t_max < have:
            return
        cap = max(t_max + 1, 2 * have, self.LR_TABLE)
        lr, b1, b2, _ = self.hp
        vals = [0.0] + [keras_lr_t(lr, b1, b2, t) for t in range(1, cap)]
        self._lr_table = torch.tensor(vals, dtype=torch.float32).to(self.device)
        self._graph = None

    def load_state(self, states) -> None:
        super().load_state(states)  # in place: the buffers a graph reads keep their addresses
        self._t.fill_(self.t)

    # -- capture and replay ------------------------------------------------------------------------
    def _graphed(self, k: int) -> int:
        """Take up to ``k`` full-batch steps on the GPU; returns how many it took. The first
        :attr:`WARMUP` run eagerly on the side stream, the step is captured after them, and from
        then on each step is one replay."""
        lay = self._lay
        cur = torch.cuda.current_stream(self.device)
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        if self._graph is None and self._warm < self.WARMUP:
            w = min(k, self.WARMUP - self._warm)
            self._stream.wait_stream(cur)
            with torch.cuda.stream(self._stream):
                for _ in range(w):
                    self._body(lay, ragged=False)
            cur.wait_stream(self._stream)
            self._warm += w
            return w
        if self._graph is None:
            g = torch.cuda.CUDAGraph()
            # warm-up and capture on the same stream: its cuBLAS workspace exists before capture
            with torch.cuda.graph(g, stream=self._stream):
                self._body(lay, ragged=False)
            self._graph = g
        for _ in range(k):
            self._graph.replay()
        self.replays += k
        return k

    # -- the step --------------------------------------------------------------------------------------
    @staticmethod
    def _model_means(t: torch.Tensor) -> torch.Tensor:
        """Each model's mean in one batched reduction (the values may differ by rounding from the
        model's alone; see the module docstring)."""
        return t.reshape(t.shape[0], -1).mean(1)

    @staticmethod
    def _model_sums(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1).sum(1)

    def _body(self, lay: _Layout, ragged: bool) -> None:
        """One step on batch ``counter`` of the epoch's rows: device tensors in, device tensors out,
        no value read by the host, no Python number that changes between steps."""
        M = self.n_models
        if ragged:
            rows = lay.E[:, lay.nbf * lay.B:]  # (K, r, D): the rows after the full batches
        else:
            torch.index_select(lay.Ev, 1, self._counter, out=lay.sel)
            rows = lay.sel.view(lay.K, lay.B, lay.D)
        B = rows.shape[1]
        if lay.shared is not None:
            one = rows[lay.shared].unsqueeze(0)
            a0 = one if M == 1 else one.expand(M, B, lay.D)
        else:
            a0 = torch.index_select(rows, 0, lay.where, out=self._buf("graph_inputs", (M, B, lay.D)))
        yb = rows[lay.jy]
        zs, outs = self._forward(a0)
        # the base class's output layer and penalty without its C kernels (``_c`` is off), with
        # batched reductions for the values (``_model_means``/``_model_sums`` below)
        dz = self._output_loss_and_grad(zs[-1], outs[-1], yb, self._loss, need_grad=True)
        if self.has_penalty:
            self._pen.copy_(self._penalty(outs[self.code_layer]))
            self._loss.add_(self._pen)
        # the backward of StackedDenseStepper without its C kernels (_hid_c is off): autograd's
        # operations in autograd's order
        self._backward(a0, zs, outs, dz, B, None, None)
        self._adam()
        lay.loss_rows.index_copy_(0, self._counter, self._loss.view(1, M))
        if self.has_penalty:
            lay.pen_rows.index_copy_(0, self._counter, self._pen.view(1, M))
        self._counter.add_(1)

    def _adam(self) -> None:
        """Keras' Adam over the flat buffers, step count and α_t from the device: PyTorch's fused
        kernel with α_t as its learning rate and no bias correction (``fused_adam``), or the
        operations of ``ckernels.keras_adam_``'s PyTorch path (the same bits as its C loop on a CPU)."""
        _, b1, b2, eps = self.hp
        p, g, m, v = self.flat, self.gflat, self.mflat, self.vflat
        self._t.add_(1)
        torch.index_select(self._lr_table, 0, self._t, out=self._alpha)
        if self.fused_adam:  # one kernel instead of twelve; reads α_t and its step count on the device
            torch._fused_adam_([p], [g], [m], [v], [], [self._no_bias], lr=self._alpha.view(()), beta1=b1,
                               beta2=b2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            return
        tmp = self._tmp
        m.add_(torch.sub(g, m, out=tmp).mul_(1.0 - b1))
        v.add_(torch.mul(g, g, out=tmp).sub_(v).mul_(1.0 - b2))
        if v.device.type == "cpu":
            # as ckernels.keras_adam_: the correctly rounded square root (PyTorch's float sqrt on a
            # CPU is off by an ulp for ~0.7% of values); CUDA's sqrtf is correctly rounded
            root = v.double().sqrt_().float()
        else:
            root = torch.sqrt(v, out=tmp)
        p.sub_(torch.mul(m, self._alpha, out=self._tmp2).div_(root.add_(eps)))
