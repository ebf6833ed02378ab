"""aelab latent writes only into a directory that is its own, and owns it while it writes.

The latent output directory (``RUN_DIR/latent/`` or ``--out DIR``) is aelab's when it is new or
empty, or carries the latent mark (``.aelab-latent.json``) of the same run; a folder holding a
user's files, or another run's latent output, is refused with one line and left as it was. While
it writes, ``aelab latent`` holds the lock of its output directory (and of the run directory when
it writes inside it), so a second process gets the one-line "in use by" error.
"""

from __future__ import annotations

import json

import pytest

from aelab._lock import dir_lock
from aelab.cli import main
from aelab.runs import train_runs

from conftest import make_cfg
from conftest import one_line, tree

LATENT_MARK = ".aelab-latent.json"  # docs/formats.md
FAST = ["--methods", "code", "--no-baselines", "-q"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-trust")
    a = make_cfg(model__encoder=["16:relu", "2:linear"], model__decoder=["784:sigmoid"], train__epochs=1,
                 data__limit=400, data__test_limit=80, name="a")
    b = make_cfg(model__encoder=["16:relu", "2:linear"], model__decoder=["784:sigmoid"], train__epochs=1,
                 data__limit=400, data__test_limit=80, train__seed=1, name="b")
    dirs = [root / "a", root / "b"]
    train_runs([a, b], dirs, device="cpu", progress=False, workers=1)
    return dirs


def test_a_folder_of_user_files_is_refused_and_left_as_it_was(runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "map.png").write_bytes(b"my own picture, not aelab's")
    (mine / "notes.txt").write_text("my notes\n")
    before = tree(mine)
    assert main(["latent", str(runs[0]), "--out", str(mine), *FAST]) == 2
    err = one_line(capsys)
    assert str(mine) in err and "map.png" in err and "notes.txt" in err and "--out" in err
    assert tree(mine) == before and sorted(p.name for p in mine.iterdir()) == ["map.png", "notes.txt"]


def test_a_lone_user_file_with_an_aelab_name_is_refused_too(runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "latent.json").write_text('{"mine": true}\n')
    assert main(["latent", str(runs[0]), "--out", str(mine), *FAST]) == 2
    assert "latent.json" in one_line(capsys)
    assert (mine / "latent.json").read_text() == '{"mine": true}\n' and len(list(mine.iterdir())) == 1


def test_rerunning_latent_into_the_same_out_works_and_marks_it(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 0
    mark = json.loads((out / LATENT_MARK).read_text())
    assert mark["format"] == "aelab-latent" and mark["run"] == "a"
    assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert {"map.png", "latent.json", LATENT_MARK} <= {p.name for p in out.iterdir()}
    assert not (out / ".aelab.lock").exists()  # released


def test_the_runs_own_latent_directory_is_rewritten(runs, capsys):
    assert main(["latent", str(runs[0]), *FAST]) == 0
    assert main(["latent", str(runs[0]), *FAST]) == 0
    assert (runs[0] / "latent" / LATENT_MARK).is_file() and (runs[0] / "latent" / "map.png").is_file()


def test_another_runs_latent_output_is_refused(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    before = tree(out)
    assert main(["latent", str(runs[1]), "--out", str(out), *FAST]) == 2
    err = one_line(capsys)
    assert str(out) in err and "run a" in err and "--out" in err
    assert tree(out) == before


def test_a_user_file_beside_the_runs_own_latent_output_is_refused(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 0
    (out / "notes.txt").write_text("mine\n")
    capsys.readouterr()
    before = tree(out)
    assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 2
    assert "notes.txt" in one_line(capsys)
    assert tree(out) == before


def test_a_run_directory_as_out_is_refused(runs, capsys):
    before = tree(runs[1])
    assert main(["latent", str(runs[0]), "--out", str(runs[1]), *FAST]) == 2
    assert "run directory" in one_line(capsys)
    assert tree(runs[1]) == before


def test_a_held_lock_on_the_output_directory_is_the_one_line_in_use_error(runs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with dir_lock(out):
        import aelab._lock as lock_mod

        # a lock this process holds is re-entrant: pretend it is another process's (hand the fd away)
        fd, depth = lock_mod._held.pop(out.resolve())
        try:
            assert main(["latent", str(runs[0]), "--out", str(out), *FAST]) == 2
        finally:
            lock_mod._held[out.resolve()] = (fd, depth)
    err = one_line(capsys)
    assert "is in use by" in err and str(out) in err
    assert not (out / "map.png").exists() and not (out / LATENT_MARK).exists()


def test_a_held_lock_on_the_run_directory_stops_latent_writing_inside_it(runs, capsys):
    import subprocess
    import sys
    import time

    rd = runs[1]
    code = ("import sys, time; from aelab._lock import dir_lock\n"
            "with dir_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(rd)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        before = tree(rd)
        assert main(["latent", str(rd), *FAST]) == 2
        err = one_line(capsys)
        assert "is in use by" in err and str(proc.pid) in err
        assert {k: v for k, v in tree(rd).items() if k != ".aelab.lock"} == \
            {k: v for k, v in before.items() if k != ".aelab.lock"}
        assert not (rd / "latent").exists()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    t0 = time.time()
    assert main(["latent", str(rd), *FAST]) == 0  # the kernel dropped the lock with its process
    assert time.time() - t0 < 120 and (rd / "latent" / "map.png").is_file()
