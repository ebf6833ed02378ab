"""What a new user hits in the first hour: the data they name is what trains, a run directory is
reused only by its own config, signals stop everything promptly and say how to resume, every
filesystem mistake is one line, failed runs leave nothing, one process owns a directory."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aelab.cli import main
from aelab.config import config_hash
from aelab.data import MNIST_FILES, SHA256, sources, write_idx
from aelab.data.idx import encode_idx
from aelab.errors import AelabError
from aelab.runs import train_runs

from conftest import make_cfg
from conftest import StopAfter, same_run

EXE = [sys.executable, "-m", "aelab.cli"]
SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- the data a user names is the data that trains ---------------------------------------------------
@pytest.fixture
def mnist(monkeypatch, tmp_path):
    """A small MNIST-shaped data set whose hashes are patched in, filling the default cache."""
    monkeypatch.setattr(sources.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(sources, "_npm_path", lambda: None)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (192, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 192, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (32, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 32, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        monkeypatch.setitem(SHA256, name, hashlib.sha256(encode_idx(arr)).hexdigest())
    cache, copy = tmp_path / "cache", tmp_path / "my-mnist"
    for d in (cache, copy):
        d.mkdir()
        for name, arr in arrays.items():
            write_idx(d / name, arr)
    monkeypatch.setenv("AELAB_DATA_DIR", str(cache))
    return cache, copy


TRAIN = ["train", "--epochs", "1", "--batch-size", "32", "-q"]


@pytest.mark.parametrize("kind", ["folder of pngs", "random bin", "missing path"])
def test_a_data_file_that_is_not_mnist_is_refused_even_with_a_full_cache(mnist, tmp_path, capsys, kind):
    bad = tmp_path / "bad"
    if kind == "folder of pngs":
        bad.mkdir()
        (bad / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    elif kind == "random bin":
        bad = tmp_path / "blob.bin"
        bad.write_bytes(os.urandom(4096))
    out = tmp_path / "out"
    assert main([*TRAIN, "--data-file", str(bad), "--out", str(out)]) == 2
    assert str(bad) in one_line(capsys)
    assert not out.exists()


def test_the_named_files_and_cache_are_the_ones_used_and_recorded(mnist, tmp_path, capsys):
    cache, copy = mnist
    out = tmp_path / "from-files"
    assert main([*TRAIN, "--data-file", str(copy), "--out", str(out)]) == 0
    src = json.loads((out / "run.json").read_text())["data_source"]
    assert src["source"] == "files" and all(Path(p).parent == copy for p in src["files"].values())
    assert f"mnist from {copy}" in capsys.readouterr().out
    out2 = tmp_path / "from-cache"
    other = tmp_path / "other-cache"
    other.mkdir()
    for name in MNIST_FILES:
        (other / name).write_bytes((copy / name).read_bytes())
    assert main([*TRAIN, "--data-dir", str(other), "--out", str(out2)]) == 0
    src = json.loads((out2 / "run.json").read_text())["data_source"]
    assert src["source"] == "cache" and src["cache_dir"] == str(other)
    assert f"mnist from the cache {other}" in capsys.readouterr().out


def test_data_options_on_a_data_set_that_reads_no_files_are_refused(mnist, tmp_path, capsys):
    _, copy = mnist
    assert main([*TRAIN, "--dataset", "synthetic", "--data-file", str(copy), "--out", str(tmp_path / "o")]) == 2
    assert "--data-file" in one_line(capsys) and not (tmp_path / "o").exists()


def test_a_data_dir_that_is_a_file_is_refused(mnist, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main([*TRAIN, "--data-dir", str(f), "--out", str(tmp_path / "o")]) == 2
    assert str(f) in one_line(capsys) and not (tmp_path / "o").exists()


# -- a run directory belongs to one config ---------------------------------------------------------------
def test_a_run_directory_is_reused_only_by_its_own_config(tmp_path):
    rd = tmp_path / "sparse"
    a = make_cfg(**{"train.epochs": 1})
    b = make_cfg(**{"train.epochs": 1, "model.activity_l1": 1e-3})
    (first,) = train_runs([a], [rd], device="cpu", progress=False)
    (again,) = train_runs([a], [rd], device="cpu", progress=False)
    assert again.cached and again.history == first.history
    with pytest.raises(AelabError, match=r"holds a run of another config .*overwrite=True"):
        train_runs([b], [rd], device="cpu", progress=False)
    assert json.loads((rd / "config.json").read_text())["config_hash"] == config_hash(a)
    (new,) = train_runs([b], [rd], device="cpu", progress=False, overwrite=True)
    assert not new.cached and json.loads((rd / "config.json").read_text())["config_hash"] == config_hash(b)
    # a directory that is not a run directory is never reused nor deleted
    other = tmp_path / "photos"
    other.mkdir()
    (other / "me.jpg").write_bytes(b"...")
    with pytest.raises(AelabError, match="not a run directory"):
        train_runs([a], [other], device="cpu", progress=False, overwrite=True)
    assert (other / "me.jpg").exists()


def test_a_checkpointed_run_is_resumed_only_by_its_own_config(tmp_path):
    from aelab.engine.loop import Interrupted

    rd = tmp_path / "run"
    a = make_cfg(**{"train.epochs": 2})
    with pytest.raises(Interrupted):
        train_runs([a], [rd], device="cpu", progress=False, stop=StopAfter(3))
    assert (rd / "checkpoint" / "state.json").exists()
    with pytest.raises(AelabError, match="another config"):
        train_runs([make_cfg(**{"train.epochs": 3})], [rd], device="cpu", progress=False)
    assert (rd / "checkpoint" / "state.json").exists()  # the checkpoint is kept


# -- failed runs leave nothing behind -----------------------------------------------------------------------
def test_a_run_that_fails_validation_writes_nothing_and_announces_nothing(tmp_path, capsys):
    out = tmp_path / "big"
    assert main(["train", "--dataset", "synthetic", "--batch-size", "100000", "--out", str(out)]) == 2
    err = one_line(capsys)
    assert "batch_size" in err and not out.exists()
    assert "->" not in capsys.readouterr().out


def test_a_nan_in_the_first_epoch_leaves_no_directory(tmp_path, monkeypatch):
    from aelab import runs as runs_mod
    from aelab.engine.loop import TrainData
    from aelab.errors import TrainingError

    class Poisoned(TrainData):
        def train_inputs(self, epoch):
            x = super().train_inputs(epoch).clone()
            x[:, 0] = float("nan")
            return x

    real = runs_mod.DataCache.train_data
    monkeypatch.setattr(runs_mod.DataCache, "train_data",
                        lambda self, cfg, dev: Poisoned(real(self, cfg, dev).x_train, real(self, cfg, dev).x_val))
    rd = tmp_path / "nan-run"
    with pytest.raises(TrainingError, match="epoch 1"):
        train_runs([make_cfg()], [rd], device="cpu", progress=False)
    assert not rd.exists()


# -- output problems are one line -----------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["train", *SYN, "--epochs", "1"],
                                     ["study", "--quick", "--set", "data.dataset=synthetic"],
                                     ["sweep", "--quick", "--dataset", "synthetic", "--param", "train.epochs",
                                      "--values", "1"]])
def test_an_existing_file_as_out_is_one_line(tmp_path, capsys, command):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main([*command, "--out", str(f), "-q"]) == 2
    assert str(f) in one_line(capsys) and f.read_text() == "mine"


def test_an_out_in_a_system_directory_is_one_line(tmp_path, capsys):
    target = Path("/proc/aelab-test/run")
    assert main(["train", *SYN, "--epochs", "1", "--out", str(target), "-q"]) == 2
    assert str(target) in one_line(capsys)


def test_an_out_that_cannot_hold_files_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only directory (simulated: the tests may run as root, who can write anywhere)."""
    import tempfile

    from aelab import _atomic

    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(ro.resolve()):
            raise PermissionError(13, "Permission denied", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(_atomic.tempfile, "mkstemp", mkstemp)
    assert main(["study", "--quick", "--set", "data.dataset=synthetic", "--out", str(ro / "s"), "-q"]) == 2
    assert "cannot write files there" in one_line(capsys)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"runs": 3}'])
def test_report_of_a_damaged_results_json_is_one_line(tmp_path, capsys, content):
    (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in one_line(capsys)


# -- one process owns a directory ----------------------------------------------------------------------------
HOLD = textwrap.dedent("""
    import sys, time
    from aelab._lock import dir_lock
    with dir_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_directory_in_use_is_refused_with_the_owners_pid(tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([*EXE, "study", "--quick", "--set", "data.dataset=synthetic", "--out", str(out), "-q"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert f"in use by aelab process {holder.pid}" in r.stderr and r.stderr.count("\n") == 1
        assert list(out.iterdir()) == [out / ".aelab.lock"]  # nothing written
        # from Python too; and the other run of the call leaves no empty directory behind
        with pytest.raises(AelabError, match=f"in use by aelab process {holder.pid}"):
            train_runs([make_cfg(), make_cfg(**{"train.seed": 1})], [tmp_path / "mine", out], device="cpu",
                       progress=False)
        assert not (tmp_path / "mine").exists()
    finally:
        holder.kill()
        holder.communicate()
    # the holder died without cleaning up: its lock file is stale and the next run simply takes it
    assert (out / ".aelab.lock").exists()
    rd = tmp_path / "study" / "r"
    train_runs([make_cfg(**{"train.epochs": 1})], [rd], device="cpu", progress=False)
    assert (rd / "DONE").exists() and not (rd / ".aelab.lock").exists()


def test_two_processes_on_one_run_directory(tmp_path):
    """A real second CLI process on a directory another one is training into: one line, exit 2."""
    out = tmp_path / "run"
    args = [*EXE, "train", *SYN, "--epochs", "500", "-q", "--out", str(out)]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / "checkpoint" / "state.json").exists() and time.time() < deadline:
            time.sleep(0.02)
        second = subprocess.run([*EXE, "train", *SYN, "--epochs", "1", "-q", "--out", str(out), "--overwrite"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"in use by aelab process {first.pid}" in second.stderr
        assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 500
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


# -- signals --------------------------------------------------------------------------------------------------
def _wait_for(pattern: str, root: Path, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(pattern)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)


def test_sigint_to_train_names_it_and_its_resume_command_resumes(tmp_path):
    args = [*SYN, "--limit", "1200", "--epochs", "4", "-q"]
    ref, cut = tmp_path / "ref", tmp_path / "cut dir"
    subprocess.run([*EXE, "train", *args, "--out", str(ref)], check=True, capture_output=True)
    proc = subprocess.Popen([*EXE, "train", *args, "--out", str(cut)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for("checkpoint/state.json", cut, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 130, err
    assert err.startswith("aelab: SIGINT: training stopped; checkpoint saved for cut dir (epoch ") and "Traceback" not in err
    hint = err.split("resume with: ")[1].strip()
    assert hint == f"aelab train --resume {shlex.quote(str(cut))}"
    r = subprocess.run([*EXE, *shlex.split(hint)[1:], "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    same_run(ref, cut)


STUDY = """
title = "many groups"
description = "five groups of one run each (different batch sizes never stack), long enough to interrupt"
[defaults]
data.dataset = "synthetic"
data.limit = 2048
data.test_limit = 128
train.epochs = 300
[baselines.b16]
train.batch_size = 16
[baselines.b32]
train.batch_size = 32
[baselines.b48]
train.batch_size = 48
[baselines.b64]
train.batch_size = 64
[baselines.b80]
train.batch_size = 80
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_a_parallel_study_stops_every_worker_and_starts_nothing_new(tmp_path, sig):
    toml = tmp_path / "many.toml"
    toml.write_text(STUDY)
    out = tmp_path / "out"
    cmd = ["study", str(toml), "--workers", "2", "--no-report", "-q", "--out", str(out)]
    proc = subprocess.Popen([*EXE, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for("runs/*/checkpoint/state.json", out, proc)
    t0 = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    stopped_in = time.time() - t0
    assert proc.returncode == 130, err
    # 300 epochs of a group take minutes; stopping means within a step or so of each worker
    assert stopped_in < 30, stopped_in
    assert err.startswith(f"aelab: {sig.name}: training stopped") and "Traceback" not in err, err
    assert "not started" in err and f"resume with: aelab {shlex.join(cmd)}" in err
    runs = sorted((out / "runs").iterdir())
    assert 1 <= len(runs) <= 2, runs  # only the two running groups left anything
    assert all((rd / "checkpoint" / "state.json").exists() and not (rd / "DONE").exists() for rd in runs)


def test_a_run_trains_to_the_same_history_alone_or_beside_others(tmp_path):
    """Grouping is an implementation detail: a resumed study regroups what is left, so a run's
    history (val_loss included, to the last bit) must not depend on what it trains beside."""
    base = {"data.limit": 600, "data.test_limit": 1000, "train.epochs": 2}
    a = make_cfg(**base).model_copy(update={"name": "a"})
    b = make_cfg(**base, **{"model.activity_l1": 1e-3}).model_copy(update={"name": "b"})
    c = make_cfg(**base, **{"model.encoder": ["32:sigmoid"]}).model_copy(update={"name": "c"})
    # a relu output: not a sigmoid, so Keras' clipped BCE, not the logits path; a group mixing the
    # two computes its loss per slice, and a's values must still be those it gets alone
    d = make_cfg(**base, **{"model.decoder": ["784:relu"]}).model_copy(update={"name": "d"})
    hist = []
    for k, group in enumerate(([a], [a, b], [a, b, c], [a, d], [a, b, d, c])):
        res = train_runs(group, [tmp_path / f"{k}-{g.name}" for g in group], device="cpu", progress=False, workers=1)
        assert json.loads((res[0].run_dir / "run.json").read_text())["trained_with"] == [g.name for g in group]
        hist.append(res[0].history)
    for h in hist[1:]:
        for key in ("loss", "val_loss", "penalty", "val_penalty"):
            assert h[key] == hist[0][key], key


# -- small things ---------------------------------------------------------------------------------------------
def test_the_public_api_is_discoverable():
    import pydoc

    import aelab

    names = dir(aelab)
    for name in ("RunConfig", "train_runs", "load_model", "build_model"):
        assert name in names
    text = pydoc.render_doc(aelab, renderer=pydoc.plaintext)
    assert "train_runs" in text and "load_model" in text


def test_unnamed_runs_are_named_by_their_layers_and_logs_get_no_bars(tmp_path):
    r = subprocess.run([*EXE, "train", *SYN, "--epochs", "2", "--encoder", "16:relu"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "16relu-784sigmoid-synthetic" / "DONE").exists()
    assert "run run" not in r.stdout and "16relu-784sigmoid-synthetic: 2 epochs on synthetic" in r.stdout
    # stdout/stderr are pipes here, as in a log file: epoch lines, no redrawn progress bars
    assert "epoch 2/2" in r.stdout + r.stderr
    assert "%|" not in r.stderr + r.stdout
    again = subprocess.run([*EXE, "train", *SYN, "--epochs", "1", "--encoder", "16:relu", "-q"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 0
    assert len(list((tmp_path / "runs").glob("16relu-784sigmoid-synthetic-2*"))) == 1


@pytest.mark.parametrize("extra, needle", [(["--baseline", "lab_sparse"], "--config is the sweep's baseline"),
                                           (["--quick"], "--quick applies a study's quick settings")])
def test_sweep_options_that_would_be_ignored_are_refused(tmp_path, capsys, extra, needle):
    toml = tmp_path / "run.toml"
    toml.write_text('[data]\ndataset = "synthetic"\n')
    out = tmp_path / "sw"
    assert main(["sweep", "--config", str(toml), "--param", "train.epochs", "--values", "1", *extra,
                 "--out", str(out)]) == 2
    assert needle in one_line(capsys) and not out.exists()


def test_a_quick_sweep_never_writes_over_the_full_one(tmp_path):
    args = [*EXE, "sweep", "--quick", "--baseline", "lab_undercomplete", "--dataset", "synthetic", "--limit", "256",
            "--param", "train.epochs", "--values", "1", "-q", "--no-report"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    (out,) = (tmp_path / "studies-out").iterdir()
    # the default folder also names the data and settings the flags changed (test_trust_ownership)
    assert out.name == "sweep-lab_undercomplete-epochs-quick-synthetic-limit256"
    assert json.loads((out / "results.json").read_text())["quick"] is True
