"""What a result's bits depend on, and what they do not (``aelab.engine.numerics``, ``benchmarks/cpu_bits.py``).

Each check trains the same chaotic model (a relu output under BCE: dead output units amplify any
rounding difference into a different run) in two fresh processes that differ in one CPU switch,
and asserts that the weights are the same bits. The switches that must not matter are the ones
that differ between an Intel Xeon and an AMD EPYC apart from MKL's matrix-product branch; every
check compares two runs on the machine it runs on, so it means the same on each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aelab import kernels as ckernels
from aelab.engine import numerics

EXE = [sys.executable, "-m", "aelab.cli"]
# q2_2's architecture (relu code, relu output) on a slice of the synthetic data: 3 epochs are
# enough for a one-ulp difference to show in the weights
CHAOTIC = ["train", "--dataset", "synthetic", "--limit", "600", "--test-limit", "100", "--encoder", "32:relu",
           "--decoder", "784:relu", "--epochs", "3", "--batch-size", "32", "-q"]


VARIANTS = {"default": {}, "portable": {"AELAB_KERNEL_ARCH": "portable"}, "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
            "compatible": {"MKL_CBWR": "COMPATIBLE"}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The chaotic model trained once per variant, two processes at a time."""
    base = tmp_path_factory.mktemp("numerics")
    names = list(VARIANTS)
    errors = {}
    for pair in (names[:2], names[2:]):  # two cores: two processes at a time
        procs = {n: subprocess.Popen([*EXE, *CHAOTIC, "--out", str(base / n)], env={**os.environ, **VARIANTS[n]},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in pair}
        for n, p in procs.items():
            try:
                err = p.communicate(timeout=600)[1]
            except subprocess.TimeoutExpired:
                p.kill()
                err = "no result in 600 s: " + p.communicate()[1]
            if p.returncode != 0:
                errors[n] = err
    assert not errors, errors
    out = {}
    for n in names:
        run = json.loads((base / n / "run.json").read_text())
        hist = json.loads((base / n / "history.json").read_text())
        out[n] = {"weights": run["weights_sha256"], "loss": hist["loss"], "numerics": run["numerics"]}
    return out


def test_run_json_records_what_the_bits_depend_on(runs):
    import torch

    num = runs["default"]["numerics"]
    assert set(num) >= {"cpu", "torch", "mkl_branch", "aten_capability", "c_kernels", "switches"}
    assert num["torch"] == torch.__version__
    assert num["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert num["switches"] == {}
    if torch.backends.mkl.is_available():
        assert num["mkl_branch"] not in (None, "unknown", "AUTO", "off")
        # Intel's CPUs get a named branch (AVX512_E1, AVX2 ...); on another vendor's MKL says only AUTO
        assert ("AUTO" in num["mkl_branch"]) == (numerics.cpu_vendor() not in ("GenuineIntel", "unknown"))
        pinned = runs["compatible"]["numerics"]
        assert pinned["mkl_branch"] == "COMPATIBLE" and pinned["switches"] == {"MKL_CBWR": "COMPATIBLE"}


@pytest.mark.skipif(ckernels.load() is None, reason="no C compiler: the C kernels are not built here")
def test_the_c_kernels_give_the_same_bits_whatever_instruction_set_they_are_compiled_for(runs):
    native, portable = runs["default"], runs["portable"]
    assert "native instruction set" in native["numerics"]["c_kernels"]
    assert "baseline instruction set" in portable["numerics"]["c_kernels"]
    assert portable["weights"] == native["weights"]
    assert portable["loss"] == native["loss"]


def test_atens_instruction_set_dispatch_does_not_change_the_bits(runs):
    import torch

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("ATen runs no vector kernels here")
    mine, avx2 = runs["default"], runs["aten-avx2"]
    assert avx2["numerics"]["aten_capability"] == "AVX2"
    assert avx2["weights"] == mine["weights"]
    assert avx2["loss"] == mine["loss"]


def test_mkls_branch_is_what_moves_a_chaotic_model(runs):
    """The one switch that does change bits (why run.json records it): MKL's COMPATIBLE branch
    against the branch MKL picks for this CPU — unless this CPU's own branch is COMPATIBLE."""
    import torch

    if not torch.backends.mkl.is_available():
        pytest.skip("PyTorch has no MKL here")
    mine = runs["default"]
    if mine["numerics"]["mkl_branch"] == "COMPATIBLE":
        pytest.skip("MKL runs its COMPATIBLE branch on this CPU already")
    assert runs["compatible"]["weights"] != mine["weights"]
