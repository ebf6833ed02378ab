"""aelab._malloc: the aelab command's allocator setting (freed memory kept for the next step)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = ("import json, os; from aelab._malloc import keep_freed_memory as k; "
         "a = k(); b = k(); print(json.dumps([a, b, os.environ.get('MALLOC_MMAP_THRESHOLD_'), "
         "os.environ.get('MALLOC_TRIM_THRESHOLD_')]))")


def _probe(**env: str) -> list:
    base = {k: v for k, v in os.environ.items()
            if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "AELAB_KEEP_FREED_MEMORY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_raises_the_thresholds_once_and_passes_them_to_child_processes():
    on, again, mmap, trim = _probe()
    assert on is True and again is True  # idempotent
    assert int(mmap) == 32 * 1024 * 1024  # glibc's largest allowed mmap threshold on 64-bit
    assert int(trim) == 1 << 30


@glibc
def test_a_users_own_setting_wins_and_it_can_be_turned_off():
    on, _, mmap, trim = _probe(MALLOC_TRIM_THRESHOLD_="12345")
    assert on is False and mmap is None and trim == "12345"
    on, _, mmap, _ = _probe(AELAB_KEEP_FREED_MEMORY="0")
    assert on is False and mmap is None


@glibc
def test_training_gives_the_same_bits_with_and_without(tmp_path):
    """The setting moves memory, never a value: the same quick run in two processes."""
    code = ("import sys, torch; from aelab._malloc import keep_freed_memory as k; "
            "sys.argv[1] == '1' and k(); "
            "from aelab.engine.steppers import ModelSpec, PlainStepper; from aelab.presets import load_preset; "
            "cfg = load_preset('keras-blog-conv'); "
            "st = PlainStepper(ModelSpec(cfg.model, 'bce', 1), 1e-3, 0.9, 0.999, 1e-7, 'cpu', num_threads=1); "
            "x = torch.rand(32, 784, generator=torch.Generator().manual_seed(0)); l, p = torch.zeros(1), torch.zeros(1); "
            "[st.train_step([x], x, slice(0, 32), l, p) for _ in range(3)]; "
            "torch.save(st.model.state_dict(), sys.argv[2])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    for flag in ("0", "1"):
        subprocess.run([sys.executable, "-c", code, flag, str(tmp_path / f"w{flag}.pt")], env=env, check=True,
                       timeout=300)
    import torch

    a, b = torch.load(tmp_path / "w0.pt"), torch.load(tmp_path / "w1.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
