"""Will a model fit in memory? An estimate before anything is allocated, and one line when it will not.

A layer of a billion units asks PyTorch for terabytes; without a check the user meets an allocator's
traceback (or, where the system overcommits, a machine that swaps and freezes). Before a run
trains, :func:`check_fits` estimates what training needs — the weights, their gradients and
Adam's two moments (4 float32 numbers per parameter), plus one batch of activations (each layer's
output, its pre-activation and its gradient; or an evaluation chunk's, if larger) — from the config alone (the families give their
parameter counts, :meth:`~aelab.models.base.ModelConfig.parameter_count`) and compares it with the
memory the device has available. :func:`out_of_memory_line` turns an allocation failure the
estimate did not foresee into one line at the CLI's boundary.
"""

from __future__ import annotations

import os
import re
from typing import Optional

import torch

from ..errors import ConfigError
from .steppers import EVAL_CHUNK

FLOAT32 = 4
#: numbers per parameter while training: the weight, its gradient, Adam's first and second moments
PER_PARAMETER = 4
#: numbers per activation value: the output, the pre-activation kept for backward, its gradient
PER_ACTIVATION = 3


def training_bytes(model_cfg, batch_size: int) -> int:
    """About how many bytes training ``model_cfg`` with batches of ``batch_size`` needs (float32): its
    parameters with their gradients and Adam state, and the activations of a training batch or of an
    evaluation chunk (no gradients, but up to ``EVAL_CHUNK`` samples at once), whichever is larger."""
    rows = max(PER_ACTIVATION * batch_size, EVAL_CHUNK)
    return FLOAT32 * (PER_PARAMETER * model_cfg.parameter_count() + rows * model_cfg.activation_count())


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> Optional[int]:
    """What this process's cgroup (v2) still allows, when it sets a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_bytes(dev: torch.device) -> Optional[tuple[int, str]]:
    """(bytes available, where) on ``dev`` — the machine's memory for the CPU, the GPU's free
    memory for CUDA — or None where it cannot be told (then nothing is refused)."""
    if dev.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(dev)
        except Exception:  # noqa: BLE001 — no figure, no refusal
            return None
        return int(free), f"the GPU ({dev}) has {format_bytes(free)} free"
    if dev.type != "cpu":
        return None
    got = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    if not got:
        return None
    free = min(got)
    return free, f"this machine has {format_bytes(free)} available"


def format_bytes(n: float) -> str:
    """``3,200 GB``, ``1.5 GB``, ``340 MB``: decimal units, as a user reads them off a shop's page."""
    if n >= 100e9:
        return f"{n / 1e9:,.0f} GB"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{max(n, 0) / 1e6:,.0f} MB"


def check_fits(cfg, dev: torch.device) -> None:
    """Raise one ConfigError line when training ``cfg`` (a RunConfig) on ``dev`` needs more memory than
    ``dev`` has available, before any of it is allocated."""
    have = available_bytes(dev)
    if have is None:
        return
    need = training_bytes(cfg.model, cfg.train.batch_size)
    free, where = have
    if need <= free:
        return
    params = cfg.model.parameter_count()
    raise ConfigError(
        f"{cfg.name}: training this model needs about {format_bytes(need)} of memory ({params:,} parameters with "
        f"their gradients and Adam state, and one batch's activations, in float32); {where}; make the layers "
        "smaller (--encoder/--decoder) or the batch (--batch-size)")


_ALLOC = re.compile(r"allocate (\d+) bytes")
_CUDA_ALLOC = re.compile(r"Tried to allocate ([\d.]+ [KMGT]i?B)")


def out_of_memory_line(err: BaseException) -> Optional[str]:
    """One line for a failed allocation (torch's CPU allocator, CUDA out of memory, Python's
    MemoryError), or None for any other error."""
    text = str(err)
    oom = (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
           or (isinstance(err, RuntimeError) and any(s in text for s in (
               "DefaultCPUAllocator", "not enough memory", "out of memory", "Cannot allocate memory")))
           or (isinstance(err, OSError) and err.errno == 12))
    if not oom:
        return None
    m, c = _ALLOC.search(text), _CUDA_ALLOC.search(text)
    asked = f" (an allocation of {format_bytes(int(m[1]))})" if m else f" (an allocation of {c[1]})" if c else ""
    return (f"out of memory{asked}; make the model (--encoder/--decoder) or --batch-size smaller, or train fewer "
            "runs at once (--workers)")
