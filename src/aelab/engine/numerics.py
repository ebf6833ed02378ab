"""What the bits of a CPU result depend on, recorded beside every run (``run.json``'s ``numerics``).

Measured with ``python -m benchmarks.cpu_bits`` (``benchmarks/RESULTS.md``): on one machine aelab
trains to the same bits however a study is grouped, split over processes, resumed or sent to Ray.
Between machines exactly one piece of the arithmetic changed the exercise12 results: the code
branch Intel MKL picks for its matrix products (AVX-512 on a recent Xeon, AVX2 on most AMD EPYCs).
ATen's own instruction-set dispatch (``ATEN_CPU_CAPABILITY``) moved nothing, and aelab's C
kernels sum in the order their source fixes, whatever vector unit they are compiled for (tested).
So a result is reproducible bit for bit wherever these fields are equal. MKL's own switch
``MKL_CBWR`` (read when the process starts) pins its branch: ``AVX2`` between Intel CPUs with
AVX2, ``COMPATIBLE`` between any x86 CPUs (MKL documents that a non-Intel CPU given ``AVX2`` runs
its own branch instead — which this record, reading back the setting, cannot see).
"""

from __future__ import annotations

import ctypes
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from .. import kernels as ckernels

# mkl_cbwr.h: the code branches MKL reports (mkl_cbwr_get / mkl_cbwr_get_auto_branch)
MKL_BRANCHES = {1: "off", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX",
                10: "AVX2", 11: "AVX512_MIC", 12: "AVX512", 13: "AVX512_MIC_E1", 14: "AVX512_E1"}
# the environment switches that choose CPU code paths (recorded when set)
SWITCHES = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "AELAB_KERNELS", "AELAB_KERNEL_ARCH",
            "AELAB_CONV1")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU's vendor (``GenuineIntel``, ``AuthenticAMD`` …, from ``/proc/cpuinfo``), or ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _torch_lib() -> Optional[ctypes.CDLL]:
    path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        return ctypes.CDLL(str(path)) if path.exists() else None
    except OSError:
        return None


@lru_cache(maxsize=1)
def mkl_branch() -> Optional[str]:
    """The code branch MKL runs in this process: the one set by ``MKL_CBWR``, else the one it
    chose for this CPU (``AVX512_E1``, ``AVX2`` …); None where PyTorch has no MKL."""
    if not torch.backends.mkl.is_available():
        return None
    lib = _torch_lib()
    try:
        torch.ones(2, 2) @ torch.ones(2, 2)  # MKL settles its branch on first use
        chosen = lib.mkl_serv_cbwr_get(1) & 0xFFFF  # MKL_CBWR_BRANCH; the STRICT bit dropped
        if chosen in (1, 2):  # off / AUTO: the CPU's own branch
            chosen = lib.mkl_serv_cbwr_get_auto_branch()
    except (AttributeError, OSError):
        return "unknown"
    if chosen in (1, 2):
        # MKL names a branch only on Intel's CPUs; on others (AMD EPYC) it answers AUTO and runs a path
        # of its own choosing, which this record can only call by that name
        return "AUTO (MKL names no branch on this CPU)"
    return MKL_BRANCHES.get(chosen, f"branch {chosen}")


def fingerprint() -> dict:
    """What a CPU result's bits depend on (beside the run's thread count, recorded on its own)."""
    return {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "mkl_branch": mkl_branch(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "c_kernels": ckernels.status() + (f", compiled for the {ckernels.arch()} instruction set"
                                          if ckernels.arch() else ""),
        "switches": {k: os.environ[k] for k in SWITCHES if k in os.environ},
    }
