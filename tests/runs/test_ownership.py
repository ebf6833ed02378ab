"""No user file is ever deleted, and one output directory holds one thing.

A run directory is aelab's only when it carries aelab's mark (``.aelab-run.json``) or, written
before marks, holds nothing but aelab's own files; ``--overwrite`` and every other cleanup remove
only the files aelab writes there. A study's or sweep's output directory holds that one study or
sweep: another one written into it is refused with one line, and default output folders tell
apart quick runs, protocols and other data. Temporary files of a killed write are cleaned up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aelab.cli import main
from aelab.config import config_hash
from aelab.engine.loop import Interrupted
from aelab.errors import AelabError
from aelab.runs import RUN_MARK, train_runs

from conftest import make_cfg
from conftest import StopAfter, one_line, tree

EXE = [sys.executable, "-m", "aelab.cli"]
SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80", "--epochs", "1", "-q"]




def killed_write(directory: Path, target: str, suffix: str = ".tmp") -> Path:
    """The temporary file a write killed before its rename leaves (named exactly as atomic_path names it)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f".{target}.", suffix=suffix, dir=directory)
    os.write(fd, b"half a file")
    os.close(fd)
    return Path(path)


# -- --overwrite and cleanup remove only aelab's own files -----------------------------------------------
def test_overwrite_never_touches_a_directory_that_merely_holds_a_config_json(tmp_path, capsys):
    web = tmp_path / "web"
    (web / "src").mkdir(parents=True)
    (web / "config.json").write_text('{"port": 8080}\n')
    (web / "NOTES.md").write_text("my notes\n")
    (web / "src" / "app.js").write_text("console.log(1)\n")
    before = tree(web)
    assert main(["train", *SYN, "--out", str(web), "--overwrite"]) == 2
    assert "not a run directory aelab wrote" in one_line(capsys)
    assert tree(web) == before
    # a config.json of aelab's own shape does not make the folder aelab's when it holds anything else
    (web / "config.json").write_text(json.dumps({**make_cfg().to_dict(), "config_hash": config_hash(make_cfg())}))
    before = tree(web)
    assert main(["train", *SYN, "--out", str(web), "--overwrite"]) == 2
    assert "NOTES.md" in one_line(capsys)
    assert tree(web) == before


def test_overwrite_of_a_run_directory_someone_added_files_to_is_refused(tmp_path, capsys):
    rd = tmp_path / "run"
    assert main(["train", *SYN, "--out", str(rd)]) == 0
    mark = json.loads((rd / RUN_MARK).read_text())
    assert mark["format"] == "aelab-run" and mark["config_hash"] == json.loads((rd / "config.json").read_text())["config_hash"]
    (rd / "NOTES.md").write_text("what this run showed\n")
    (rd / "latent").mkdir()
    (rd / "latent" / "mine.txt").write_text("x\n")
    capsys.readouterr()
    before = tree(rd)
    assert main(["train", *SYN, "--lr", "0.002", "--out", str(rd), "--overwrite"]) == 2
    err = one_line(capsys)
    assert "NOTES.md" in err and "latent/mine.txt" in err
    assert tree(rd) == before
    # the same directory, once it holds only aelab's files, is replaced (a killed write's left-over included)
    (rd / "NOTES.md").unlink()
    (rd / "latent" / "mine.txt").unlink()
    left = killed_write(rd, "weights.safetensors")
    assert main(["train", *SYN, "--lr", "0.002", "--out", str(rd), "--overwrite"]) == 0
    cfg = json.loads((rd / "config.json").read_text())
    assert cfg["train"]["lr"] == 0.002 and json.loads((rd / RUN_MARK).read_text())["config_hash"] == cfg["config_hash"]
    assert not left.exists() and not (rd / "latent").exists()


def test_a_run_directory_written_before_marks_is_still_aelabs(tmp_path):
    rd = tmp_path / "old"
    a, b = make_cfg(**{"train.epochs": 1}), make_cfg(**{"train.epochs": 1, "train.lr": 2e-3})
    (first,) = train_runs([a], [rd], device="cpu", progress=False)
    (rd / RUN_MARK).unlink()  # as an earlier aelab left it
    (again,) = train_runs([a], [rd], device="cpu", progress=False)
    assert again.cached and again.history == first.history
    (new,) = train_runs([b], [rd], device="cpu", progress=False, overwrite=True)
    assert not new.cached and json.loads((rd / RUN_MARK).read_text())["config_hash"] == config_hash(b)
    # unmarked and holding something aelab does not write: not aelab's, not even to read back
    (rd / RUN_MARK).unlink()
    (rd / "todo.txt").write_text("x\n")
    with pytest.raises(AelabError, match=r"not a run directory aelab wrote \(it holds todo.txt\)"):
        train_runs([b], [rd], device="cpu", progress=False)
    assert (rd / "todo.txt").exists() and (rd / "weights.safetensors").exists()


def test_dropping_a_checkpoint_removes_only_aelabs_checkpoint_files(tmp_path):
    rd = tmp_path / "run"
    cfg = make_cfg()  # 8 steps per epoch: stopped in the second epoch, with the first's checkpoint
    with pytest.raises(Interrupted):
        train_runs([cfg], [rd], device="cpu", progress=False, stop=StopAfter(10))
    assert (rd / "checkpoint" / "state.json").exists()
    (rd / "checkpoint" / "keep.txt").write_text("mine\n")
    (result,) = train_runs([cfg], [rd], device="cpu", progress=False)
    assert (rd / "DONE").exists() and not result.cached
    assert sorted(p.name for p in (rd / "checkpoint").iterdir()) == ["keep.txt"]


def test_a_run_stopped_before_it_started_leaves_the_users_files(tmp_path):
    rd = tmp_path / "run"
    rd.mkdir()
    stop = StopAfter(0)
    with pytest.raises(Interrupted):
        train_runs([make_cfg()], [rd], device="cpu", progress=False, stop=stop)
    assert list(rd.iterdir()) == []  # an empty directory it was given stays empty: no mark, no config left


# -- temporary files of a killed write ----------------------------------------------------------------------
def test_temporary_files_of_killed_writes_are_cleaned_when_the_run_is_next_opened(tmp_path):
    rd = tmp_path / "run"
    cfg = make_cfg(**{"train.epochs": 1})
    train_runs([cfg], [rd], device="cpu", progress=False)
    ours = [killed_write(rd, "weights.safetensors"), killed_write(rd, "samples.npz", ".npz"),
            killed_write(rd / "checkpoint", "state.safetensors"), killed_write(rd, "history.json")]
    theirs = [killed_write(rd, "mydata.csv"), rd / ".DS_Store"]
    theirs[1].write_bytes(b"finder")
    (again,) = train_runs([cfg], [rd], device="cpu", progress=False)
    assert again.cached
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


def test_temporary_files_of_a_killed_run_are_gone_when_it_finishes(tmp_path):
    """A real CLI process killed (SIGKILL) while training, its run directory holding the temporary file a
    killed write leaves; the resumed run finishes without it."""
    import signal
    import time

    rd = tmp_path / "run"
    proc = subprocess.Popen([*EXE, "train", "--dataset", "synthetic", "--limit", "400", "--test-limit", "80",
                             "--epochs", "400", "-q", "--out", str(rd)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (rd / "checkpoint" / "state.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert (rd / "checkpoint" / "state.json").exists(), "the training process saved no checkpoint"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    left = [killed_write(rd, "weights.safetensors"), killed_write(rd / "checkpoint", "state.json")]
    r = subprocess.run([*EXE, "train", "--resume", str(rd), "-q"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (rd / "DONE").exists() and not any(p.exists() for p in left)
    assert sorted(p.name for p in rd.iterdir() if p.name.startswith(".")) == [RUN_MARK]


# -- one output directory holds one study or sweep ------------------------------------------------------------
STUDY = """
title = "tiny"
description = "one small run"
[defaults]
data.dataset = "synthetic"
data.limit = 400
data.test_limit = 80
train.epochs = 1
[baselines.a]
model.encoder = ["16:relu"]
[quick]
data.limit = 200
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    return path


def test_a_sweep_into_a_finished_studys_directory_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["study", str(tiny), "--out", str(out), "-q"]) == 0
    assert (out / "report.html").exists() and (out / "results.json").exists()
    capsys.readouterr()
    before = tree(out)
    assert main(["sweep", "--config", str(_base(tmp_path)),
                 "--param", "train.lr", "--values", "0.001,0.002", "--out", str(out), "-q"]) == 2
    err = one_line(capsys)
    assert "already holds study tiny" in err and "this is sweep base: train.lr" in err and "give --out a new or empty directory" in err
    assert tree(out) == before
    # the same study again: its own directory (cached runs, nothing retrained)
    assert main(["study", str(tiny), "--out", str(out), "-q", "--no-report"]) == 0


def _base(tmp_path: Path) -> Path:
    p = tmp_path / "base.toml"
    p.write_text('name = "base"\n[data]\ndataset = "synthetic"\nlimit = 400\ntest_limit = 80\n'
                 '[train]\nepochs = 1\n[model]\nencoder = ["16:relu"]\n')
    return p


def test_another_version_of_a_study_is_refused_and_seeds_extend_it(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["study", str(tiny), "--out", str(out), "-q", "--no-report"]) == 0
    results = (out / "results.json").read_bytes()
    for other in (["--quick"], ["--set", "data.dataset=digits"], ["--set", "train.lr=0.002"]):
        capsys.readouterr()
        assert main(["study", str(tiny), *other, "--out", str(out), "-q", "--no-report"]) == 2, other
        err = one_line(capsys)
        assert "already holds study tiny" in err, err
        assert (out / "results.json").read_bytes() == results
    assert "data synthetic" in err and "other run settings" in err
    # seed replicates belong to the same study
    assert main(["study", str(tiny), "--seeds", "2", "--out", str(out), "-q", "--no-report"]) == 0
    assert "replicates" in json.loads((out / "results.json").read_text())


def test_a_sweep_with_other_values_is_another_sweep(tmp_path, capsys):
    out = tmp_path / "sw"
    base = _base(tmp_path)
    assert main(["sweep", "--config", str(base), "--param", "train.lr", "--values", "0.001,0.002",
                 "--out", str(out), "-q", "--no-report", "--workers", "1"]) == 0  # identity, not the pool
    before = tree(out)
    capsys.readouterr()
    assert main(["sweep", "--config", str(base), "--param", "train.lr", "--values", "0.001,0.004",
                 "--out", str(out), "-q", "--no-report"]) == 2
    assert "already holds sweep base: train.lr over 0.001,0.002" in one_line(capsys)
    assert tree(out) == before
    assert main(["sweep", "--config", str(base), "--param", "train.lr", "--values", "0.001,0.002",
                 "--out", str(out), "-q", "--no-report", "--workers", "1"]) == 0


def test_a_study_into_a_folder_of_other_files_or_a_run_is_refused(tiny, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x\n")
    assert main(["study", str(tiny), "--out", str(mine), "-q", "--no-report"]) == 2
    assert "thesis.tex" in one_line(capsys)
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    rd = tmp_path / "run"
    assert main(["train", *SYN, "--out", str(rd)]) == 0
    before = tree(rd)
    capsys.readouterr()
    assert main(["study", str(tiny), "--out", str(rd), "-q", "--no-report"]) == 2
    assert "is a run directory" in one_line(capsys)
    assert tree(rd) == before


def test_a_study_directory_written_before_marks_is_its_own(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["study", str(tiny), "--out", str(out), "-q", "--no-report"]) == 0
    (out / ".aelab-output.json").unlink()
    assert main(["study", str(tiny), "--out", str(out), "-q", "--no-report"]) == 0
    assert (out / ".aelab-output.json").exists()
    (out / ".aelab-output.json").unlink()
    capsys.readouterr()
    assert main(["study", str(tiny), "--quick", "--out", str(out), "-q", "--no-report"]) == 2
    assert "already holds study tiny" in one_line(capsys)


def test_a_studys_killed_writes_are_cleaned_when_it_runs_again(tiny, tmp_path):
    out = tmp_path / "out"
    assert main(["study", str(tiny), "--out", str(out), "-q"]) == 0
    ours = [killed_write(out, "results.json"), killed_write(out, "report.html"),
            killed_write(out / "figures", "a-loss.png")]
    theirs = killed_write(out, "notes.txt")
    assert main(["study", str(tiny), "--out", str(out), "-q", "--no-report"]) == 0
    assert not any(p.exists() for p in ours) and theirs.exists()


def test_default_output_folders_tell_apart_data_quick_and_settings(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = _base(tmp_path)
    assert main(["study", str(tiny), "--quick", "-q", "--no-report", "--workers", "1"]) == 0  # names, not workers: no pool
    assert main(["study", str(tiny), "--quick", "--set", "data.dataset=digits", "-q", "--no-report", "--workers", "1"]) == 0
    assert main(["sweep", "--config", str(base), "--param", "train.lr", "--values", "0.001,0.002", "-q",
                 "--no-report", "--workers", "1"]) == 0
    assert main(["sweep", "--config", str(base), "--param", "train.lr", "--values", "0.001,0.002", "--dataset",
                 "digits", "-q", "--no-report", "--workers", "1"]) == 0
    made = sorted(p.name for p in (tmp_path / "studies-out").iterdir())
    assert made == ["sweep-base-lr", "sweep-base-lr-digits", "tiny-quick", "tiny-quick-digits"]
    data = {n: json.loads((tmp_path / "studies-out" / n / "results.json").read_text()) for n in made}
    assert {r["config"]["data"]["dataset"] for r in data["tiny-quick-digits"]["runs"].values()} == {"digits"}
    assert {r["config"]["data"]["dataset"] for r in data["tiny-quick"]["runs"].values()} == {"synthetic"}
