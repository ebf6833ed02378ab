"""aelab._gc: the aelab command's collector setting (what it imports is frozen, not walked again)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from aelab import _gc
from aelab._gc import long_lived


@pytest.fixture
def own(monkeypatch):
    monkeypatch.setattr(_gc, "_own", True)


def test_long_lived_pauses_the_collector_then_freezes_what_is_alive(own):
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


def test_long_lived_does_nothing_in_a_process_not_aelabs():
    assert not _gc._own  # the test process is pytest's
    before = gc.get_freeze_count()
    with long_lived():
        assert gc.isenabled()
    assert gc.get_freeze_count() == before


COMMAND = ("import atexit, gc, json, sys; "
           "atexit.register(lambda: print(json.dumps([gc.get_freeze_count(), gc.isenabled()]))); "
           "sys.argv = ['aelab', 'train', '--dataset', 'digits', '--epochs', '1', '--out', sys.argv[1], '-q']; "
           "from aelab.cli import main; sys.exit(main())")


def _last_json(code: str, out_dir) -> list:
    out = subprocess.run([sys.executable, "-c", code, str(out_dir)], capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_program_freezes_its_imports_and_a_callers_call_does_not(tmp_path):
    """`aelab train` run as the program trains with PyTorch and the rest of what it imported frozen;
    the same command called from a caller's program (main(argv)), or the library from a notebook,
    leaves the collector as it was."""
    frozen, enabled = _last_json(COMMAND, tmp_path / "program")
    assert enabled and frozen > 100_000  # PyTorch alone is several hundred thousand objects
    call = ("import gc, json, sys; from aelab.cli import main; "
            "code = main(['train', '--dataset', 'digits', '--epochs', '1', '--out', sys.argv[1], '-q']); "
            "print(json.dumps([code, gc.get_freeze_count(), gc.isenabled()]))")
    assert _last_json(call, tmp_path / "call") == [0, 0, True]
    lib = ("import gc, json, sys, aelab; from aelab import RunConfig; "
           "cfg = RunConfig().with_overrides({'data.dataset': 'digits', 'train.epochs': 1}); "
           "aelab.train(aelab.fit_config(cfg), sys.argv[1], progress=False); "
           "print(json.dumps([gc.get_freeze_count(), gc.isenabled()]))")
    assert _last_json(lib, tmp_path / "lib") == [0, True]
