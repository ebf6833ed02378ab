"""aelab._gc: the aelab command's collector setting (what it imports is frozen, not walked again)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from aelab._gc import long_lived


def test_long_lived_pauses_the_collector_then_freezes_what_is_alive():
    before = gc.get_freeze_count()
    try:
        assert gc.isenabled()
        with long_lived():
            assert not gc.isenabled()
            made = [{"n": i} for i in range(1000)]  # objects made while it runs: frozen at its end
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()  # the test process's objects back to the collector
    gc.disable()
    try:
        with long_lived():
            pass
        assert not gc.isenabled()  # a collector the caller had turned off stays off
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_command_freezes_its_imports_and_a_library_call_does_not(tmp_path):
    """`aelab train` runs with PyTorch and the rest of what it imported frozen; importing and
    calling the library from Python (a notebook) leaves the collector as it was."""
    code = ("import gc, json, sys; from aelab.cli import main; "
            "code = main(['train', '--dataset', 'digits', '--epochs', '1', '--out', sys.argv[1], '-q']); "
            "print(json.dumps([code, gc.get_freeze_count(), gc.isenabled()]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=300, check=True)
    code_, frozen, enabled = json.loads(out.stdout.strip().splitlines()[-1])
    assert code_ == 0 and enabled and frozen > 100_000  # PyTorch alone is several hundred thousand objects
    lib = ("import gc, json, sys, aelab; from aelab import RunConfig; "
           "cfg = RunConfig().with_overrides({'data.dataset': 'digits', 'train.epochs': 1}); "
           "aelab.train(aelab.fit_config(cfg), sys.argv[1], progress=False); "
           "print(json.dumps([gc.get_freeze_count(), gc.isenabled()]))")
    out = subprocess.run([sys.executable, "-c", lib, str(tmp_path / "lib")], capture_output=True, text=True,
                         timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, True]
