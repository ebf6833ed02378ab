"""The Ray backend on a local Ray instance (2 CPUs, loopback, started once for this module and shut
down after it): the same bits as the local backend, with and without a shared filesystem; Ctrl-C,
resume, the NaN guard and the cache behave as on the local backend."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from aelab.engine.loop import Interrupted, StopFlag  # noqa: E402
from aelab.errors import TrainingError  # noqa: E402
from aelab.runs import train_runs  # noqa: E402
from aelab.study import load_study, run_study  # noqa: E402
from aelab.study import run_dir_for  # noqa: E402

EXE = [sys.executable, "-m", "aelab.cli"]
#: Bounds, so that a hung Ray instance (or a machine far too slow) fails tests by name instead of
#: blocking CI: each test (and starting Ray) gets TEST_LIMIT_S, the module MODULE_LIMIT_S; a test
#: past its bound fails with a message, a test that begins after the module's time is spent fails
#: at once, named. Never a kill of pytest itself (it used to end the whole run, exit 1, no word).
TEST_LIMIT_S = float(os.environ.get("AELAB_RAY_TEST_LIMIT_S", 300))
MODULE_LIMIT_S = float(os.environ.get("AELAB_RAY_TESTS_LIMIT_S", 1200))


class _Bound:
    """SIGALRM after ``limit`` seconds fails the running test (or fixture) with ``what`` in the
    message; the wait it interrupts (a Ray call, a pipe, a sleep) raises out of the test."""

    def __init__(self, limit: float, what: str) -> None:
        self.limit, self.what = limit, what

    def _overdue(self, signum, frame) -> None:
        pytest.fail(f"{self.what} ran past its {self.limit:.0f} s bound (a hung Ray instance, or a machine too "
                    "slow for it: AELAB_RAY_TEST_LIMIT_S / AELAB_RAY_TESTS_LIMIT_S raise the bounds)")

    def __enter__(self) -> "_Bound":
        self.old = signal.signal(signal.SIGALRM, self._overdue)
        signal.setitimer(signal.ITIMER_REAL, max(self.limit, 0.001))
        return self

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)


@pytest.fixture(scope="module", autouse=True)
def _module_deadline():
    return time.monotonic() + MODULE_LIMIT_S


@pytest.fixture(autouse=True)
def _bounded(request, _module_deadline):
    left = _module_deadline - time.monotonic()
    if left <= 0:
        pytest.fail(f"{request.node.name} did not run: the Ray tests' {MODULE_LIMIT_S:.0f} s were spent before it "
                    "began (AELAB_RAY_TESTS_LIMIT_S raises the bound)")
    with _Bound(min(TEST_LIMIT_S, left), request.node.name):
        yield

STUDY = """
title = "backends"
description = "two dense shapes that stack, a penalised variant, and a convolutional AE (its bits depend on threads)"
[defaults]
data.dataset = "synthetic"
data.limit = 256
data.test_limit = 64
train.epochs = 2
[baselines.small]
model.encoder = ["32:relu"]
model.decoder = ["784:sigmoid"]
[baselines.deep]
model.encoder = ["64:relu", "32:relu"]
model.decoder = ["64:relu", "784:sigmoid"]
[baselines.conv]
preset = "keras-blog-conv"
train.epochs = 1
data.dataset = "synthetic"  # a preset's own settings win over [defaults]
data.limit = 256
data.test_limit = 64
[variants.small_l1]
base = "small"
model.activity_l1 = 1e-3
"""

#: long enough to interrupt (three groups: batch sizes never stack), short enough to train twice
LONG = """
title = "long"
description = "three groups of one run each, long enough to interrupt"
[defaults]
data.dataset = "synthetic"
data.limit = 512
data.test_limit = 64
train.epochs = 20
[baselines.b16]
train.batch_size = 16
[baselines.b32]
train.batch_size = 32
[baselines.b48]
train.batch_size = 48
"""


@pytest.fixture(scope="module")
def ray_address():
    try:
        with _Bound(TEST_LIMIT_S, "starting a local Ray instance"):
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     _node_ip_address="127.0.0.1")
    except BaseException:
        ray.shutdown()  # whatever it had started
        raise
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _study(tmp_path: Path, text: str, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_study(str(path))


def same_run(a: Path, b: Path) -> None:
    """Weights byte for byte; history and metrics exactly, all but the wall-clock timings."""
    assert (a / "weights.safetensors").read_bytes() == (b / "weights.safetensors").read_bytes(), a.name
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    for h in (ha, hb):
        del h["epoch_seconds"], h["images_per_second"]
    assert ha == hb, a.name
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text(), a.name


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    study = _study(tmp, STUDY, "backends")
    run_study(study, tmp / "out", device="cpu", progress=False, report=False, workers=2)
    return study, tmp / "out"


@pytest.fixture(scope="module")
def long_ref(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("long")
    study = _study(tmp, LONG, "long")
    run_study(study, tmp / "out", device="cpu", progress=False, report=False, workers=2)
    return tmp / "long.toml", study, tmp / "out"


@pytest.mark.parametrize("shared", [True, False], ids=["shared-fs", "files-travel-back"])
def test_a_quick_study_on_ray_is_bit_identical_to_the_local_backend(ray_address, local_ref, tmp_path, shared):
    study, ref = local_ref
    out = tmp_path / "ray"
    res = run_study(study, out, device="cpu", progress=False, report=False, backend="ray", shared_fs=shared)
    assert res["backend"] == "ray"
    for cfg in study.runs.values():
        rd = run_dir_for(out, cfg)
        assert (rd / "DONE").exists() and not (rd / "checkpoint").exists()
        same_run(run_dir_for(ref, cfg), rd)
    # the conv AE trains on its worker's share of the cores, whichever backend runs it
    runs = [json.loads((run_dir_for(d, study.runs["conv"]) / "run.json").read_text()) for d in (ref, out)]
    assert runs[0]["threads"] == runs[1]["threads"] == 1


def test_a_finished_study_on_ray_is_read_from_its_run_directories(ray_address, local_ref, monkeypatch):
    """The cache by config hash: nothing to train, so no Ray task (and no Ray connection) at all."""
    from aelab.runs.executors.ray import RayExecutor

    study, ref = local_ref
    monkeypatch.setattr(RayExecutor, "connect", lambda self: pytest.fail("connected to Ray with nothing to train"))
    res = run_study(study, ref, device="cpu", progress=False, report=False, backend="ray")
    assert set(res["runs"]) == set(study.runs)


def test_stopped_on_ray_then_resumed_on_ray_gives_the_uninterrupted_bits(ray_address, long_ref, tmp_path):
    _, study, ref = long_ref
    cut = tmp_path / "cut"
    stop = StopFlag()

    def stop_after_first_checkpoint() -> None:  # the shared filesystem shows the tasks' checkpoints
        deadline = time.monotonic() + 120
        while not list(cut.glob("runs/*/checkpoint/state.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.request("SIGINT")

    watcher = threading.Thread(target=stop_after_first_checkpoint, daemon=True)
    watcher.start()
    with pytest.raises(Interrupted, match=r"^SIGINT: training stopped; checkpoint saved for ") as err:
        run_study(study, cut, device="cpu", progress=False, report=False, stop=stop, backend="ray")
    watcher.join()
    held = [rd for rd in (cut / "runs").iterdir() if (rd / "checkpoint" / "state.json").exists()]
    assert held and not any((rd / "DONE").exists() for rd in held), str(err.value)
    # resumed without a shared filesystem: the driver ships each checkpoint to its task
    run_study(study, cut, device="cpu", progress=False, report=False, backend="ray", shared_fs=False)
    for cfg in study.runs.values():
        same_run(run_dir_for(ref, cfg), run_dir_for(cut, cfg))


def test_sigint_to_the_cli_on_a_ray_cluster_checkpoints_says_how_to_resume_and_resumes(ray_address, long_ref,
                                                                                     tmp_path):
    """The real thing, through an existing cluster (--address: files travel back to the driver)."""
    toml, _, ref = long_ref
    cut = tmp_path / "cut"
    base = ["study", str(toml), "--no-report"]
    cmd = [*base, "--backend", "ray", "--address", ray_address, "--out", str(cut)]
    proc = subprocess.Popen([*EXE, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # in a log (not a terminal) the overall bar prints a line per tenth of the work: an epoch
        # has finished, so a checkpoint exists on the node
        first = ""
        while proc.poll() is None and "training:" not in first:
            first = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the bound (or a failure) left it running
            proc.kill()
            proc.communicate()
    err = first + rest
    if proc.returncode == 0:
        pytest.skip("the study finished before the signal arrived")
    runs = list((cut / "runs").iterdir()) if (cut / "runs").exists() else []
    if "training stopped" not in err and runs and all((rd / "DONE").exists() for rd in runs):
        pytest.skip("the signal arrived after training had ended (a machine too loaded to send it sooner)")
    assert proc.returncode == 130, err
    assert "aelab: SIGINT: training stopped; " in err and "Traceback" not in err, err
    assert f"resume with: aelab {shlex.join(cmd)}" in err
    # each run finished, holds the checkpoint its task sent back, or left nothing (it never began:
    # under load a fast group may finish, and a task still waiting for a worker, never start)
    held = [rd for rd in runs if (rd / "checkpoint" / "state.json").exists()]
    done = [rd for rd in runs if (rd / "DONE").exists()]
    assert not set(held) & set(done) and set(held) | set(done) == set(runs), runs
    assert ("checkpoint saved for " in err) == bool(held) and (f"{len(done)} finished" in err) == bool(done), err
    r = subprocess.run([*EXE, *cmd, "-q"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    for rd in (ref / "runs").iterdir():
        same_run(rd, cut / "runs" / rd.name)


def test_a_nan_on_a_ray_node_names_the_run_and_node_and_keeps_the_last_good_checkpoint(ray_address, tmp_path):
    from aelab.config import RunConfig

    cfg = RunConfig().with_overrides({
        "data.dataset": "synthetic", "data.limit": 256, "data.test_limit": 64, "train.epochs": 8,
        "train.batch_size": 256, "model.encoder": ["32:linear"], "model.decoder": ["784:linear"],
        "train.loss": "mse", "train.lr": 1e6, "name": "diverges"})
    rd = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"of diverges became nan at epoch 3; .* \(on Ray node .+, training diverges\)"):
        train_runs([cfg], [rd], device="cpu", progress=False, backend="ray", shared_fs=False)
    meta = json.loads((rd / "checkpoint" / "state.json").read_text())
    assert (meta["epoch"], meta["batch"]) == (2, 0) and not (rd / "DONE").exists()
