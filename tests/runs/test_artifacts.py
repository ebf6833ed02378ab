"""A damaged or tampered artifact is never used: a finished run is used only when its run.json
verifies its weights; starting weights are floating point; every artifact aelab reads is
validated as a whole, and a wrong one is one line naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from aelab.artifacts import RUN_FORMATS
from aelab.cli import main
from aelab.errors import AelabError, WeightsError
from aelab.runs import RunSpec, load_model, read_result, train_runs
from aelab.runs.directory import RUN_LAYOUT

from conftest import make_cfg

SYN = ["--dataset", "synthetic", "--limit", "400", "--test-limit", "80"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aelab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cfg():
    return make_cfg(**{"data.limit": 400, "data.test_limit": 80, "train.epochs": 1})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    rd = tmp_path_factory.mktemp("trained") / "run"
    train_runs([_cfg()], [rd], device="cpu", progress=False)
    return rd


@pytest.fixture
def run(trained, tmp_path) -> Path:
    rd = tmp_path / "run"
    shutil.copytree(trained, rd)
    return rd


def _tamper(rd: Path) -> None:
    """Change one weight (a valid file of the right shape: only its hash can tell)."""
    w = rd / "weights.safetensors"
    sd = load_file(str(w))
    k = next(iter(sd))
    sd[k] = sd[k] + 1.0
    save_file(sd, str(w), metadata={"format": "pt"})


RUN_JSON = {
    "missing": None,
    "damaged": "{not json",
    "a list": "[1, 2]",
    "null hash": "NULLHASH",
    "no hash": "NOHASH",
    "short hash": "SHORT",
}


def _set_run_json(rd: Path, kind: str) -> None:
    p = rd / "run.json"
    content = RUN_JSON[kind]
    if content is None:
        p.unlink()
        return
    rec = json.loads(p.read_text())
    if content == "NULLHASH":
        rec["weights_sha256"] = None
        content = json.dumps(rec)
    elif content == "NOHASH":
        rec.pop("weights_sha256")
        content = json.dumps(rec)
    elif content == "SHORT":
        rec["weights_sha256"] = rec["weights_sha256"][:12]
        content = json.dumps(rec)
    p.write_text(content)


# -- weights are used only when their recorded hash verifies -------------------------------------------
@pytest.mark.parametrize("kind", list(RUN_JSON))
def test_tampered_weights_without_a_verifiable_run_json_are_never_loaded(run, kind, capsys):
    _tamper(run)
    _set_run_json(run, kind)
    with pytest.raises(WeightsError, match="run.json") as exc:
        load_model(run)
    assert "\n" not in str(exc.value) and "retrain" in str(exc.value)
    # aelab latent draws nothing from them
    assert main(["latent", str(run), "--no-baselines", "-q", "--methods", "pca"]) == 2
    err = one_line(capsys)
    assert "run.json" in err and "retrain" in err
    assert not (run / "latent").exists()


@pytest.mark.parametrize("kind", list(RUN_JSON))
def test_a_run_without_a_verifiable_record_is_refused_even_with_intact_weights(run, kind):
    _set_run_json(run, kind)
    with pytest.raises(WeightsError, match="run.json"):
        load_model(run)
    with pytest.raises(WeightsError, match="run.json"):  # a cached run is not reused either
        train_runs([_cfg()], [run], device="cpu", progress=False)


def test_tampered_weights_are_refused_when_reused_and_when_resumed(run, capsys):
    _tamper(run)
    with pytest.raises(WeightsError, match="modified after training"):
        train_runs([_cfg()], [run], device="cpu", progress=False)
    assert main(["train", "--resume", str(run), "-q"]) == 2
    assert "modified after training" in one_line(capsys)


def test_resume_of_an_intact_finished_run_says_so(run, capsys):
    assert main(["train", "--resume", str(run), "-q"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_a_config_json_that_disagrees_with_run_json_is_refused(run):
    d = json.loads((run / "config.json").read_text())
    d["config_hash"] = "0" * 16
    (run / "config.json").write_text(json.dumps(d))
    with pytest.raises(WeightsError, match="modified after training"):
        load_model(run)


def test_a_config_json_edited_under_a_recorded_sha256_is_refused(run):
    rec = json.loads((run / "run.json").read_text())
    assert rec["config_sha256"] == _sha256(run / "config.json")  # a run records it when it finishes
    load_model(run)  # recorded and intact: used
    d = json.loads((run / "config.json").read_text())
    d["model"]["encoder"] = [d["model"]["encoder"][0].replace("relu", "tanh")]  # same shapes: only the hash tells
    (run / "config.json").write_text(json.dumps(d))
    with pytest.raises(WeightsError, match=r"config\.json was modified after training"):
        load_model(run)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64])
def test_weights_of_the_wrong_dtype_are_refused_even_with_a_matching_hash(run, dtype):
    w = run / "weights.safetensors"
    sd = {k: v.to(dtype) for k, v in load_file(str(w)).items()}
    save_file(sd, str(w))
    rec = json.loads((run / "run.json").read_text())
    rec["weights_sha256"] = _sha256(w)
    (run / "run.json").write_text(json.dumps(rec))
    with pytest.raises(WeightsError, match="not floating point" if dtype == torch.int32 else "another precision"):
        load_model(run)


def test_a_run_json_of_an_earlier_version_keeps_loading(run):
    """Only the keys aelab relies on are required; others may be missing, new ones may be added."""
    rec = json.loads((run / "run.json").read_text())
    old = {"config_hash": rec["config_hash"], "weights_sha256": rec["weights_sha256"], "aelab_version": "0.0.9",
           "device": "cpu", "engine": "StackedDenseStepper", "some_later_key": {"x": 1}}
    (run / "run.json").write_text(json.dumps(old))
    model, cfg = load_model(run)
    assert cfg.name == _cfg().name
    assert read_result(RunSpec.of(_cfg(), run)).metrics["n_test"] == 80


def test_a_run_records_each_file_format_and_one_from_a_newer_aelab_is_refused(run):
    """run.json says which version of each file's format the run was written in; a reader that does not
    know a newer version refuses the run in one line instead of misreading it."""
    rec = json.loads((run / "run.json").read_text())
    assert rec["formats"] == RUN_FORMATS and all(name in RUN_LAYOUT for name in RUN_FORMATS)
    rec["formats"]["metrics.json"] = RUN_FORMATS["metrics.json"] + 1
    (run / "run.json").write_text(json.dumps(rec))
    with pytest.raises(WeightsError) as err:
        load_model(run)
    msg = str(err.value)
    assert "\n" not in msg and "metrics.json is in a newer format" in msg and "upgrade aelab" in msg


# -- starting weights -----------------------------------------------------------------------------------
def _init_file(trained: Path, tmp_path: Path, dtype) -> Path:
    sd = {k: v.to(dtype) for k, v in load_file(str(trained / "weights.safetensors")).items()}
    path = tmp_path / f"init-{str(dtype).split('.')[-1]}.safetensors"
    save_file(sd, str(path))
    return path


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_init_weights_are_refused(trained, tmp_path, capsys, dtype):
    init = _init_file(trained, tmp_path, dtype)
    out = tmp_path / "out"
    assert main(["train", *SYN, "--epochs", "1", "-q", "--init-weights", str(init), "--out", str(out)]) == 2
    err = one_line(capsys)
    assert "init_weights" in err and "not floating point" in err
    assert not out.exists()


def test_float64_init_weights_train_with_one_warning_line(trained, tmp_path, capsys):
    init = _init_file(trained, tmp_path, torch.float64)
    out = tmp_path / "out"
    assert main(["train", *SYN, "--epochs", "1", "-q", "--init-weights", str(init), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("aelab: warning:")]
    assert len(warnings) == 1 and "float64" in warnings[0] and "init_weights" in warnings[0], err
    assert "error" not in err


# -- JSON of the wrong shape: one line naming the file ----------------------------------------------------
WRONG = ["[1, 2]", "[1, 2, 3]", "3", "null", '"text"', '{"loss": "x"}']


@pytest.mark.parametrize("content", WRONG)
@pytest.mark.parametrize("name", ["run.json", "config.json", "history.json", "metrics.json"])
def test_an_artifact_of_the_wrong_shape_is_one_line_naming_it(run, capsys, name, content):
    (run / name).write_text(content)
    if name in ("run.json", "config.json"):  # what load_model reads
        assert main(["latent", str(run), "--no-baselines", "-q", "--methods", "pca"]) == 2
        assert name in one_line(capsys)
        assert not (run / "latent").exists()
    assert main(["train", "--resume", str(run), "-q"]) == 2
    assert name in one_line(capsys)
    if name != "config.json":  # a cached run is reused only when every artifact is valid
        with pytest.raises(AelabError, match=name.replace(".", r"\.")):
            train_runs([_cfg()], [run], device="cpu", progress=False)


@pytest.mark.parametrize("field,value", [("loss", []), ("val_loss", [1.0, 2.0]), ("loss", [1, "x"]),
                                         ("epoch_seconds", "fast"), ("terms", [1])])
def test_a_history_with_wrong_values_is_refused(run, field, value):
    h = json.loads((run / "history.json").read_text())
    h[field] = value
    (run / "history.json").write_text(json.dumps(h))
    with pytest.raises(AelabError, match=r"history\.json is not a valid training history"):
        read_result(RunSpec.of(_cfg(), run))


@pytest.mark.parametrize("content", ["[1, 2]", '{"runs": {"a": [1]}}', '{"runs": {"a": {"history": {"loss": "x"}}}}',
                                     '{"study": "s", "runs": {}, "points": [{"value": 1}]}',
                                     '{"study": "s", "runs": {"a": {"metrics": {"ssim": "x"}}}}',
                                     '{"study": "s", "runs": {"a": {"metrics": {"code": 3}}}}',
                                     '{"study": "s", "runs": {}, "replicates": {"runs": {"a": [3]}}}',
                                     '{"study": "s", "runs": {}, "corrected": {"runs": {"a": {"history": []}}}}'])
def test_report_of_a_results_json_of_the_wrong_shape_is_one_line(tmp_path, capsys, content):
    (tmp_path / "results.json").write_text(content)
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in one_line(capsys)


# -- arrays ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["codes as integers", "codes 1-D", "index missing", "index too short", "labels as floats",
                                    "index past the data", "codes too wide"])
def test_a_codes_file_of_the_wrong_shape_is_one_line(run, capsys, change):
    path = run / "codes.npz"
    with np.load(path) as npz:
        a = {k: np.asarray(npz[k]) for k in npz.files}
    if change == "codes as integers":
        a["test_codes"] = a["test_codes"].astype(np.int64)
    elif change == "codes 1-D":
        a["train_codes"] = a["train_codes"][:, 0]
    elif change == "index missing":
        a.pop("train_index")
    elif change == "index too short":
        a["test_index"] = a["test_index"][:-1]
    elif change == "labels as floats":
        a["train_labels"] = a["train_labels"].astype(np.float32)
    elif change == "index past the data":
        a["test_index"] = a["test_index"] + 10_000
    else:
        a["train_codes"] = np.concatenate([a["train_codes"]] * 2, axis=1)
        a["test_codes"] = np.concatenate([a["test_codes"]] * 2, axis=1)
    np.savez(path, **a)
    assert main(["latent", str(run), "-q", "--methods", "pca"]) == 2
    assert "codes.npz" in one_line(capsys)
    assert not (run / "latent").exists()


def test_a_samples_file_of_the_wrong_shape_is_one_line(run, capsys):
    np.savez(run / "samples.npz", original=np.zeros((10, 3), np.int64), recon=np.zeros((10, 3), np.int64))
    assert main(["latent", str(run), "--no-baselines", "-q", "--methods", "pca"]) == 2
    assert "samples.npz" in one_line(capsys)


# -- checkpoints ----------------------------------------------------------------------------------------------
def _checkpointed(tmp_path: Path) -> Path:
    """A run stopped after its first epoch (of two), its checkpoint left behind."""
    from aelab.runs import EpochEnded, Interrupted, Stop

    rd = tmp_path / "ck"
    cfg = make_cfg(**{"data.limit": 400, "data.test_limit": 80, "train.epochs": 2})
    stop = Stop()
    with pytest.raises(Interrupted):
        train_runs([cfg], [rd], device="cpu", progress=False, stop=stop,
                   on_event=lambda ev: isinstance(ev, EpochEnded) and stop.set("SIGTERM"))
    assert (rd / "checkpoint" / "state.json").exists()
    return rd


@pytest.mark.parametrize("damage", ["state.json a list", "epoch a string", "epoch past the run", "history too short",
                                    "no elapsed", "int tensors, hash updated",
                                    "float64 tensors, hash updated", "a tensor missing, hash updated",
                                    "state.safetensors changed"])
def test_a_damaged_checkpoint_is_not_used_and_says_so(tmp_path, capsys, damage):
    rd = _checkpointed(tmp_path)
    ck = rd / "checkpoint"
    meta = json.loads((ck / "state.json").read_text())
    if damage == "state.json a list":
        (ck / "state.json").write_text("[1, 2]")
    elif damage in ("epoch a string", "epoch past the run", "history too short", "no elapsed"):
        if damage == "epoch a string":
            meta["epoch"] = "1"
        elif damage == "epoch past the run":
            meta["epoch"] = 7
        elif damage == "history too short":
            meta["history"] = {k: v[:0] if isinstance(v, list) else v for k, v in meta["history"].items()}
        else:
            del meta["elapsed"]
        (ck / "state.json").write_text(json.dumps(meta))
    elif damage == "state.safetensors changed":
        t = load_file(str(ck / "state.safetensors"))
        save_file({k: v + 1 if v.is_floating_point() else v for k, v in t.items()}, str(ck / "state.safetensors"))
    else:
        t = load_file(str(ck / "state.safetensors"))
        if damage.startswith("int") or damage.startswith("float64"):
            dt = torch.int64 if damage.startswith("int") else torch.float64
            t = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in t.items()}
        else:
            t.pop(next(k for k in t if k.startswith("adam.m.")))
        save_file(t, str(ck / "state.safetensors"))
        meta["state_sha256"] = _sha256(ck / "state.safetensors")
        (ck / "state.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["train", "--resume", str(rd), "-q"]) == 0
    out = capsys.readouterr()
    warnings = [line for line in out.err.splitlines() if line.startswith("aelab: warning:")]
    assert len(warnings) == 1 and "trains from the start" in warnings[0] and "Traceback" not in out.err, out.err
    h = json.loads((rd / "history.json").read_text())
    assert h["epoch"] == [1, 2]
    load_model(rd)


# -- the lock file: its note is read back too ----------------------------------------------------------------
HOLD_WRONG_SHAPE = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".aelab.lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, sys.argv[2].encode())
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("note", ["[1, 2]", '{"pid": [1], "since": {"a": 1}}', "null"])
def test_a_lock_note_of_the_wrong_shape_is_one_line(tmp_path, note):
    import subprocess
    import sys

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRONG_SHAPE, str(out), note], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([sys.executable, "-m", "aelab.cli", "train", *SYN, "--epochs", "1", "-q", "--out", str(out),
                            "--overwrite"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("aelab: error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert "is in use by" in r.stderr
    finally:
        holder.kill()
        holder.communicate()
