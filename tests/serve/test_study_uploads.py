"""A study of one's own from the Studies page (Starlette's TestClient): a study TOML is read by the CLI's
own reader and checked whole (runs, claims, quick settings) before it is kept as
``studies/<name>.toml``; it then launches, and sweeps, like a shipped study, on its own data or on
an uploaded data set. Every refusal is one line beside the upload field and leaves nothing behind."""

from __future__ import annotations

import html as html_lib
import json
import re
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 but works with httpx (the test extra's)
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from aelab.serve.app import create_app  # noqa: E402
from aelab.serve.uploads import MAX_STUDY_BYTES, StudyUploads, UploadRefused  # noqa: E402
from aelab.serve.workspace import Workspace  # noqa: E402

BASE = "http://127.0.0.1:8765"
LIMIT_S = 240

STUDY = """
title = "my two widths"
description = "a narrow and a wide code on the synthetic set"
[defaults]
data.dataset = "synthetic"
data.limit = 128
data.test_limit = 32
train.epochs = 2
[quick]
train.epochs = 1
[baselines.narrow]
model.encoder = ["8:relu"]
[baselines.wide]
model.encoder = ["32:relu"]
[[questions]]
id = "width"
section = "Width"
question = "Does a wider code reconstruct better?"
baseline = "narrow"
variant = "wide"
claims = [
  { text = "The wide code's val loss is lower.", kind = "less_than_baseline", params = { metric = "final.val_loss" } },
]
"""


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


@pytest.fixture
def client(ws):
    with TestClient(create_app(ws), base_url=BASE) as c:
        c.app.state.launcher.workers = 1  # in this process: no worker start-ups
        yield c


def upload(client, filename: str, data: bytes):
    return client.post("/studies/upload", files={"file": (filename, data, "application/toml")},
                       follow_redirects=False)


def refusal(r) -> str:
    m = re.search(r'id="study-upload-error"[^>]*>(.*?)</p>', r.text, re.S)
    assert m, r.text[:300]
    return html_lib.unescape(m.group(1)).strip()


def wait_study(job, limit: float = LIMIT_S):
    end = time.monotonic() + limit
    while time.monotonic() < end and (job.alive or job.state in ("starting",)):
        time.sleep(0.1)
    assert not job.alive, f"timed out after {limit:.0f} s waiting for {job.rel} (state {job.state})"
    return job


def test_an_uploaded_study_is_kept_listed_launched_and_reported(client, ws):
    r = upload(client, "my-widths.toml", STUDY.encode())
    assert r.status_code == 303 and r.headers["location"] == "/studies?study=upload:my-widths"
    kept = ws.root / "studies" / "my-widths.toml"
    assert kept.read_text() == STUDY and [p.name for p in kept.parent.iterdir()] == ["my-widths.toml"]
    page = client.get("/studies?study=upload:my-widths").text
    assert '<option value="upload:my-widths" selected>my-widths (uploaded) (2 runs)</option>' in page
    assert '<option value="upload:my-widths:narrow"' in page  # its runs can be swept
    # the same file again is the same study; another with its name is refused
    assert upload(client, "my-widths.toml", STUDY.encode()).status_code == 303
    r = upload(client, "my-widths.toml", STUDY.replace("32:relu", "16:relu").encode())
    assert r.status_code == 400 and "a different study named 'my-widths' was uploaded already" in refusal(r)
    assert kept.read_text() == STUDY

    r = client.post("/studies", data={"study": "upload:my-widths", "quick": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/studies/job/studies-out/my-widths-quick"
    job = wait_study(client.app.state.launcher.jobs["studies-out/my-widths-quick"])
    assert job.state == "finished", job.message
    out = ws.root / "studies-out" / "my-widths-quick"
    assert (out / "report.html").is_file() and "Does a wider code reconstruct better?" in (out / "report.md").read_text()
    assert {r["epoch"] for r in job.runs.values()} == {1}  # its own quick settings


def test_a_sweep_of_an_uploaded_studys_run_on_uploaded_data(client, ws):
    assert upload(client, "widths.toml", STUDY.encode()).status_code == 303
    rng = np.random.default_rng(0)
    table = "a,b,c,d,e,f\n" + "\n".join(",".join(f"{v:.3f}" for v in rng.random(6)) for _ in range(80)) + "\n"
    r = client.post("/train/upload", files={"file": ("tiny.csv", table.encode(), "text/csv")}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/studies").text
    assert '<option value="upload:tiny">tiny (uploaded: ' in page
    r = client.post("/studies/sweep", data={"baseline": "upload:widths:narrow", "param": "train.lr",
                                            "values": "0.001,0.01", "quick": "1", "dataset": "upload:tiny"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    rel = r.headers["location"].removeprefix("/studies/job/")
    assert rel == "studies-out/sweep-narrow-lr-quick-data"
    job = wait_study(client.app.state.launcher.jobs[rel])
    assert job.state == "finished", job.message
    assert len(job.runs) == 2 and (ws.root / rel / "report.html").is_file()
    # the runs trained on the uploaded table
    cfgs = [json.loads(p.read_text()) for p in (ws.root / rel).rglob("config.json")]
    assert len(cfgs) == 2 and all(c["data"]["dataset"].endswith("uploads/tiny/data.csv") for c in cfgs)


@pytest.mark.parametrize("filename, data, needle, status", [
    ("s.toml", STUDY.replace('kind = "less_than_baseline"', 'kind = "vibes"').encode(),
     "unknown claim kind 'vibes'", 400),
    ("s.toml", STUDY.replace('metric = "final.val_loss"', 'metric = 3').encode(), "s.toml", 400),
    ("s.toml", b"title = \n[defaults", "s.toml is not valid TOML", 400),
    ("s.toml", b"\xff\xfe title", "s.toml is not UTF-8 text", 400),
    ("s.toml", STUDY.replace("train.epochs = 2", "train.epochs = -2").encode(), "epochs", 400),
    ("s.toml", STUDY.replace("[quick]\ntrain.epochs = 1", "[quick]\ntrain.epochz = 1").encode(), "epochz", 400),
    ("s.txt", STUDY.encode(), "upload a study file (.toml)", 400),
    ("exercise12.toml", STUDY.encode(), "is a shipped study's name", 400),
    ("s.toml", b"   \n", "the file is empty", 400),
    ("s.toml", b"#" * (MAX_STUDY_BYTES + 1), "a study file is at most 256 kB", 413),
], ids=["claim-kind", "claim-param", "toml", "utf8", "run-setting", "quick-setting", "suffix", "shipped-name",
        "empty", "too-large"])
def test_a_bad_study_is_one_line_beside_the_field_and_nothing_is_kept(client, ws, filename, data, needle, status):
    r = upload(client, filename, data)
    assert r.status_code == status
    line = refusal(r)
    assert needle in line and "\n" not in line and "Traceback" not in r.text and ".tmp-" not in line, line
    assert not (ws.root / "studies").exists() or not any((ws.root / "studies").iterdir())
    assert not (ws.root / "studies-out").exists()


def test_no_file_and_unknown_uploads_are_refused_in_one_line(client, ws):
    r = client.post("/studies/upload", data={"x": "1"})
    assert r.status_code == 400 and refusal(r) == "choose a study file first (.toml)"
    r = client.post("/studies", data={"study": "upload:nope", "quick": "1"})
    assert r.status_code == 409 and "no uploaded study named 'nope'" in html_lib.unescape(r.text)
    assert upload(client, "w.toml", STUDY.encode()).status_code == 303
    r = client.post("/studies", data={"study": "upload:w", "quick": "1", "dataset": "upload:ghost"})
    assert r.status_code == 409 and "no upload named 'ghost'" in html_lib.unescape(r.text)
    assert not client.app.state.launcher.jobs


def test_a_link_in_the_studies_folder_is_no_study_and_two_uploads_at_once_keep_one(tmp_path):
    studies = StudyUploads(tmp_path / "studies")
    (tmp_path / "studies").mkdir()
    outside = tmp_path / "outside.toml"
    outside.write_text(STUDY)
    (tmp_path / "studies" / "linked.toml").symlink_to(outside)
    assert studies.list() == []
    with pytest.raises(UploadRefused, match="not a study file"):
        studies.add("linked.toml", STUDY.encode())
    results, errors = [], []

    def add(text):
        try:
            results.append(studies.add("race.toml", text.encode()))
        except UploadRefused as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=add, args=(STUDY.replace("32:relu", f"{w}:relu"),)) for w in (16, 24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["race"] and len(errors) == 1 and "rename your file" in errors[0]
    assert sorted(p.name for p in (tmp_path / "studies").iterdir()) == ["linked.toml", "race.toml"]
