"""Steppers: what one optimisation step means, for one model or for several side by side.

The training loop (``loop.py``) is the same for every model; a stepper owns the parameters and
the optimiser state and knows how to take a step on a batch of row indices.

* :class:`PlainStepper` — any :class:`~aelab.models.Autoencoder`, autograd + any optimizer of
  ``optimizers.py`` (Keras Adam by default). The reference path: obviously right, and what every
  faster path is tested against.
* :class:`StackedDenseStepper` — M dense autoencoders of the same layer sizes trained side by
  side: weights stacked into ``(M, in, out)`` tensors that live in one flat buffer, forward and
  backward written out by hand with batched matmuls, and one Keras-Adam update over the whole
  flat buffer. On a CPU the elementwise work around the matmuls (output loss and gradient, hidden
  backward with the L1 penalty, Adam) runs in the fused C kernels of ``aelab.kernels``. Per step it
  issues a fixed, small number of calls whatever M is, so the per-step overhead of eager PyTorch
  is paid once for M models, and there is no autograd graph to build. Its gradients are
  autograd's, operation for operation: it trains to the plain path's bits (tested).

Both write each model's batch loss into caller-provided buffers on the device: no ``.item()``,
no host synchronisation inside an epoch.

The canonical per-model state (for checkpoints and weights files) is the model's
``state_dict()`` plus, for Keras Adam, ``adam.m.<name>`` / ``adam.v.<name>`` and ``adam.t`` — identical
for both steppers, so a run checkpointed by one can be resumed by the other; another optimizer's
state is ``opt.<slot>.<name>`` and ``opt.t`` (plain path only; ``optimizers.py``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import kernels as ckernels
from ..losses import EPS
from ..models import build_model, family_of
from ..models.base import FastPlan, load_weights_into
from .adam import keras_adam_step_, keras_lr_t
from .optimizers import build_optimizer, load_state_tensors, set_lr, state_tensors
from .loop import STREAM_EVAL, generator

#: Rows per evaluation chunk, the same for every group size and both steppers: a chunk's loss is
#: a float32 mean, so the chunking decides the last digits of ``val_loss``. It used to shrink with
#: the number of stacked models, so a run's history depended on what it happened to be grouped
#: with — and a study resumed with other groups differed in the 8th digit.
EVAL_CHUNK = 1024


aten = torch.ops.aten


@dataclass
class ModelSpec:
    """What a stepper needs to know about one model of a group."""

    model_cfg: object  # a family's Config (aelab.models.base.ModelConfig)
    loss: str  # "bce" | "torch_bce" | "mse"
    init_seed: int
    sample_seed: int = 0  # the run's seed: a stochastic model's sampling streams derive from it
    #: the run's optimizer (an ``aelab.config`` optimizer table); None: Keras Adam, the only one the
    #: fast path implements
    optimizer: object = None

    def term_names(self) -> tuple[str, ...]:
        return tuple(self.model_cfg.term_names())


@dataclass(frozen=True)
class _OptimizerSettings:
    """What ``optimizers.py`` reads of a TrainConfig: the learning rate, Keras Adam's β1/β2/ε, the
    optimizer's table (None: Keras Adam)."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    optimizer: object = None


def _init_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def build_initial_model(spec: ModelSpec) -> torch.nn.Module:
    """The model at initialisation (or from ``init_weights``): both steppers start from exactly these."""
    model = build_model(spec.model_cfg, _init_generator(spec.init_seed))
    if getattr(spec.model_cfg, "init_weights", None):
        load_weights_into(model, spec.model_cfg.init_weights)
    return model


class _Threads:
    """Run a block with ``n`` intra-op threads, restoring the previous setting after it; ``n`` 0 or
    None: run it with the process's setting, untouched.

    The fast path issues a few dozen small kernels per step (a 64-row batch: each matmul is a few
    MFLOP, each elementwise pass under a megabyte). One thread runs them at the core's BLAS peak;
    with more, every kernel becomes a parallel region that waits for its slowest thread, which on a
    small or shared CPU (another process on the other core) turns microseconds into milliseconds.
    Measured on 2 cores: 1 thread was never slower, and 2–100× faster under load.
    """

    __slots__ = ("n", "old")

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = 0

    def __enter__(self) -> None:
        if self.n:
            self.old = torch.get_num_threads()
            if self.old != self.n:
                torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        if self.n and self.old != self.n:
            torch.set_num_threads(self.old)


def _default_threads(device: torch.device, model_cfg: object | None = None) -> int:
    """Intra-op threads for training steps; 0 means the process's setting. ``AELAB_NUM_THREADS=N``
    overrides it on a CPU; a GPU run is never touched.

    * Dense models (the fast path, and the autograd path for dense models): **1** thread. Their
      steps are many small kernels that do not scale (see :class:`_Threads`), and a fixed count
      makes results independent of the machine: CPU matmuls round differently with different
      thread counts, and relu-output models amplify that. The plain path must use the fast path's
      count to train to the same bits. This includes dense models of other families on the
      autograd path: pytorch/examples' VAE (784-400-20, batch 128) took 21–23 ms per step on one
      thread against 21–26 on two with ``OMP_WAIT_POLICY=PASSIVE``, and 310–406 on two without
      it, on this project's 2-vCPU VM under load (``python -m benchmarks.conv_steps``).
    * Models with image layers (conv, pooling, up-sampling: the autograd path only): **the
      process's setting** — PyTorch's default of one thread per core, or a study worker's share
      (``cores // workers``), or whatever the caller set with ``torch.set_num_threads``. A conv
      step is a few large oneDNN kernels that do scale: on this project's 2-vCPU VM two threads
      took the Keras-blog conv AE from 39 to 28 ms per 128-image step and the keras.io VAE from
      108 to 73 ms on a quiet machine (``python -m benchmarks.conv_steps``), which is what brings
      them level with Keras, itself on all cores. The trade-offs:

      1. a conv run's result depends on the thread count (oneDNN splits its reductions per
         thread): the same config trained by ``aelab train`` (all cores), inside a study worker
         (its share) or on another machine agrees to float rounding, not bit for bit; a resumed
         run replays exactly, on the thread count it recorded when it started (``runs.py``);
      2. when other processes keep the cores busy, PyTorch's OpenMP threads, which spin while
         they wait for each other, lose the CPU to each other and to those processes at every
         kernel: with the default wait policy, two threads took 1131 ms per conv-AE step against
         160 ms on one while two other jobs ran; with ``OMP_WAIT_POLICY=PASSIVE`` (read when
         PyTorch loads, so it must be in the environment or set before ``import torch``) two
         threads took 96 ms right after, under the same load — faster than one.

      So: run conv models with ``OMP_WAIT_POLICY=PASSIVE`` on a shared CPU, or set
      ``AELAB_NUM_THREADS=1`` (also for bits that do not depend on the machine).
    """
    if device.type != "cpu":
        return 0
    env = os.environ.get("AELAB_NUM_THREADS")
    if env:
        return int(env)
    is_dense = getattr(model_cfg, "is_dense", None)
    return 0 if is_dense is not None and not is_dense() else 1


def _rows(t: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
    """The batch's rows of ``t``: a slice (rows already in the epoch's order) or gathered by index."""
    return t[idx] if isinstance(idx, slice) else t.index_select(0, idx)


class _Stepper:
    """What every stepper shares: its steps run under the thread policy (see :class:`_Threads`)."""

    threads: _Threads

    #: the named loss terms (besides the reconstruction) this stepper reports, in column order
    term_names: list[str] = []
    #: whether a step needs a generator (a model that samples); the loop seeds one per (epoch, batch)
    needs_rng: bool = False

    def train_step(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, idx: torch.Tensor | slice,
                   loss_out: torch.Tensor, pen_out: torch.Tensor, terms_out: torch.Tensor | None = None,
                   rng: torch.Generator | None = None, **labels: torch.Tensor) -> None:
        """One optimisation step on rows ``idx`` (indices, or a slice of rows already shuffled);
        each model's batch loss into ``loss_out[m]``, the sum of its terms into ``pen_out[m]`` and,
        for a stepper that names several, each term into ``terms_out[m, t]``. ``labels=``: a
        conditional model's class labels, rows as ``y`` (only :class:`PlainStepper` takes them)."""
        with self.threads:
            self._train_step(x_in, y, idx, loss_out, pen_out, terms_out, rng, **labels)


class PlainStepper(_Stepper):
    """One model of any family, autograd, Keras Adam or the optimizer ``optimizer`` names (an
    ``aelab.config`` optimizer table; its learning rate is ``lr``, β1/β2/ε are Keras Adam's). ``n_models == 1``.

    The loss is the family's ``reconstruction`` plus the terms its ``forward`` names; a model that
    samples (a VAE) gets the generator the loop seeds per (epoch, batch), and evaluates with one
    fixed generator, so its validation loss is deterministic and comparable between epochs.
    """

    n_models = 1

    def __init__(self, spec: ModelSpec, lr: float, beta1: float, beta2: float, eps: float, device,
                 num_threads: int | None = None, optimizer: object = None) -> None:
        self.spec = spec
        self.device = torch.device(device)
        # the thread policy (see _default_threads): a dense model gets the fast path's one thread
        # (CPU matmul results depend on the thread count, so both paths must use the same one to
        # give the same result); a model with image layers, the process's setting (all cores)
        self.threads = _Threads(_default_threads(self.device, spec.model_cfg) if num_threads is None else num_threads)
        self.model = build_initial_model(spec).to(self.device)
        # what optimizers.py reads: the learning rate, Keras Adam's β1/β2/ε, and the optimizer's table
        self.train_cfg = _OptimizerSettings(lr, beta1, beta2, eps, optimizer if optimizer is not None else spec.optimizer)
        self.opt = build_optimizer(self.model.parameters(), self.train_cfg)
        self.lr = lr
        self.t = 0
        self.term_names = list(spec.term_names())
        self.needs_rng = bool(getattr(self.model, "stochastic", False))
        #: a model's update that is not a gradient step (a VQ-VAE's EMA codebook), run after each
        #: optimiser step under no_grad with that step's AEOutput; its state lives in the model's
        #: buffers, so checkpoints carry it and a resume continues it bit for bit
        self._after_step = getattr(self.model, "after_step", None)

    def _train_step(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, idx: torch.Tensor,
                    loss_out: torch.Tensor, pen_out: torch.Tensor, terms_out: torch.Tensor | None = None,
                    rng: torch.Generator | None = None, labels: torch.Tensor | None = None) -> None:
        xb = _rows(x_in[0], idx)
        yb = _rows(y, idx)
        self.model.train()
        # a conditional model gets its batch's labels (the same rows); every other model is called as ever
        out = self.model(xb, rng=rng) if labels is None else self.model(xb, rng=rng, labels=_rows(labels, idx))
        rec = self.model.reconstruction(out, yb, self.spec.loss)
        loss = rec + out.penalty
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self._after_step is not None:
            with torch.no_grad():
                self._after_step(out)
        self.t += 1
        div = self.model.report_divisor(yb.shape[0])
        loss_out[0].copy_(loss.detach() / div)
        pen_out[0].copy_(out.penalty.detach() / div)
        if terms_out is not None and self.term_names:
            terms_out[0].copy_(torch.stack([out.terms[n].detach() for n in self.term_names]) / div)

    def evaluate(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, chunk: int = EVAL_CHUNK,
                 labels: torch.Tensor | None = None):
        """Mean loss (terms included), mean penalty and mean of each term over the whole set:
        ``(1,)``, ``(1,)``, ``(1, T)``. ``labels``: a conditional model's class labels, rows as ``y``."""
        with self.threads:
            return self._evaluate(x_in, y, chunk, labels)

    @torch.no_grad()  # not inference_mode: a contractive term differentiates the encoder inside
    def _evaluate(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, chunk: int,
                  labels: torch.Tensor | None = None):
        self.model.eval()
        rng = generator(self.spec.sample_seed, STREAM_EVAL) if self.needs_rng else None
        n = y.shape[0]
        tot = torch.zeros((), device=self.device, dtype=torch.float64)
        pen = torch.zeros((), device=self.device, dtype=torch.float64)
        terms = torch.zeros(len(self.term_names), device=self.device, dtype=torch.float64)
        for s in range(0, n, chunk):
            xb, yb = x_in[0][s:s + chunk], y[s:s + chunk]
            out = self.model(xb, rng=rng) if labels is None else self.model(xb, rng=rng, labels=labels[s:s + chunk])
            b = yb.shape[0]
            w = b / self.model.report_divisor(b)  # a batch mean × its size, or a batch sum as it is
            tot += (self.model.reconstruction(out, yb, self.spec.loss) + out.penalty).double() * w
            pen += out.penalty.double() * w
            for t, name in enumerate(self.term_names):
                terms[t] += out.terms[name].double() * w
        return (tot / n).float().reshape(1), (pen / n).float().reshape(1), (terms / n).float().reshape(1, -1)

    # -- state ---------------------------------------------------------------------------------
    def export_models(self) -> list[torch.nn.Module]:
        return [self.model]

    def set_lr(self, lr: float) -> None:
        """The learning rate of the steps from now on (a schedule's)."""
        self.lr = lr
        set_lr(self.opt, lr)

    def weights(self) -> list[dict[str, torch.Tensor]]:
        """A copy of each model's state dict (early stopping's best weights)."""
        return [{k: v.detach().clone() for k, v in self.model.state_dict().items()}]

    def set_weights(self, weights: list[dict[str, torch.Tensor]]) -> None:
        """Put back weights :meth:`weights` copied (the optimizer's state is left as it is, as Keras does)."""
        (w,) = weights
        self.model.load_state_dict(w)

    def state(self) -> list[dict[str, torch.Tensor]]:
        d = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        d.update(state_tensors(self.opt, self.model, self.train_cfg, self.t))
        return [d]

    def load_state(self, states: list[dict[str, torch.Tensor]]) -> None:
        (d,) = states
        self.model.load_state_dict({k: v for k, v in d.items() if not k.startswith(("adam.", "opt."))})
        self.t = load_state_tensors(self.opt, self.model, self.train_cfg, d)


# -- the fast path ------------------------------------------------------------------------------

def _act_forward_(name: str, z: torch.Tensor) -> torch.Tensor:
    """Apply a Keras activation to ``z`` (in place where PyTorch allows); returns the output."""
    if name == "relu":
        return z.relu_()
    if name == "sigmoid":
        return z.sigmoid_()
    if name == "tanh":
        return z.tanh_()
    if name == "linear":
        return z
    if name == "elu":
        return F.elu(z)
    if name == "selu":
        return F.selu(z)
    if name == "softplus":
        return F.softplus(z)
    if name == "leaky_relu":
        return F.leaky_relu(z, 0.2)
    raise ValueError(name)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _act_backward(name: str, grad: torch.Tensor, z: torch.Tensor | None, a: torch.Tensor) -> torch.Tensor:
    """dL/dz from dL/da, using the same ATen kernels autograd uses (so both paths agree)."""
    if name == "relu":
        return aten.threshold_backward(grad, a, 0)
    if name == "sigmoid":
        return aten.sigmoid_backward(grad, a)
    if name == "tanh":
        return aten.tanh_backward(grad, a)
    if name == "linear":
        return grad
    if name == "elu":
        return aten.elu_backward(grad, 1.0, 1.0, 1.0, True, a)
    if name == "selu":
        return aten.elu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1.0, True, a)
    if name == "softplus":
        return aten.softplus_backward(grad, z, 1.0, 20.0)
    if name == "leaky_relu":
        return aten.leaky_relu_backward(grad, a, 0.2, True)
    raise ValueError(name)


_NEEDS_Z = {"softplus"}  # activations whose backward needs the input, not just the output


def _bce_logits_terms(z: torch.Tensor, y: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
    """The elementwise BCE-with-logits of ``z: (k, B, D)``, from ``sig = sigmoid(z)``.

    ``softplus(z) − z·y = max(z, 0) − z·y − log σ(|z|)`` and ``σ(|z|) = ½ + |σ(z) − ½|`` (in
    [½, 1], so its log is accurate to float rounding for every z). This reuses the sigmoid the
    gradient needs and replaces PyTorch's ``log_sigmoid`` kernel (``log1p(exp(−|z|))``, several
    times slower on CPU) by one ``log``; the mean agrees with ``binary_cross_entropy_with_logits``
    to float rounding (~1e-7 relative).
    """
    q = torch.sub(sig, 0.5).abs_().add_(0.5).log_()
    return z.clamp_min(0.0).addcmul_(z, y, value=-1.0).sub_(q)


def _per_model(t: torch.Tensor) -> torch.Tensor:
    """The mean of each model's ``t[m]``, one full reduction per model: the same bits whatever
    the number of models stacked beside it (a reduction over dims of a stacked tensor may take
    another summation order for another M)."""
    return torch.stack([t[m].mean() for m in range(t.shape[0])])


def distinct_tensors(ts: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[int]]:
    """The distinct tensors of ``ts`` (by identity, in first-seen order) and, per entry of ``ts``,
    the index of its tensor among them: models that share an input tensor share its rows."""
    uniq: list[torch.Tensor] = []
    where: list[int] = []
    for x in ts:
        for j, u in enumerate(uniq):
            if u is x:
                where.append(j)
                break
        else:
            uniq.append(x)
            where.append(len(uniq) - 1)
    return uniq, where


def _runs(labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """Maximal runs of equal labels: ["a","a","b"] → [(0,2,"a"), (2,3,"b")]."""
    out: list[tuple[int, int, str]] = []
    for i, lab in enumerate(labels):
        if out and out[-1][2] == lab and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1, lab)
        else:
            out.append((i, i + 1, lab))
    return out


def stack_key(spec: ModelSpec) -> tuple:
    """Models with the same key can share a :class:`StackedDenseStepper`."""
    if not can_stack(spec):
        return ("plain", id(spec))
    plan = fast_plan(spec)
    return ("dense", plan.sizes, plan.code_layer, plan.code_l1_term)


#: The reconstruction losses the fast path implements (Keras' BCE, both paths, and MSE).
FAST_LOSSES = ("bce", "mse")


def can_stack(spec: ModelSpec) -> bool:
    """Whether the fast path implements every field of this model (its family says which), its
    loss and its optimizer (Keras Adam only); anything else trains on the plain autograd path,
    never with a field ignored."""
    if spec.optimizer is not None and getattr(spec.optimizer, "name", "keras_adam") != "keras_adam":
        return False  # the fast path implements Keras Adam only
    return spec.loss in FAST_LOSSES and bool(family_of(spec.model_cfg).supports_fast(spec.model_cfg))


def fast_plan(spec: ModelSpec) -> FastPlan:
    """What the fast path trains for ``spec`` (its config's :meth:`~aelab.models.base.ModelConfig.fast_plan`)."""
    plan = spec.model_cfg.fast_plan()
    if plan is None:
        raise ValueError(f"model family {spec.model_cfg.family!r} says the fast path takes this config, "
                         "but its fast_plan() is None")
    return plan


def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """A fast-path model's layers: its ``nn.Linear`` modules in module order (see FastPlan)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


class StackedDenseStepper(_Stepper):
    """M dense autoencoders with identical layer sizes, trained side by side.

    Weights ``W[l]: (M, in, out)`` and biases ``b[l]: (M, 1, out)`` are views into one flat
    buffer; so are their gradients and Adam moments, and one Adam call (a C loop on a CPU)
    updates everything.
    Activations, the loss and the L1 penalty may differ per model.
    """

    def __init__(self, specs: Sequence[ModelSpec], lr: float, beta1: float, beta2: float, eps: float,
                 device, fused_adam: bool | None = None, num_threads: int | None = None) -> None:
        if not specs:
            raise ValueError("no models to stack")
        keys = {stack_key(s) for s in specs}
        if len(keys) != 1 or not all(can_stack(s) for s in specs):
            raise ValueError("StackedDenseStepper needs dense models with identical layer sizes")
        self.specs = list(specs)
        self.n_models = M = len(specs)
        self.device = dev = torch.device(device)
        self.hp = (lr, beta1, beta2, eps)
        self.fused_adam = fused_adam  # None: PyTorch's fused kernel on a GPU, Keras' formula on a CPU
        # intra-op threads for a step on the CPU (see _Threads); 0 leaves PyTorch's setting alone
        self.threads = _Threads(_default_threads(dev) if num_threads is None else num_threads)
        plans = [fast_plan(s) for s in specs]
        sizes = list(plans[0].sizes)
        self.sizes = sizes
        self.L = len(sizes) - 1
        self.code_layer = plans[0].code_layer  # index of the code layer's output among layers
        # per layer, per model activation; grouped into runs of equal activations
        self.acts = [[p.activations[l] for p in plans] for l in range(self.L)]
        self.act_runs = [_runs(a) for a in self.acts]
        out_kind = []
        for s, p in zip(specs, plans):
            last = p.activations[-1]
            out_kind.append("logits" if (s.loss == "bce" and last == "sigmoid") else s.loss)
        self.out_runs = _runs(out_kind)
        # per-step decisions made once: the Python around a ~0.4 ms step is a visible share of it
        self._out_kinds = {k for (_, _, k) in self.out_runs}
        self._single_act = [runs[0][2] if len(runs) == 1 else None for runs in self.act_runs]
        self._need_z = [any(act in _NEEDS_Z for act in self.acts[l]) for l in range(self.L)]
        self._c = dev.type == "cpu" and ckernels.load() is not None  # the fused C kernels apply
        lams = [p.code_l1 for p in plans]
        self.has_penalty = any(l > 0 for l in lams)
        self.term_names = [plans[0].code_l1_term] if self.has_penalty else []
        self.writes_terms = False  # its one term is pen_out itself
        self.lam = torch.tensor(lams, device=dev, dtype=torch.float32).view(M, 1, 1)
        # hidden layers whose backward (and the code layer's L1 penalty) one C call does
        self._hid_c = [self._c and all(a in ckernels.HIDDEN_ACTS for a in self.acts[l]) for l in range(self.L - 1)]
        self._hid_codes = [ckernels.act_codes(self.acts[l]) if self._hid_c[l] else None for l in range(self.L - 1)]
        self._pen_c = self.has_penalty and self._hid_c[self.code_layer]
        self._lam_flat = self.lam.view(-1).contiguous()
        self._coef: dict[int, torch.Tensor] = {}  # λ/B per batch size B (flat, for the C kernels)
        self._lam_b: dict[int, torch.Tensor] = {}  # λ/B per batch size B, (M, 1, 1)
        self._bufs: dict[tuple, torch.Tensor] = {}  # tensors kept between steps (see _buf)

        # one flat buffer for parameters, one for gradients, two for Adam
        shapes = [(M, i, o) for i, o in zip(sizes[:-1], sizes[1:])] + [(M, 1, o) for o in sizes[1:]]
        total = sum(math.prod(s) for s in shapes)
        self.flat = torch.zeros(total, device=dev)
        self.gflat = torch.zeros(total, device=dev)
        self.mflat = torch.zeros(total, device=dev)
        self.vflat = torch.zeros(total, device=dev)
        self.step_t = torch.zeros((), device=dev)  # Adam's step count where PyTorch's fused kernel reads it
        self._flat4 = (self.flat, self.gflat, self.mflat, self.vflat)
        self.t = 0

        def views(buf):
            out, off = [], 0
            for s in shapes:
                n = math.prod(s)
                out.append(buf[off:off + n].view(s))
                off += n
            return out[: self.L], out[self.L:]

        self.W, self.b = views(self.flat)
        self._Wt = [w.transpose(1, 2) for w in self.W]  # views: they follow the in-place updates
        self.gW, self.gb = views(self.gflat)
        self.mW, self.mb = views(self.mflat)
        self.vW, self.vb = views(self.vflat)
        with torch.no_grad():
            for m, spec in enumerate(specs):
                lins = _linears(build_initial_model(spec))
                for l, lin in enumerate(lins):
                    self.W[l][m].copy_(lin.weight.t())
                    self.b[l][m, 0].copy_(lin.bias)

    # -- one step ------------------------------------------------------------------------------
    def _inputs(self, x_in: Sequence[torch.Tensor], idx: torch.Tensor | None, s: slice | None = None,
                known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The group's input batch ``(M, B, D)``; models sharing an input tensor share its rows.

        ``known = (tensor, rows)``: rows of ``tensor`` already gathered for this batch (the targets),
        reused instead of gathered again.
        """
        uniq, where = distinct_tensors(x_in)
        rows = [(known[1] if known is not None and u is known[0] else
                 _rows(u, idx) if idx is not None else u[s]) for u in uniq]
        if len(uniq) == 1:
            one = rows[0].unsqueeze(0)
            return one if self.n_models == 1 else one.expand(self.n_models, *rows[0].shape)
        return torch.stack([rows[j] for j in where], out=self._buf("inputs", (self.n_models, *rows[0].shape)))

    def _activate(self, l: int, z: torch.Tensor) -> torch.Tensor:
        """Layer ``l``'s activations applied to ``z: (M, B, out)``, in place where PyTorch allows."""
        act = self._single_act[l]
        if act is not None:  # one activation for the whole group: no slicing
            return _act_forward_(act, z)
        for s, e, act in self.act_runs[l]:
            res = _act_forward_(act, z[s:e])
            if res.data_ptr() != z[s:e].data_ptr():
                z[s:e] = res
        return z

    def _forward(self, a0: torch.Tensor):
        """Returns pre-activations zs[l] (kept only where backward needs them) and outputs as[l]."""
        zs: list[torch.Tensor | None] = []
        outs: list[torch.Tensor] = []
        a = a0
        last = self.L - 1
        for l in range(self.L):
            z = torch.baddbmm(self.b[l], a, self.W[l], out=self._buf(("z", l), (a.shape[0], a.shape[1], self.sizes[l + 1])))
            if l == last:
                kinds = self._out_kinds
                if kinds == {"logits"}:  # the loss and its gradient need only z
                    zs.append(z)
                    a = z
                else:
                    # keep z only when something needs it: the logits path or an activation
                    # whose backward reads its input; otherwise activate in place (no copy)
                    keep_z = "logits" in kinds or self._need_z[l]
                    zs.append(z if keep_z else None)
                    a = self._activate(l, z.clone() if keep_z else z)
            else:
                zs.append(z.clone() if self._need_z[l] else None)
                a = self._activate(l, z)
            outs.append(a)
        return zs, outs

    def _output_loss_and_grad(self, z: torch.Tensor, a: torch.Tensor, y: torch.Tensor,
                              loss_out: torch.Tensor | None, need_grad: bool) -> torch.Tensor | None:
        """Per-model batch loss into ``loss_out`` (M,), and dL/dz of the output layer."""
        M, B, D = a.shape
        scale = 1.0 / (B * D)
        whole = len(self.out_runs) == 1  # one kind for the group: no slicing, no copies
        if whole and loss_out is not None:
            done, dz = self._fused_output(z, a, y, loss_out, need_grad)
            if done:
                return dz
        dz = None if (whole or not need_grad) else torch.empty_like(a)

        def put(s_: int, e_: int, value: torch.Tensor) -> None:
            nonlocal dz
            if whole:
                dz = value
            else:
                dz[s_:e_] = value

        # A model's loss value may not depend on what it trains beside (see design note 13): in a
        # group that mixes output kinds, each slice's value comes from the C kernel a group of one
        # kind uses (it sums each model alone), or, without it, from one reduction per model.
        c_slices = bool(self._c and y.is_contiguous() and (loss_out is None or loss_out.is_contiguous()))
        for s, e, kind in self.out_runs:
            zz, aa = (None if z is None else z[s:e]), a[s:e]
            yy = y.expand_as(aa)
            ys = y if y.dim() == aa.dim() - 1 else y[s:e]  # shared targets, or each model's own
            if kind == "logits":
                sig = torch.sigmoid(zz)
                if loss_out is not None and c_slices:
                    # the C pass the whole-group path makes (its sum differs with and without the
                    # gradient); its dz is (σ(z) − y) / n from PyTorch's sigmoid, as below
                    if need_grad:
                        dzs = self._buf("dz_slice", sig.shape)  # put() copies it into dz at once
                        ckernels.out_logits(zz.contiguous(), ys, loss_out[s:e], sig, dzs)
                        put(s, e, dzs)
                        continue
                    ckernels.out_logits(zz.contiguous(), ys, loss_out[s:e])
                elif loss_out is not None:
                    loss_out[s:e] = self._model_means(_bce_logits_terms(zz, yy, sig))
                if need_grad:  # (σ(z) − y) / n: autograd's BCE-with-logits backward, op for op
                    put(s, e, sig.sub_(yy).div_(B * D))
            elif kind == "bce":
                p = aa.clamp(EPS, 1.0 - EPS)
                if loss_out is not None:
                    if c_slices:
                        # the value only (relu_out concerns the gradient, computed below)
                        ckernels.out_clipped_bce(aa.contiguous(), ys, EPS, 1.0 - EPS, False, None, loss_out[s:e])
                    else:
                        # Keras' −mean[y·log p + (1−y)·log(1−p)]: PyTorch's fused BCE forward is
                        # ~5× slower on CPU (scalar logs), so two vectorised logs, per model
                        log_q = torch.rsub(p, 1.0).log_()
                        t = torch.log(p).sub_(log_q).mul_(yy).add_(log_q).neg_()
                        loss_out[s:e] = self._model_means(t)
                if need_grad:
                    # The kernels autograd runs for losses.bce_clipped, in its order (so the fast
                    # and plain paths agree to the bit): BCE backward, ÷ numel, then clamp's
                    # backward — zero where the output was clipped, i.e. where p ≠ output.
                    g = aten.binary_cross_entropy_backward(self._one(p), p, yy, None, 0).div_(B * D)
                    g.mul_(torch.eq(aa, p))
                    put(s, e, self._act_bwd_slice(self.L - 1, s, e, g, zz, aa))
            else:  # mse
                diff = aa - yy
                if loss_out is not None:
                    loss_out[s:e] = self._model_means(diff.square())
                if need_grad:
                    put(s, e, self._act_bwd_slice(self.L - 1, s, e, diff.mul_(2.0 * scale), zz, aa))
        return dz

    def _fused_output(self, z, a, y, loss_out, need_grad: bool) -> tuple[bool, torch.Tensor | None]:
        """The output layer's loss (into ``loss_out``) and dL/dz in one C pass, if it applies.

        Returns ``(done, dz)``; ``(False, None)`` with nothing done when the C kernels are not loaded
        or the group's output kind has no fused kernel (MSE). ``dz`` is None without ``need_grad``.
        """
        if not (self._c and y.is_contiguous() and loss_out.is_contiguous()):
            return False, None
        kind = self.out_runs[0][2]
        if kind == "logits":
            # the gradient from PyTorch's sigmoid, (σ(z) − y) / n as autograd computes it for the
            # plain path, so both train to the same bits; the C pass adds the loss value
            if not need_grad:
                ckernels.out_logits(z, y, loss_out)
                return True, None
            sig, dz = self._buf("sigmoid", z.shape), self._buf("dz", z.shape)
            ckernels.out_logits(z, y, loss_out, torch.sigmoid(z, out=sig), dz)
            return True, dz
        if kind == "bce":
            relu_out = self._single_act[self.L - 1] == "relu"
            dz = self._buf("dz", a.shape) if need_grad else None
            ckernels.out_clipped_bce(a, y, EPS, 1.0 - EPS, relu_out, dz, loss_out)
            if need_grad and not relu_out:  # the output activation's backward, by PyTorch
                dz = self._act_bwd_slice(self.L - 1, 0, self.n_models, dz, z, a)
            return True, dz
        return False, None

    def _buf(self, key, shape) -> torch.Tensor:
        """A tensor kept between steps for ``key`` and ``shape``: a fresh tensor of a few hundred kB
        every step is fresh memory from the OS, and its page faults cost more than the kernel."""
        k = (key, shape)
        t = self._bufs.get(k)
        if t is None:
            t = self._bufs[k] = torch.empty(shape, device=self.device)
        return t

    def _one(self, like: torch.Tensor) -> torch.Tensor:
        """A tensor of ones shaped like ``like`` without writing them (a stride-0 view)."""
        return torch.ones((), device=like.device, dtype=like.dtype).expand_as(like)

    def _act_bwd_slice(self, l: int, s: int, e: int, grad, z, a):
        runs = [(rs, re, act) for rs, re, act in self.act_runs[l] if max(rs, s) < min(re, e)]
        if len(runs) == 1:  # one activation over the slice: no copy
            return _act_backward(runs[0][2], grad, z, a)
        out = torch.empty_like(grad)
        for rs, re, act in self.act_runs[l]:
            lo, hi = max(rs, s), min(re, e)
            if lo < hi:
                out[lo - s:hi - s] = _act_backward(act, grad[lo - s:hi - s],
                                                   None if z is None else z[lo - s:hi - s], a[lo - s:hi - s])
        return out

    # How reported values are reduced per model: one full reduction per model, so a run's value
    # does not depend on the models stacked beside it. (The CUDA-graph step overrides both with one
    # batched reduction: M reductions would be 2M more kernels per step.)
    @staticmethod
    def _model_means(t: torch.Tensor) -> torch.Tensor:
        return _per_model(t)

    @staticmethod
    def _model_sums(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[m].sum() for m in range(t.shape[0])])

    def _penalty(self, h: torch.Tensor) -> torch.Tensor:
        """(M,) λ·Σ|h| / B per model."""
        return self._model_sums(h.abs()).mul_(self.lam.view(-1)).div_(h.shape[1])

    def _backward(self, a0: torch.Tensor, zs, outs, dz: torch.Tensor, B: int, pen_out: torch.Tensor | None,
                  loss_out: torch.Tensor | None) -> None:
        """Every layer's weight and bias gradient into ``gW``/``gb`` from the output layer's ``dz``;
        the code layer's L1 penalty gradient added on the way (with the C kernels, its value also
        into ``pen_out`` and ``loss_out``). Without them (``_hid_c`` off): autograd's operations in
        autograd's order, nothing read by the host (the CUDA-graph step uses it as it is)."""
        for l in range(self.L - 1, -1, -1):
            a_prev = outs[l - 1] if l > 0 else a0
            torch.bmm(a_prev.transpose(1, 2), dz, out=self.gW[l])
            torch.sum(dz, dim=1, keepdim=True, out=self.gb[l])
            if l == 0:
                break
            da = torch.bmm(dz, self._Wt[l])
            pen_here = self.has_penalty and l - 1 == self.code_layer
            if self._hid_c[l - 1]:  # one C pass: penalty value and gradient, activation backward
                if pen_here:
                    coef = self._coef.get(B)
                    if coef is None:
                        coef = self._coef[B] = self._lam_flat / B
                    dz = ckernels.hidden_bwd(da, outs[l - 1], self._hid_codes[l - 1], coef,
                                             self._lam_flat, pen_out, loss_out)
                else:
                    dz = ckernels.hidden_bwd(da, outs[l - 1], self._hid_codes[l - 1])
                continue
            if pen_here:
                da.add_(torch.sign(outs[l - 1]).mul_(self._lam_over(B)))
            if len(self.act_runs[l - 1]) == 1:
                dz = _act_backward(self.act_runs[l - 1][0][2], da, zs[l - 1], outs[l - 1])
            else:
                dz = self._act_bwd_slice(l - 1, 0, self.n_models, da, zs[l - 1], outs[l - 1])

    def _lam_over(self, B: int) -> torch.Tensor:
        """λ/B as (M, 1, 1), made once per batch size."""
        t = self._lam_b.get(B)
        if t is None:
            t = self._lam_b[B] = self.lam / B
        return t

    def _train_step(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, idx: torch.Tensor,
                    loss_out: torch.Tensor, pen_out: torch.Tensor, terms_out: torch.Tensor | None = None,
                    rng: torch.Generator | None = None) -> None:
        # its one term, the activity L1, is the penalty itself: the loop copies it, no per-step cost
        yb = _rows(y, idx)
        a0 = self._inputs(x_in, idx, known=(y, yb))
        B = yb.shape[0]
        zs, outs = self._forward(a0)
        dz = self._output_loss_and_grad(zs[-1], outs[-1], yb, loss_out, need_grad=True)
        if self.has_penalty and not self._pen_c:
            pen = self._penalty(outs[self.code_layer])
            pen_out.copy_(pen)
            loss_out.add_(pen)
        self._backward(a0, zs, outs, dz, B, pen_out, loss_out)
        self.t += 1
        lr, b1, b2, eps = self.hp
        if self._c and not self.fused_adam:  # the C loop, straight to the flat buffers
            ckernels.keras_adam_flat(self._flat4, keras_lr_t(lr, b1, b2, self.t), b1, b2, eps)
            return
        keras_adam_step_(self.flat, self.gflat, self.mflat, self.vflat, self.step_t, self.t,
                         lr, b1, b2, eps, fused=self.fused_adam)

    def evaluate(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, chunk: int = EVAL_CHUNK):
        """(M,) mean loss (penalty included) and (M,) mean penalty over the whole set."""
        with self.threads:
            return self._evaluate(x_in, y, chunk)

    @torch.inference_mode()
    def _evaluate(self, x_in: Sequence[torch.Tensor], y: torch.Tensor, chunk: int):
        n = y.shape[0]
        M = self.n_models
        tot = torch.zeros(M, device=self.device, dtype=torch.float64)
        pen = torch.zeros(M, device=self.device, dtype=torch.float64)
        buf = torch.empty(M, device=self.device)
        for s in range(0, n, chunk):
            sl = slice(s, min(s + chunk, n))
            a0 = self._inputs(x_in, None, sl)
            yb = y[sl]
            b = yb.shape[0]
            zs, outs = self._forward(a0)
            self._output_loss_and_grad(zs[-1], outs[-1], yb, buf, need_grad=False)
            tot += buf.double() * b
            if self.has_penalty:
                p = self._penalty(outs[self.code_layer]).double() * b
                tot += p
                pen += p
        pen = (pen / n).float()
        return (tot / n).float(), pen, pen.reshape(-1, 1)[:, :len(self.term_names)]

    # -- state ---------------------------------------------------------------------------------
    def _names(self) -> list[tuple[str, str]]:
        """(linear weight name, bias name) per layer, as the family's model's state_dict() names them."""
        model = build_model(self.specs[0].model_cfg)
        return [(f"{name}.weight", f"{name}.bias") for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)]

    def export_models(self) -> list[torch.nn.Module]:
        models = []
        for m, spec in enumerate(self.specs):
            model = build_model(spec.model_cfg).to(self.device)
            with torch.no_grad():
                for l, lin in enumerate(_linears(model)):
                    lin.weight.copy_(self.W[l][m].t())
                    lin.bias.copy_(self.b[l][m, 0])
            models.append(model)
        return models

    def state(self) -> list[dict[str, torch.Tensor]]:
        names = self._names()
        out = []
        for m in range(self.n_models):
            d: dict[str, torch.Tensor] = {}
            for l, (wn, bn) in enumerate(names):
                for prefix, Ws, bs in (("", self.W, self.b), ("adam.m.", self.mW, self.mb), ("adam.v.", self.vW, self.vb)):
                    d[prefix + wn] = Ws[l][m].t().contiguous().clone()
                    d[prefix + bn] = bs[l][m, 0].clone()
            d["adam.t"] = torch.tensor(self.t, dtype=torch.int64)
            out.append(d)
        return out

    def weights(self) -> list[dict[str, torch.Tensor]]:
        """A copy of each model's weights, as its state dict names them (early stopping's best weights)."""
        return [{k: v for k, v in d.items() if not k.startswith("adam.")} for d in self.state()]

    def set_weights(self, weights: list[dict[str, torch.Tensor]]) -> None:
        """Put back weights :meth:`weights` copied; Adam's moments are left as they are (as Keras does)."""
        names = self._names()
        with torch.no_grad():
            for m, d in enumerate(weights):
                for l, (wn, bn) in enumerate(names):
                    self.W[l][m].copy_(d[wn].t())
                    self.b[l][m, 0].copy_(d[bn])

    def load_state(self, states: list[dict[str, torch.Tensor]]) -> None:
        names = self._names()
        ts = {int(d["adam.t"]) for d in states}
        if len(ts) != 1:
            raise ValueError("the models of a group are at different steps")
        with torch.no_grad():
            for m, d in enumerate(states):
                for l, (wn, bn) in enumerate(names):
                    for prefix, Ws, bs in (("", self.W, self.b), ("adam.m.", self.mW, self.mb), ("adam.v.", self.vW, self.vb)):
                        Ws[l][m].copy_(d[prefix + wn].t())
                        bs[l][m, 0].copy_(d[prefix + bn])
        self.t = ts.pop()
        self.step_t.fill_(float(self.t))
