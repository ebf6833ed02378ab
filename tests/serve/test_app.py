"""The lab server's routes without a browser (Starlette's TestClient): the workspace page and its run
statuses, the train form's validation (the CLI's rules, each error beside its field), training in
the background with its event stream, stop/pause/step/resume (bit for bit), one writer per run
directory, the studies page, and ``aelab serve`` itself stopped by Ctrl-C while it trains."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings

import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 but works with httpx (the test extra's)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

import aelab  # noqa: E402
import aelab.presets  # noqa: E402
import aelab.runs.plan  # noqa: E402
from aelab.artifacts import sha256_file  # noqa: E402
from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.training import config_from_form  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402

BASE = "http://127.0.0.1:8765"
LIMIT_S = 120  # the most any wait here takes before it fails by name


def digits(epochs: int, **ov):
    return aelab.fit_config(aelab.RunConfig().with_overrides(
        {"data.dataset": "digits", "train.epochs": epochs, "name": "d", **ov}))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workspace holding one finished digits run (2 epochs), trained once for the module."""
    root = tmp_path_factory.mktemp("ws")
    aelab.train(digits(2), root / "runs" / "done")
    return root


@pytest.fixture
def ws(tmp_path, finished):
    root = tmp_path / "ws"
    shutil.copytree(finished, root, ignore=shutil.ignore_patterns(".aelab.lock"))
    return Workspace(root)


@pytest.fixture
def client(ws):
    with TestClient(create_app(ws), base_url=BASE) as c:
        yield c


def wait(cond, what: str, limit: float = LIMIT_S):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


def wait_job(client, rel: str, states=("finished", "failed", "stopped", "paused")):
    job = client.app.state.trainer.jobs[rel]
    wait(lambda: not job.alive and job.state in states, f"{rel} to end (state {job.state})")
    return job


# -- the workspace page ----------------------------------------------------------------------------------
def test_workspace_lists_runs_with_their_status(ws, client):
    root = ws.root
    shutil.copytree(root / "runs" / "done", root / "runs" / "damaged")
    w = root / "runs" / "damaged" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")  # the weights no longer match run.json's SHA-256
    stop = aelab.runs.Stop()
    with pytest.raises(aelab.runs.Interrupted):
        aelab.train(digits(3), root / "runs" / "half",
                    on_event=lambda ev: stop.set() if isinstance(ev, aelab.runs.events.EpochEnded) else None, stop=stop)
    runs = {r["rel"]: r for r in client.get("/api/runs").json()["runs"]}
    assert runs["runs/done"]["status"] == "finished"
    assert runs["runs/done"]["family"] == "ae" and runs["runs/done"]["data"] == "digits"
    assert runs["runs/done"]["epochs_done"] == 2 and runs["runs/done"]["final"]["val_loss"] > 0
    assert runs["runs/damaged"]["status"] == "damaged" and "modified after training" in runs["runs/damaged"]["problem"]
    assert runs["runs/half"]["status"] == "interrupted" and runs["runs/half"]["epochs_done"] == 1
    page = client.get("/").text
    for rel, status in (("runs/done", "finished"), ("runs/damaged", "damaged"), ("runs/half", "interrupted")):
        row = re.search(rf'<tr data-run="{rel}">.*?</tr>', page, re.S).group(0)
        assert f'class="status {status}"' in row
    assert 'src="/files/runs/done/recon.png"' in page
    r = client.get("/files/runs/done/recon.png")
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_workspace_lists_studies_with_their_report(ws, client):
    out = ws.root / "studies-out" / "exercise12-quick"
    (out / "runs").mkdir(parents=True)
    (out / ".aelab-output.json").write_text(json.dumps({"format": "aelab-output", "kind": "study"}))
    (out / "report.html").write_text("<html><body>the report</body></html>")
    page = client.get("/").text
    assert "exercise12-quick" in page
    assert 'href="/files/studies-out/exercise12-quick/report.html"' in page
    assert "the report" in client.get("/files/studies-out/exercise12-quick/report.html").text
    assert 'href="/files/studies-out/exercise12-quick/report.html"' in client.get("/studies").text


def test_every_page_renders_with_the_nav(client):
    for url in ("/", "/train", "/train?preset=keras-io-vae", "/train?family=vae", "/studies", "/train/run/runs/done"):
        r = client.get(url)
        assert r.status_code == 200, url
        for label in ("Workspace", "Train", "Draw", "Explore", "Studies"):
            assert f">{label}</a>" in r.text, (url, label)
        assert "http://" not in r.text and "https://" not in r.text.replace('href="https://', "")  # no CDN
    assert client.get("/static/lab.css").status_code == 200
    assert client.get("/static/run.js").headers["content-type"].startswith("text/javascript")


# -- the train form ----------------------------------------------------------------------------------------
def field_error(html: str, key: str) -> str:
    m = re.search(rf'<div class="field invalid[^"]*" data-key="{re.escape(key)}">.*?<span class="err"[^>]*>([^<]*)</span>',
                  html, re.S)
    assert m, f"no error beside {key}"
    return html_lib.unescape(m.group(1))


def test_form_errors_are_shown_beside_their_field(client, ws):
    r = client.post("/train", data={"family": "ae", "train.epochs": "0"})
    assert r.status_code == 400
    assert field_error(r.text, "train.epochs") == "got 0; input should be greater than or equal to 1"
    r = client.post("/train", data={"family": "ae", "train.lr": "fast"})
    assert field_error(r.text, "train.lr") == "give a number such as 0.001 (got 'fast')"
    r = client.post("/train", data={"family": "ae", "model.encoder": "32:sigmoidd"})
    assert "unknown activation 'sigmoidd'" in field_error(r.text, "model.encoder")
    r = client.post("/train", data={"family": "vae", "model.beta": "-1"})
    assert "greater than or equal to 0" in field_error(r.text, "model.beta")
    r = client.post("/train", data={"family": "ae", "train.batch_size": "500", "data.limit": "100"})
    assert "larger than the data set" in field_error(r.text, "train.batch_size")
    r = client.post("/train", data={"family": "ae", "name": "../evil"})
    assert "letters, digits" in field_error(r.text, "name")
    assert 'value="../evil"' in r.text  # what the learner typed is kept
    assert not (ws.root / "runs").joinpath("evil").exists() and sorted(p.name for p in (ws.root / "runs").iterdir()) == ["done"]


def test_form_uses_the_cli_rules():
    cfg, errors = config_from_form({"family": "ae", "code_size": "8", "train.epochs": "3"})
    assert not errors
    assert cfg.model.layers_text(cfg.model.encoder) == ["8:relu"] and cfg.model.input_shape == (1, 8, 8)
    assert cfg.name == "8relu-64sigmoid-digits"
    cli = aelab.runs.plan.run_config(aelab.RunConfig(), {"data.dataset": "digits", "model.encoder": ["8:relu"],
                                                         "train.epochs": 3})
    assert cfg.hash() == cli.hash()  # the same run as `aelab train --dataset digits --encoder 8:relu --epochs 3`
    cfg, errors = config_from_form({"preset": "pytorch-vae", "family": "vae"})
    assert not errors and cfg.name == "pytorch-vae" and cfg.hash() == aelab.runs.plan.run_config(
        aelab.presets.load_preset("pytorch-vae")).hash()
    _, errors = config_from_form({"preset": "no-such-preset"})
    assert "unknown preset" in errors["preset"]


# -- training from the page --------------------------------------------------------------------------------
def read_events(client, url: str, until, limit: float = LIMIT_S) -> list[dict]:
    """The server-sent events of ``url`` until ``until(event)`` is true (fails by name after ``limit``)."""
    got: list[dict] = []
    box: dict = {}

    def reader():
        try:
            with client.stream("GET", url) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        ev = json.loads(line[6:])
                        assert ev["type"] == kind
                        got.append(ev)
                        if until(ev):
                            return
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            box["error"] = exc

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(limit)
    if "error" in box:
        raise box["error"]
    assert not t.is_alive(), f"timed out after {limit:.0f} s reading {url}; got {[e['type'] for e in got]}"
    return got


def test_train_from_the_page_streams_epochs(client, ws):
    r = client.post("/train", data={"family": "ae", "train.epochs": "3", "code_size": "16"}, follow_redirects=False)
    assert r.status_code == 303
    url = r.headers["location"]
    assert url == "/train/run/runs/16relu-64sigmoid-digits"
    events = read_events(client, url + "/events", lambda ev: ev["type"] == "state" and ev["state"] == "finished")
    assert events[0]["type"] == "snapshot"
    epochs = [ev for ev in events if ev["type"] == "epoch"]
    assert [ev["epoch"] for ev in epochs] == [1, 2, 3]
    assert set(epochs[0]["train"]) >= {"loss", "reconstruction"} and "loss" in epochs[0]["val"]
    assert epochs[-1]["val"]["loss"] < epochs[0]["val"]["loss"]  # it learns
    recon = [ev for ev in events if ev["type"] == "recon"]
    assert recon and recon[-1]["shape"] == [1, 8, 8] and recon[-1]["n"] == 10
    # the test codes' map, redrawn each epoch: 300 digits, their 16-D codes on the PCA plane
    codes = [ev for ev in events if ev["type"] == "codes"]
    assert codes and codes[-1]["method"] == "pca" and codes[-1]["dims"] == 16 and codes[-1]["n"] == 300
    assert len(codes[-1]["xy"]) == 600 and len(codes[-1]["labels"]) == 300 and set(codes[-1]["labels"]) == set(range(10))
    run_dir = ws.root / "runs" / "16relu-64sigmoid-digits"
    assert (run_dir / "DONE").is_file()
    assert json.loads((run_dir / "history.json").read_text())["val_loss"][-1] == pytest.approx(epochs[-1]["val"]["loss"])
    # a page opened later gets the whole history at once
    snap = read_events(client, url + "/events", lambda ev: ev["type"] == "snapshot")[0]
    assert snap["state"] == "finished" and len(snap["history"]["val_loss"]) == 3
    # the same directory again: a fresh one beside it, never an overwrite
    r = client.post("/train", data={"family": "ae", "train.epochs": "3", "code_size": "16"}, follow_redirects=False)
    assert r.headers["location"].startswith(url + "-")
    wait_job(client, r.headers["location"].removeprefix("/train/run/"))


def test_the_code_map_is_the_code_or_its_pca_plane_turned_to_the_last_epoch():
    import numpy as np

    from aelab.serve.training import map_points

    z2 = np.array([[1.0, 2.0], [3.0, -1.0]])
    xy, how = map_points(z2)
    assert how == "code" and xy.tolist() == z2.tolist()
    xy, how = map_points(np.array([[1.0], [-2.0]]))
    assert how == "code" and xy.tolist() == [[1.0, 0.0], [-2.0, 0.0]]
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5)) * np.array([5.0, 3.0, 0.1, 0.1, 0.1])
    first, how = map_points(z)
    assert how == "pca" and first.shape == (200, 2)
    for j in range(2):  # the plane of the two wide axes, in their order
        assert abs(np.corrcoef(first[:, j], z[:, j])[0, 1]) > 0.99
    # PCA's axes have no sign or order of their own: whatever the last map's turn (a flip, a swap, a
    # rotation), the same codes are turned onto it exactly, without a stretch — no jump on the page
    for turn in ([[0.0, 1.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 1.0]], [[0.6, -0.8], [0.8, 0.6]]):
        last = first @ np.array(turn)
        again, _ = map_points(z, last)
        assert np.allclose(again, last, atol=1e-9)
    # codes that moved a little stay close to where they were
    moved = z + rng.normal(size=z.shape) * 0.05
    nxt, _ = map_points(moved, first @ np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert np.abs(nxt - first @ np.array([[0.0, 1.0], [1.0, 0.0]])).max() < 0.5


def test_stop_pause_step_resume_give_the_uninterrupted_weights(client, ws, tmp_path):
    cfg = digits(4, name="sr")
    trainer = client.app.state.trainer
    run_dir = ws.root / "runs" / "sr"
    job = trainer.start(cfg, run_dir, pause_after=1)  # pauses at the end of epoch 1
    wait_job(client, "runs/sr")
    assert job.state == "paused" and job.epoch == 1
    # the engine checks its flag before each step: the pause is taken at batch 0 of epoch 2
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 0), state
    assert client.get("/api/runs").json()["runs"][0]["status"] in ("interrupted", "finished")
    r = client.post("/train/run/runs/sr/step")  # one more epoch, then pause again
    assert r.status_code == 200 and r.json()["ok"]
    job = wait_job(client, "runs/sr")
    assert job.state == "paused" and job.epoch == 2, job.message
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["batch"]) == (2, 0), state
    assert not (run_dir / "DONE").exists()
    r = client.post("/train/run/runs/sr/resume")
    assert r.json()["ok"]
    job = trainer.jobs["runs/sr"]
    wait(lambda: job.epoch >= 3 or not job.alive, "epoch 3")
    r = client.post("/train/run/runs/sr/stop")
    assert r.json()["ok"] or r.json()["message"].endswith("not training in this server")
    job = wait_job(client, "runs/sr")
    if job.state == "stopped":  # stopped mid-epoch: a checkpoint, resumed to the end
        assert (run_dir / "checkpoint" / "state.json").is_file()
        assert client.post("/train/run/runs/sr/resume").json()["ok"]
        job = wait_job(client, "runs/sr")
    assert job.state == "finished", job.message
    ref = aelab.train(cfg, tmp_path / "ref")
    assert sha256_file(run_dir / "weights.safetensors") == sha256_file(ref.run_dir / "weights.safetensors")
    assert json.loads((run_dir / "history.json").read_text())["loss"] == ref.history["loss"]


def test_one_writer_per_run_directory(client, ws, tmp_path):
    trainer = client.app.state.trainer
    cfg = digits(1000, name="long")  # long enough never to finish before the stop below
    job = trainer.start(cfg, ws.root / "runs" / "long")
    try:
        wait(lambda: job.epoch >= 1, "the first epoch")
        with pytest.raises(aelab.errors.AelabError, match="already training here"):
            trainer.start(cfg, ws.root / "runs" / "long")
        r = client.post("/train/run/runs/long/resume")
        assert r.status_code == 409 and "training already" in r.json()["message"]
    finally:
        trainer.stop("runs/long")
        wait_job(client, "runs/long")
    assert job.state == "stopped"
    # another process owns the directory: its lock's one line reaches the page
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom aelab._lock import dir_lock\n"
                               "with dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n",
                               str(ws.root / "runs" / "long")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert client.post("/train/run/runs/long/resume").json()["ok"]
        job = wait_job(client, "runs/long")
        assert job.state == "failed" and "is in use by aelab process" in job.message
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


def test_closing_the_stream_does_not_stop_training(client, ws):
    r = client.post("/train", data={"family": "ae", "train.epochs": "3", "name": "tab"}, follow_redirects=False)
    read_events(client, r.headers["location"] + "/events", lambda ev: ev["type"] == "epoch")  # the tab closes
    job = wait_job(client, "runs/tab")
    assert job.state == "finished" and (ws.root / "runs" / "tab" / "DONE").is_file()


def test_a_server_that_stops_checkpoints_what_trains(ws):
    app = create_app(ws)
    with TestClient(app, base_url=BASE) as c:
        c.post("/train", data={"family": "ae", "train.epochs": "50", "name": "cut"})
        job = app.state.trainer.jobs["runs/cut"]
        wait(lambda: job.epoch >= 1, "the first epoch")
    # leaving the client ran the app's shutdown: the training checkpointed and its thread ended
    assert not job.alive and job.state == "stopped"
    assert (ws.root / "runs" / "cut" / "checkpoint" / "state.json").is_file()
    assert not (ws.root / "runs" / "cut" / "DONE").exists()


# -- studies -----------------------------------------------------------------------------------------------
def test_studies_page_lists_and_refuses(client):
    page = client.get("/studies").text
    for name in aelab.catalog.studies():
        assert f'value="{name}"' in page
    r = client.post("/studies", data={"study": "nope", "quick": "1"})
    assert r.status_code == 409 and "unknown study" in r.text
    r = client.post("/studies", data={"study": "exercise12", "quick": "1", "dataset": "cifar"})
    assert r.status_code == 409 and "choose one of" in r.text


def test_a_study_launched_from_the_page_streams_its_runs_and_stops(client, ws):
    launcher = client.app.state.launcher
    launcher.workers = 1  # in this process: the test's budget has no room for worker start-ups
    job = launcher.launch("exercise12", quick=True, dataset="synthetic",
                          overrides={"data.limit": 128, "data.test_limit": 32, "train.epochs": 3})
    assert job.rel == "studies-out/exercise12-quick-synthetic-limit128-test_limit32-epochs3"
    with pytest.raises(aelab.errors.AelabError, match="running already"):
        launcher.launch("exercise12", quick=True, dataset="synthetic",
                        overrides={"data.limit": 128, "data.test_limit": 32, "train.epochs": 3})
    events = read_events(client, f"/studies/job/{job.rel}/events",
                         lambda ev: ev["type"] == "run" and ev["epoch"] >= 1)
    assert events[0]["type"] == "snapshot"
    assert any(ev["type"] == "progress" and ev["total"] > 0 for ev in events)
    r = client.post(f"/studies/job/{job.rel}/stop")
    assert r.json()["ok"]
    wait(lambda: not job.alive and job.state in ("stopped", "finished"), "the study to stop")
    assert job.state == "stopped" and "launch it again to resume" in job.message
    assert client.get(f"/studies/job/{job.rel}").status_code == 200
    assert not (ws.root / job.rel / "results.json").exists()
    # the workspace lists the study's runs, interrupted, under the study
    runs = [r for r in client.get("/api/runs").json()["runs"] if r["study"] == job.rel]
    assert runs and {r["status"] for r in runs} <= {"interrupted", "finished"}


def test_a_sweep_from_the_page_trains_each_value_and_links_its_report(client, ws):
    page = client.get("/studies").text
    assert '<option value="exercise12:lab_denoising" selected>lab_denoising (exercise12)</option>' in page
    # every field's error is the CLI's one line, beside the form
    for form, needle in (({"baseline": "exercise12:nope", "param": "train.lr", "values": "0.1"}, "is not a run of study"),
                         ({"baseline": "exercise12:lab_undercomplete", "param": "train.lr", "values": "1..2"},
                          "the range has no COUNT"),
                         ({"baseline": "exercise12:lab_undercomplete", "param": "model.nope", "values": "1,2"}, "nope"),
                         ({"baseline": "nostudy:x", "param": "train.lr", "values": "1,2"}, "unknown study")):
        r = client.post("/studies/sweep", data={**form, "quick": "1", "dataset": "digits"})
        assert r.status_code == 400, r.status_code
        m = re.search(r'id="sweep-error"[^>]*>(.*?)</p>', r.text, re.S)
        assert m and needle in html_lib.unescape(m.group(1)), (needle, m and m.group(1))
    assert not client.app.state.launcher.jobs
    launcher = client.app.state.launcher
    launcher.workers = 1  # in this process: the test's budget has no room for worker start-ups
    job = launcher.launch_sweep("exercise12", "lab_undercomplete", "train.lr", "0.001,0.01", quick=True,
                                dataset="digits", overrides={"train.epochs": 2})
    assert job.kind == "sweep" and job.rel == "studies-out/sweep-lab_undercomplete-lr-quick-digits-epochs2"
    events = read_events(client, f"/studies/job/{job.rel}/events",
                         lambda ev: ev["type"] == "state" and ev["state"] in ("finished", "failed", "stopped"), 240)
    assert events[-1]["state"] == "finished", events[-1]
    runs = {ev["index"]: ev for ev in events if ev["type"] == "run"}
    assert len(runs) == 2 and all(r["state"] == "finished" and r["epoch"] == 2 for r in runs.values())
    assert any(ev["type"] == "report" for ev in events)
    res = json.loads((ws.root / job.rel / "results.json").read_text())
    assert [p["value"] for p in res["points"]] == [0.001, 0.01]
    assert client.get(f"/files/{job.rel}/report.html").status_code == 200
    assert client.get(f"/studies/job/{job.rel}").status_code == 200


# -- the command -------------------------------------------------------------------------------------------
def test_ctrl_c_on_the_server_checkpoints_what_trains(ws):
    """uvicorn's SIGINT handler, as ``aelab serve`` installs it: every training checkpoints, the server
    stops, nothing is left running (the signal itself is sent in the next test)."""
    import socket

    import uvicorn

    from aelab.serve.command import LabServer

    app = create_app(ws)
    server = LabServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2),
                       app.state.trainer, app.state.launcher)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    try:
        wait(lambda: server.started, "the server to start")
        job = app.state.trainer.start(digits(200, name="ctrlc"), ws.root / "runs" / "ctrlc")
        wait(lambda: job.epoch >= 1, "the first epoch")
        server.handle_exit(signal.SIGINT, None)
        t.join(LIMIT_S)
        assert not t.is_alive(), "the server did not stop"
    finally:
        server.should_exit = True
        t.join(LIMIT_S)
        sock.close()
    assert server.why == "SIGINT" and not job.alive and job.state == "stopped"
    assert "the server stopped (SIGINT)" in job.message
    run_dir = ws.root / "runs" / "ctrlc"
    meta = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    assert 1 <= meta["epoch"] < 200 and not (run_dir / "DONE").exists()
    assert not (run_dir / ".aelab.lock").exists()  # released
    # the CLI resumes what the page trained
    cfg, finished = aelab.runs.plan.resume_target(run_dir)
    assert not finished and cfg.hash() == digits(200, name="ctrlc").hash()


def test_aelab_serve_starts_refuses_strangers_and_stops_on_sigint(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "aelab.cli", "serve", str(tmp_path), "--port", "0", "--no-browser"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)$", line.strip()).group(1)
        with urllib.request.urlopen(url, timeout=LIMIT_S) as r:
            assert r.status == 200 and b"Workspace" in r.read()
        req = urllib.request.Request(url, headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        err.value.close()
        assert err.value.code == 400
        p.send_signal(signal.SIGINT)
        out, errs = p.communicate(timeout=LIMIT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, errs
    assert "SIGINT: stopped" in errs and "Traceback" not in errs


def test_a_network_bind_prints_a_token_and_requires_it(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "aelab.cli", "serve", str(tmp_path), "--host", "0.0.0.0", "--port", "0",
                          "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:(\d+)/)\?token=(\S+)$", line.strip())
        assert m, line
        url, token = m.group(1), m.group(3)
        assert "every request needs the token" in p.stdout.readline()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=LIMIT_S)
        err.value.close()
        assert err.value.code == 401
        with urllib.request.urlopen(urllib.request.Request(url, headers={"X-Aelab-Token": token}), timeout=30) as r:
            assert r.status == 200
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=LIMIT_S)
    assert p.returncode == 0
