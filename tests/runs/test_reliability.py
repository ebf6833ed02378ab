"""Faults lose nothing: interrupted runs resume bit for bit, weights files are checked, outputs are atomic."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time

import pytest

from aelab.config import RunConfig, config_hash
from aelab.engine.loop import Interrupted
from aelab.errors import WeightsError
from aelab.runs import load_model, train_runs
from aelab.study import load_study, run_study
from aelab.study import run_dir_for

from conftest import StopAfter, same_run



def _cfg(**over):
    d = {"data.dataset": "synthetic", "data.limit": 600, "data.test_limit": 100, "train.epochs": 3,
         "model.activity_l1": 1e-3, "data.noise_factor": 0.3, "data.noise_mode": "per_epoch"}
    d.update(over)
    return RunConfig().with_overrides(d)



@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("stop_at", [5, 10, 21])  # mid first epoch, mid second, exactly at an epoch boundary (batch 0 of epoch 3)
def test_interrupt_and_resume_gives_identical_weights_and_history(tmp_path, engine, stop_at):
    cfg = _cfg()
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train_runs([cfg], [ref], device="cpu", engine=engine, progress=False)
    with pytest.raises(Interrupted):
        train_runs([cfg], [cut], device="cpu", engine=engine, progress=False, stop=StopAfter(stop_at))
    assert (cut / "checkpoint" / "state.safetensors").exists() and not (cut / "DONE").exists()
    train_runs([cfg], [cut], device="cpu", engine=engine, progress=False)
    assert (cut / "DONE").exists() and not (cut / "checkpoint").exists()
    same_run(ref, cut)


def test_checkpoint_is_portable_between_engines(tmp_path):
    """A run checkpointed by the fast path can be finished by the plain path (same per-model state).

    The two paths reduce bias gradients in a different order, so they agree to rounding, not bits."""
    cfg = _cfg(**{"data.noise_factor": 0.0, "model.activity_l1": 0.0})
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    train_runs([cfg], [ref], device="cpu", engine="plain", progress=False)
    with pytest.raises(Interrupted):
        train_runs([cfg], [cut], device="cpu", engine="fast", progress=False, stop=StopAfter(12))
    train_runs([cfg], [cut], device="cpu", engine="plain", progress=False)
    same_run(ref, cut, exact=False)


def test_interrupted_study_resumes_to_the_same_results(tmp_path):
    study = load_study("exercise12", quick=True, overrides={"data.dataset": "synthetic", "data.limit": 300,
                                                            "data.test_limit": 60, "train.epochs": 2})
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_study(study, full, device="cpu", progress=False, report=False)
    with pytest.raises(Interrupted):
        run_study(study, cut, device="cpu", progress=False, report=False, stop=StopAfter(7), workers=1)
    res = run_study(study, cut, device="cpu", progress=False, report=False)  # resumed with parallel workers
    for _name, cfg in study.runs.items():
        same_run(run_dir_for(full, cfg), run_dir_for(cut, cfg))
    # results.json agrees with the run directories
    on_disk = json.loads((cut / "results.json").read_text())
    for _name, rec in on_disk["runs"].items():
        assert rec["history"] == json.loads((cut / rec["dir"] / "history.json").read_text())
    # a finished study trains nothing the second time
    t0 = time.perf_counter()
    again = run_study(study, cut, device="cpu", progress=False, report=False)
    assert again["runs"].keys() == res["runs"].keys()
    assert time.perf_counter() - t0 < 10


def test_sigterm_midway_then_resume_matches_uninterrupted(tmp_path):
    """The real thing: a CLI run killed with SIGTERM mid-training resumes to identical weights."""
    args = ["--dataset", "synthetic", "--limit", "3000", "--test-limit", "300", "--epochs", "6",
            "--encoder", "128:relu,64:relu,32:relu", "--decoder", "64:relu,128:relu,784:sigmoid", "-q"]
    exe = [sys.executable, "-m", "aelab.cli", "train"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(exe + args + ["--out", str(ref)], check=True, capture_output=True)
    proc = subprocess.Popen(exe + args + ["--out", str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (cut / "checkpoint" / "state.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived (machine too fast for this timing)")
    assert proc.returncode == 130, err
    assert "SIGTERM" in err and "checkpoint" in err and "Traceback" not in err
    r = subprocess.run(exe + ["--resume", str(cut), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    same_run(ref, cut)


def test_sigterm_to_a_parallel_study_then_rerun_matches_uninterrupted(tmp_path):
    """A study training groups in worker processes: SIGTERM to the CLI checkpoints every worker's runs."""
    args = ["study", "exercise12", "--quick", "--set", "data.dataset=synthetic", "--set", "train.epochs=6",
            "--no-report", "-q", "--workers", "2"]
    exe = [sys.executable, "-m", "aelab.cli"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(exe + args + ["--out", str(ref)], check=True, capture_output=True)
    proc = subprocess.Popen(exe + args + ["--out", str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(cut.glob("runs/*/checkpoint/state.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the study finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    r = subprocess.run(exe + args + ["--out", str(cut)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for rd in (ref / "runs").iterdir():
        same_run(rd, cut / "runs" / rd.name)


def test_weights_tampered_truncated_or_mismatched_are_refused(tmp_path):
    cfg = _cfg(**{"train.epochs": 1})
    rd = tmp_path / "run"
    train_runs([cfg], [rd], device="cpu", progress=False)
    model, _ = load_model(rd)
    w = rd / "weights.safetensors"
    good = w.read_bytes()
    # tampered: same size, one byte changed
    bad = bytearray(good)
    bad[-3] ^= 0xFF
    w.write_bytes(bytes(bad))
    with pytest.raises(WeightsError, match="modified after training"):
        load_model(rd)
    # truncated, its hash recorded with it
    rec = json.loads((rd / "run.json").read_text())
    w.write_bytes(good[: len(good) // 2])
    (rd / "run.json").write_text(json.dumps({**rec, "weights_sha256": hashlib.sha256(w.read_bytes()).hexdigest()}))
    with pytest.raises(WeightsError, match="truncated or damaged"):
        load_model(rd)
    # no recorded hash to lean on: refused (aelab.artifacts.verify_run; more in test_trust_artifacts)
    (rd / "run.json").unlink()
    with pytest.raises(WeightsError, match="cannot be verified"):
        load_model(rd)
    # mismatched: weights of another architecture, hash and config recorded with them
    w.write_bytes(good)
    d = json.loads((rd / "config.json").read_text())
    d["model"]["encoder"] = ["16:relu"]
    (rd / "config.json").write_text(json.dumps(d))
    (rd / "run.json").write_text(json.dumps({**rec, "config_hash": config_hash(RunConfig.from_dict(
        {k: v for k, v in d.items() if k != "config_hash"}))}))
    d["config_hash"] = json.loads((rd / "run.json").read_text())["config_hash"]
    (rd / "config.json").write_text(json.dumps(d))
    rec = json.loads((rd / "run.json").read_text())  # and the config's SHA-256 recorded with them
    rec["config_sha256"] = hashlib.sha256((rd / "config.json").read_bytes()).hexdigest()
    (rd / "run.json").write_text(json.dumps(rec))
    with pytest.raises(WeightsError, match="does not match"):
        load_model(rd)


def test_no_temporary_files_left_behind(tmp_path):
    rd = tmp_path / "run"
    train_runs([_cfg(**{"train.epochs": 1})], [rd], device="cpu", progress=False)
    leftovers = [p.name for p in rd.rglob("*") if p.name.startswith(".")]
    assert leftovers == [".aelab-run.json"]  # the run directory's mark (docs/formats.md), no temporary file
    assert {"config.json", "history.json", "metrics.json", "samples.npz", "weights.safetensors", "recon.png",
            "run.json", "DONE"} <= {p.name for p in rd.iterdir()}


def test_nan_keeps_the_last_good_checkpoint_and_says_where(tmp_path, monkeypatch):
    """A NaN in epoch 2 stops training; the end-of-epoch-1 checkpoint survives and the run can resume."""
    from aelab import runs as runs_mod
    from aelab.engine.loop import TrainData
    from aelab.errors import TrainingError

    class PoisonedEpoch(TrainData):
        def train_inputs(self, epoch):
            x = super().train_inputs(epoch)
            if epoch == 1:
                x = x.clone()
                x[:, 0] = float("nan")
            return x

    real = runs_mod.DataCache.train_data

    def poisoned(self, cfg, device):
        d = real(self, cfg, device)
        return PoisonedEpoch(d.x_train, d.x_val, seed=d.seed)

    monkeypatch.setattr(runs_mod.DataCache, "train_data", poisoned)
    cfg = _cfg(**{"data.noise_factor": 0.0, "model.activity_l1": 0.0})
    rd = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"at epoch 2, batch 1;.*last good checkpoint \(end of epoch 1\)"):
        train_runs([cfg], [rd], device="cpu", progress=False)
    meta = json.loads((rd / "checkpoint" / "state.json").read_text())
    assert (meta["epoch"], meta["batch"]) == (1, 0) and not (rd / "DONE").exists()
    # once the cause is gone, the run resumes from that checkpoint to the same result as a clean run
    monkeypatch.setattr(runs_mod.DataCache, "train_data", real)
    train_runs([cfg], [rd], device="cpu", progress=False)
    ref = tmp_path / "ref"
    train_runs([cfg], [ref], device="cpu", progress=False)
    same_run(ref, rd)
