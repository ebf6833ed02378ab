"""aelab's fused CPU kernels (``_kernels.c``): compiled on first use, cached, called through ctypes.

Why: a training step of the seed's models on one CPU core spends as long in the elementwise work
around the 784-wide output layer (sigmoid, loss value, loss gradient, clip masks: 6–12 PyTorch
kernels, each a full pass over memory plus its dispatch) and in Adam as in its matmuls. One C loop
per job does it in a single pass. The matmuls stay with PyTorch (its BLAS is as fast as it gets).

Why this way: the kernels are ~150 lines of plain C99 with no PyTorch headers, so any C compiler
builds them in well under a second — unlike ``torch.utils.cpp_extension`` (a minute of C++
compilation against PyTorch's headers) or ``torch.compile`` (measured here: 19 s to compile the
output-layer function, and slower than eager at this size). ctypes (standard library) calls them
with no binding code. The package stays pure Python: without a compiler every function below
falls back to PyTorch operations, which for Adam, the clipped-BCE gradient and the hidden-layer
backward are the *same* float operations in the same order, so training gives the same bits either
way (tested). Loss values (reported, never differentiated) use the C file's own exp/log (~2 ulp)
and sum in another order, so they differ from PyTorch's by rounding (~1e-6).

Environment: ``AELAB_KERNELS=0`` disables the C library; ``AELAB_KERNEL_ARCH=portable`` compiles it
for the baseline instruction set instead of this CPU's (the same bits: the C code fixes its own
summation order and rounds no fused multiply-add, so the vector width changes nothing — tested);
``CC`` picks the compiler (default
``cc``); the library is cached under ``$XDG_CACHE_HOME/aelab/kernels`` (``~/.cache/...``), keyed
by the source, the flags, the compiler and the CPU, and written atomically.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .._paths import cache_root

_SRC = Path(__file__).with_name("_kernels.c")
# -ffp-contract=off: no fused multiply-adds, so the C code rounds exactly like PyTorch's separate
# operations (the bit-for-bit contract above). -fno-trapping-math / -fno-math-errno change no
# result; they let the compiler turn the branch-free code into vector selects.
_FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
_ARCH_FLAGS = [["-march=native", "-mprefer-vector-width=512"], ["-march=native"], []]  # the CPU's vector units if the compiler knows them

_lib: ctypes.CDLL | None = None
_tried = False
_why_not = ""
_arch = ""  # the -march flags the loaded library was built with ("" = the compiler's baseline)

_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_f = ctypes.c_float
_SIGNATURES = {
    "out_logits": [_p, _p, _p, _i64, _i64, _i64, _f, _p, _p],
    "out_clipped_bce": [_p, _p, _i64, _i64, _i64, _f, _f, _f, ctypes.c_int, _p, _p],
    "keras_adam": [_p, _p, _p, _p, _i64, _f, _f, _f, _f],
    "gather_rows": [_p, _p, _i64, _i64, _p],
    "hidden_bwd": [_p, _p, _i64, _i64, _p, _p, _p, _f, _p, _p, _p],
    "conv1_fwd": [_p, _p, _f, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _p],
    "conv1_bwd_input": [_p, _p, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _p],
    "conv1_bwd_weight": [_p, _p, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _p, _p],
    "sum_rows": [_p, _i64, _i64, _p],
}




def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler_id(cc: list[str]) -> str:
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _build(cc: list[str]) -> Path:
    """Compile (or find cached) and return the shared library's path; raises OSError on failure."""
    src = _SRC.read_bytes()
    ident = _compiler_id(cc)
    if not ident:
        raise OSError(f"no C compiler ({cc[0]!r} does not run)")
    global _arch
    errors = []
    portable = os.environ.get("AELAB_KERNEL_ARCH", "native") == "portable"
    for arch in ([[]] if portable else _ARCH_FLAGS):
        _arch = " ".join(arch)
        flags = _FLAGS + arch
        key = hashlib.sha256(b"\0".join([src, " ".join(cc + flags).encode(), ident.encode(),
                                         _cpu_id().encode(), platform.machine().encode()])).hexdigest()[:20]
        out = cache_root() / "kernels" / f"aelab_kernels-{key}.so"
        if out.exists():
            return out
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".so", dir=out.parent)
        except OSError as e:
            raise OSError(f"cannot write the kernel cache {out.parent} ({e.strerror or e}); "
                          "set XDG_CACHE_HOME to a writable directory") from None
        os.close(fd)
        try:
            r = subprocess.run([*cc, *flags, "-o", tmp, str(_SRC)], capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, out)  # atomic: a concurrent process sees the whole file or none
                return out
            errors.append((r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"])
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError(f"{cc[0]} could not compile {_SRC.name}: {errors[-1][0]}")


def disabled() -> bool:
    """Whether the user turned the C kernels off (``AELAB_KERNELS=0``)."""
    return os.environ.get("AELAB_KERNELS", "1") == "0"


def load() -> ctypes.CDLL | None:
    """The compiled library, or ``None`` (disabled, no compiler, or a build error; see :func:`status`)."""
    global _lib, _tried, _why_not
    if _tried:
        return _lib
    _tried = True
    if disabled():
        _why_not = "disabled by AELAB_KERNELS=0"
        return None
    cc = shlex.split(os.environ.get("CC", "cc") or "cc")  # CC may carry flags, as make allows
    if shutil.which(cc[0]) is None:
        _why_not = f"no C compiler ({cc[0]!r} not found)"
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except OSError as e:
        _why_not = str(e)
        return None
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = None
    _lib = lib
    return lib


def why_not() -> str:
    """Why the library is not loaded ("" when it is)."""
    load()
    return _why_not


def arch() -> str:
    """The instruction set the loaded kernels were compiled for: "native" (this CPU's) or "baseline"."""
    return "" if load() is None else ("native" if _arch else "baseline")


def status() -> str:
    """One line for logs: which kernels the CPU engine uses."""
    return "fused C kernels" if load() is not None else f"PyTorch kernels only ({_why_not})"


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the C kernels can take these tensors: CPU, float32, contiguous, library loaded."""
    if load() is None:
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


# -- the kernels (the output-layer and hidden-layer ones need the library: the stepper has its own
# -- PyTorch path for them; Adam and the row gather fall back here) ---------------------------------

def out_logits(z: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, sig: torch.Tensor | None = None,
               dz: torch.Tensor | None = None) -> None:
    """Sigmoid output + BCE from logits, for ``z: (M, B, D)``, ``y: (B, D)`` or ``(M, B, D)``.

    ``loss[m] = mean(softplus(z) − z·y)``; with ``sig = torch.sigmoid(z)`` and ``dz`` also
    ``dz = (sig − y) / n`` (n = B·D), autograd's gradient to the bit. Needs :func:`usable`.
    """
    M = z.shape[0]
    n = z[0].numel()
    y_stride = 0 if y.dim() == z.dim() - 1 else n
    load().out_logits(_ptr(z), _ptr(y), _ptr(sig) if dz is not None else None, M, n, y_stride, float(n),
                      _ptr(dz), _ptr(loss))


def out_clipped_bce(a: torch.Tensor, y: torch.Tensor, lo: float, hi: float, relu_out: bool,
                    dz: torch.Tensor | None, loss: torch.Tensor) -> None:
    """Keras' clipped BCE of a non-sigmoid output ``a: (M, B, D)`` (see ``_kernels.c``).

    Needs :func:`usable`. ``dz`` receives PyTorch's gradient bit for bit (the autograd path's
    kernels, and with ``relu_out`` the relu's backward); ``loss`` the per-model mean.
    """
    M = a.shape[0]
    n = a[0].numel()
    y_stride = 0 if y.dim() == a.dim() - 1 else n
    load().out_clipped_bce(_ptr(a), _ptr(y), M, n, y_stride, lo, hi, float(n), int(relu_out),
                           _ptr(dz), _ptr(loss))


def keras_adam_(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, alpha: float,
                beta1: float, beta2: float, eps: float) -> None:
    """Keras' Adam update in place, as Keras writes it (``alpha`` = lr·√(1−β2ᵗ)/(1−β1ᵗ)).

    The C loop and the PyTorch fallback perform the same float operations in the same order.
    """
    if usable(p, g, m, v):
        keras_adam_flat((p, g, m, v), alpha, beta1, beta2, eps)
        return
    m.add_(torch.sub(g, m).mul_(1.0 - beta1))
    v.add_(torch.mul(g, g).sub_(v).mul_(1.0 - beta2))
    # PyTorch's float sqrt is not always correctly rounded on CPU (measured: 0.7% of values differ
    # by an ulp from IEEE sqrt); the square root of the double, rounded to float, always is.
    root = v.double().sqrt_().float() if v.device.type == "cpu" else v.sqrt()
    p.sub_(torch.mul(m, alpha).div_(root.add_(eps)))


#: Activations :func:`hidden_bwd` differentiates (the others go through PyTorch's kernels).
HIDDEN_ACTS = {"linear": 0, "relu": 1, "sigmoid": 2}  # tanh: PyTorch's tanh_backward rounds otherwise


def act_codes(acts: list[str]) -> torch.Tensor:
    """The per-model activation codes :func:`hidden_bwd` takes (every name in ``HIDDEN_ACTS``)."""
    return torch.tensor([HIDDEN_ACTS[a] for a in acts], dtype=torch.int32)


def hidden_bwd(da: torch.Tensor, h: torch.Tensor, acts: torch.Tensor, coef: torch.Tensor | None = None,
               lam: torch.Tensor | None = None, pen: torch.Tensor | None = None,
               loss: torch.Tensor | None = None) -> torch.Tensor:
    """A hidden layer's backward in place on ``da: (M, B, K)``, given the activation's output ``h``
    and each model's activation (``acts``, from :func:`act_codes`).

    The same float operations as PyTorch's ``threshold_backward`` / ``sigmoid_backward``, after
    adding ``sign(h)·coef[m]`` (the L1 activity penalty's gradient, ``coef = λ/B``) when ``coef``
    is given; then also ``pen[m] = λ·Σ|h|/B``, added to ``loss[m]``. Needs contiguous CPU float32
    tensors and the loaded library. Returns ``da``.
    """
    M, n = da.shape[0], da[0].numel()
    B = float(da.shape[1])
    load().hidden_bwd(da.data_ptr(), h.data_ptr(), M, n, acts.data_ptr(), _ptr(coef), _ptr(lam), B,
                      da.data_ptr(), _ptr(pen), _ptr(loss))
    return da


def keras_adam_flat(bufs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], alpha: float,
                    beta1: float, beta2: float, eps: float) -> None:
    """:func:`keras_adam_` for the engine's flat CPU float32 buffers ``(p, g, m, v)``, which it
    has already checked: no per-step checks, one foreign call."""
    p, g, m, v = bufs
    load().keras_adam(p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), p.numel(), alpha,
                    1.0 - beta1, 1.0 - beta2, eps)


def gather_rows(src: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``src[idx]`` for a 2-D ``src`` and in-range 1-D ``idx``: one single-threaded C loop on a
    CPU (safe on a background thread, it releases the GIL and starts no thread pool), else
    ``index_select``. Written into ``out`` when given (a contiguous tensor of the result's shape,
    dtype and device: reusing one spares the page faults of fresh memory, which cost more than the
    copy on some machines)."""
    shape = (idx.shape[0], src.shape[1])
    if out is None:
        out = torch.empty(shape, dtype=src.dtype, device=src.device)
    elif tuple(out.shape) != shape or out.dtype != src.dtype or out.device != src.device or not out.is_contiguous():
        raise ValueError(f"gather_rows: out must be a contiguous {src.dtype} tensor of shape {shape} on {src.device}")
    if usable(src) and idx.dtype == torch.int64 and idx.device.type == "cpu":
        idx = idx.contiguous()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= src.shape[0]):
            raise IndexError(f"row index out of range for {src.shape[0]} rows")
        load().gather_rows(_ptr(src), _ptr(idx), idx.shape[0], src.shape[1], _ptr(out))
        return out
    return torch.index_select(src, 0, idx, out=out)


# -- one-output-channel convolutions (the last layer of an image autoencoder) -----------------------
#: channels per vector in ``_kernels.c``'s conv1 kernels: they take C a multiple of it
CONV1_LANES = 16

_pool = None
_pool_size = 0


def _split(n: int, fn) -> None:
    """``fn(n0, n1)`` over ``[0, n)``, cut into as many parts as PyTorch's intra-op threads (the
    engine's thread policy sets them), the parts after the first on a small thread pool. The C
    calls release the GIL, so the parts run in parallel; every kernel's result is the same
    whatever the cut (see ``_kernels.c``)."""
    global _pool, _pool_size
    parts = max(1, min(torch.get_num_threads(), n, os.cpu_count() or 1))
    if parts == 1:
        fn(0, n)
        return
    if _pool_size < parts - 1:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(parts - 1, thread_name_prefix="aelab-conv1"), parts - 1
    cuts = [n * i // parts for i in range(parts + 1)]
    futs = [_pool.submit(fn, cuts[i], cuts[i + 1]) for i in range(1, parts)]
    fn(cuts[0], cuts[1])
    for f in futs:
        f.result()


def conv1_usable(x: torch.Tensor, channels: int) -> bool:
    """Whether :func:`conv1_forward` takes a batch ``x`` of ``channels`` channels: the library is
    loaded, the input a CPU float32 tensor, and the channels a multiple of ``CONV1_LANES``."""
    return (channels % CONV1_LANES == 0 and x.device.type == "cpu" and x.dtype == torch.float32
            and load() is not None)


def conv1_forward(x: torch.Tensor, wt: torch.Tensor, bias: float, pad: int, k: int) -> torch.Tensor:
    """``y (N, 1, OH, OW)`` of a stride-1 convolution with one output channel: ``x (N, C, H, W)`` in
    channels-last memory, ``wt (K, K, C)`` the repacked kernel, zero padding ``pad`` on each side."""
    N, C, H, W = x.shape
    OH, OW = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    y = torch.empty((N, 1, OH, OW), dtype=x.dtype, memory_format=torch.channels_last)
    lib = load()
    xp, wp, yp = x.data_ptr(), wt.data_ptr(), y.data_ptr()
    _split(N, lambda n0, n1: lib.conv1_fwd(xp, wp, bias, H, W, C, k, pad, n0, n1, yp))
    return y


def conv1_backward(g: torch.Tensor, x: torch.Tensor, wt: torch.Tensor, pad: int, k: int, need_input: bool,
                   need_weight: bool) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """:func:`conv1_forward`'s gradients from ``g (N, 1, OH, OW)``: ``(gx, gwt (K, K, C), gbias ())``,
    None where not needed. The kernel and bias gradients are summed over the images in order."""
    N, C, H, W = x.shape
    g = g.contiguous()  # one channel: (N, OH, OW) in memory, whatever the strides say
    lib = load()
    gx = gwt = gb = None
    gp, xp, wp = g.data_ptr(), x.data_ptr(), wt.data_ptr()
    if need_input:
        gx = torch.empty_like(x, memory_format=torch.channels_last)
        gxp = gx.data_ptr()
        _split(N, lambda n0, n1: lib.conv1_bwd_input(gp, wp, H, W, C, k, pad, n0, n1, gxp))
    if need_weight:
        per_w = torch.empty((N, k, k, C), dtype=x.dtype)
        per_b = torch.empty(N, dtype=x.dtype)
        pw, pb = per_w.data_ptr(), per_b.data_ptr()
        _split(N, lambda n0, n1: lib.conv1_bwd_weight(gp, xp, H, W, C, k, pad, n0, n1,
                                                      pw + 4 * n0 * k * k * C, pb + 4 * n0))
        gwt = torch.empty((k, k, C), dtype=x.dtype)
        gb = torch.empty((), dtype=x.dtype)
        lib.sum_rows(pw, N, k * k * C, gwt.data_ptr())  # the images' sums added in order
        lib.sum_rows(pb, N, 1, gb.data_ptr())
    return gx, gwt, gb
