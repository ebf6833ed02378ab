"""Keep freed memory in the process instead of giving it back to the OS after every training step.

A step of a model with image layers allocates its activations and gradients afresh (a few MB
each: 128 × 16 × 28 × 28 floats is 6.4 MB) and frees them at the end of the step. glibc's
``malloc`` serves blocks above its mmap threshold (128 kB, raised dynamically only up to the
largest block freed so far) with a fresh ``mmap`` and returns them with ``munmap``, and trims the
top of its heap above 128 kB of free space; PyTorch's CPU allocator keeps nothing for itself. So
every step page-faults its memory back in, zero-filled by the kernel — work TensorFlow's BFC
allocator (which keeps its blocks) never does.

Raising both thresholds (the mmap threshold to glibc's largest allowed value on 64-bit, 32 MiB; the
trim threshold to 1 GiB) makes freed blocks stay in the heap for the next step. Measured on this
project's 2-vCPU VM (``python -m benchmarks.conv_steps --threads 2``, alternating processes,
``OMP_WAIT_POLICY=PASSIVE``): the Keras-blog conv AE 40–48 → 26 ms per step, the keras.io denoiser
82–90 → 53–56, the keras.io VAE 80–92 → 68; only one of the two settings gave nothing or was slower
(the trim threshold alone, with mmap at its fixed 128 kB: 57–63 ms). Same results, bit for bit (the
values computed do not depend on where the memory is). The cost: a process holds on to its peak
heap until it exits, which for a training process is what it needs anyway.

Process-wide, so only the ``aelab`` command and its worker processes do it (a library should not
change its host's allocator behind its back): :func:`keep_freed_memory` sets the thresholds for the
running process through ``mallopt`` and puts glibc's environment variables in ``os.environ`` so
worker processes started afterwards (the local process pool, a local Ray instance) start with
them. A user's own ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``/``GLIBC_TUNABLES`` wins, and
``AELAB_KEEP_FREED_MEMORY=0`` turns it off. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import os

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2, which is 32 MiB on 64-bit systems
MMAP_THRESHOLD = 32 * 1024 * 1024
#: free memory at the top of the heap kept before trimming (``mallopt`` takes an ``int``)
TRIM_THRESHOLD = 1 << 30

ENV_SWITCH = "AELAB_KEEP_FREED_MEMORY"
_USER_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_done: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only; musl and macOS have no such symbol
        return libc if hasattr(libc, "mallopt") else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process and the processes it starts.

    Returns whether this process now keeps freed memory. Idempotent; does nothing when the user set
    the allocator's variables, when ``AELAB_KEEP_FREED_MEMORY=0``, or off glibc.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if any(os.environ.get(k) for k in _USER_KEYS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if ok:
        # for processes started from here: glibc reads these once, when a process starts
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
        os.environ["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
    _done = ok
    return ok
